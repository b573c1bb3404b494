"""Build a synthetic multi-speaker Kaldi corpus with exact phone and word alignments.

    from recipes.synth import build_corpus, make_speakers
    split = make_speakers(seed=0)
    build_corpus("data/synth_train", 2000, split.train, seed=0)
    build_corpus("data/synth_heldout", 200, split.heldout, seed=1)

Each utterance is a fortune sentence spoken by one pseudo-speaker. The engine's audio is
resampled to `sample_rate`, its leading and trailing silence set to exactly `lead_silence` /
`tail_silence` seconds (cut or zero-padded, with the timings shifted by the same number of
samples), and its loudness normalised. The phone segments then tile the whole file: `sil`
from 0, the engine's phones, `sil` to the last sample. Output (a Kaldi data dir):

    wav.scp text utt2spk spk2utt utt2dur utt2lang   (DataDir; wav/<spk>/<utt>.wav, 16-bit PCM)
    phones.ctm  words.ctm  phones.txt               (CTM seconds; phones.txt: `sil 0` ... `spn 41`)
    speakers.json corpus.json                      (speaker tuples; how it was built, written last)

Work is spread over at most 2 processes, one festival process per batch of festival lines.
The workers are started with 'spawn', so a script calling build_corpus needs the usual
`if __name__ == "__main__":` guard (`python -m recipes.synth` has it). A failed utterance is
reported and left out; more than 5 % failures abort.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ..ctm import CtmEntry, write_ctm
from ..datadir import DataDir
from . import espeak, festival, flite
from .base import Segment, Synthesis, SynthError
from .phones import SILENCE, write_phones_txt
from .speakers import Speaker
from .text import Sentence, fortune_sentences

__all__ = ["build_corpus", "synthesize", "normalise", "Utterance", "MAX_WORKERS"]

MAX_WORKERS = 2
BATCH = {"festival": 24, "flite": 16, "espeak": 16}


def synthesize(speaker: Speaker, text: str) -> Synthesis:
    """One utterance by one pseudo-speaker, as the engine made it (no resampling or trimming)."""
    if speaker.engine == "flite":
        return flite.synthesize(text, speaker.voice, speaker.rate, speaker.pitch)
    if speaker.engine == "espeak":
        return espeak.synthesize(text, speaker.voice, speaker.variant, speaker.rate, speaker.pitch)
    return festival.synthesize(text, speaker.voice, speaker.rate, speaker.pitch)


@dataclasses.dataclass
class Utterance:
    """A finished utterance: audio at the corpus rate and timings in seconds on that audio."""

    audio: np.ndarray  # float32 [N]
    sample_rate: int
    phones: list[Segment]  # tiles [0, N / sample_rate]
    words: list[Segment] | None

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def _resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return audio.astype(np.float32)
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(audio.astype(np.float32)), sr_in, sr_out).numpy()


def normalise(syn: Synthesis, sample_rate: int = 16000, lead_silence: float = 0.1, tail_silence: float = 0.1,
              target_rms: float | None = 0.05, fade: float = 0.005) -> Utterance:
    """Resample to `sample_rate`, make the phone segments tile the audio, and set leading /
    trailing silence to exactly `lead_silence` / `tail_silence` seconds.

    Engine times are converted to sample indices at the new rate (rounded); segments that start
    after the audio ends are dropped and the last one is clipped to the audio (flite's diphone
    voice cuts its final pause at its midpoint), gaps before the first and after the last
    segment become `sil`. Speech is the span from the end of the leading `sil` to the start of
    the trailing one; the file is cut or zero-padded around it and every time shifted by the
    same number of samples. `target_rms`: RMS of the speech span after scaling (None = keep the
    engine's level; peaks are always kept below 0.99). `fade`: seconds of linear fade where a
    cut falls inside the engine's audio.
    """
    audio = _resample(syn.audio, syn.sample_rate, sample_rate)
    n = len(audio)
    if n == 0:
        raise SynthError(f"{syn.engine} {syn.voice}: empty audio")

    def idx(t: float) -> int:
        return min(n, max(0, int(round(t * sample_rate))))

    segs: list[tuple[str, int, int]] = []
    for s in syn.phones:
        a, b = idx(s.start), idx(s.end)
        if segs:
            a = segs[-1][2]  # contiguous: each segment starts where the previous one ended
        if b > a:
            segs.append((s.label, a, b))
    if not segs:
        raise SynthError(f"{syn.engine} {syn.voice}: no phone segment inside the audio")
    if segs[0][1] > 0:
        segs.insert(0, (SILENCE, 0, segs[0][1]))
    if segs[-1][2] < n:
        segs.append((SILENCE, segs[-1][2], n))
    merged: list[tuple[str, int, int]] = []  # adjacent silences become one
    for seg in segs:
        if merged and seg[0] == SILENCE and merged[-1][0] == SILENCE:
            merged[-1] = (SILENCE, merged[-1][1], seg[2])
        else:
            merged.append(seg)
    speech = [s for s in merged if s[0] != SILENCE]
    if not speech:
        raise SynthError(f"{syn.engine} {syn.voice}: only silence in the phone times")
    s0, s1 = speech[0][1], speech[-1][2]
    lead, tail = int(round(lead_silence * sample_rate)), int(round(tail_silence * sample_rate))
    cut0, cut1 = s0 - lead, s1 + tail
    out = np.zeros(cut1 - cut0, dtype=np.float32)
    src0, src1 = max(cut0, 0), min(cut1, n)
    piece = audio[src0:src1].copy()
    nf = int(round(fade * sample_rate))
    k = min(nf, len(piece))
    if cut0 > 0 and k:
        piece[:k] *= np.linspace(0.0, 1.0, k, dtype=np.float32)
    if cut1 < n and k:
        piece[len(piece) - k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
    out[src0 - cut0:src0 - cut0 + len(piece)] = piece
    if target_rms is not None:
        rms = float(np.sqrt(np.mean(out[lead:len(out) - tail] ** 2)) + 1e-9)
        out *= target_rms / rms
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out *= 0.99 / peak
    total = len(out)
    phones: list[Segment] = [Segment(SILENCE, 0.0, lead / sample_rate)]
    for label, a, b in merged:
        a, b = max(a - cut0, lead), min(b - cut0, total - tail)
        if b > a:
            phones.append(Segment(label, a / sample_rate, b / sample_rate))
    phones.append(Segment(SILENCE, (total - tail) / sample_rate, total / sample_rate))
    phones = _merge_silence(phones)
    words = None
    if syn.words is not None:
        words = []
        for w in syn.words:
            a = min(max(idx(w.start) - cut0, lead), total - tail)
            b = min(max(idx(w.end) - cut0, lead), total - tail)
            if b > a:
                words.append(Segment(w.label, a / sample_rate, b / sample_rate))
    return Utterance(out, sample_rate, phones, words)


def _merge_silence(phones: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for p in phones:
        if out and p.label == SILENCE and out[-1].label == SILENCE:
            out[-1] = Segment(SILENCE, out[-1].start, p.end)
        else:
            out.append(p)
    return out


# --- workers ------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Job:
    utt: str
    speaker: Speaker
    sentence: Sentence


@dataclasses.dataclass
class _Result:
    utt: str
    speaker: str
    wav: str | None
    duration: float
    phones: list[Segment]
    words: list[Segment] | None
    error: str | None = None


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _run_batch(args) -> list[_Result]:
    jobs, out_dir, params = args
    engine = jobs[0].speaker.engine
    if engine == "festival":
        raw = festival.synthesize_batch([(j.sentence.spoken, j.speaker.voice, j.speaker.rate, j.speaker.pitch)
                                         for j in jobs])
    else:
        raw = []
        for j in jobs:
            try:
                raw.append(synthesize(j.speaker, j.sentence.spoken))
            except SynthError as e:
                raw.append(e)
    results = []
    for job, syn in zip(jobs, raw):
        try:
            if isinstance(syn, Exception):
                raise syn
            utt = normalise(syn, **params)
            rel = Path("wav") / job.speaker.id / f"{job.utt}.wav"
            path = Path(out_dir) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, utt.audio, utt.sample_rate, subtype="PCM_16")
            results.append(_Result(job.utt, job.speaker.id, str(rel), utt.duration, utt.phones, utt.words))
        except (SynthError, ValueError, RuntimeError) as e:
            results.append(_Result(job.utt, job.speaker.id, None, 0.0, [], None, f"{type(e).__name__}: {e}"))
    return results


def _batches(jobs: list[_Job]) -> list[list[_Job]]:
    by_engine: dict[str, list[_Job]] = {}
    for j in sorted(jobs, key=lambda j: (j.speaker.engine, j.speaker.id, j.utt)):
        by_engine.setdefault(j.speaker.engine, []).append(j)
    out = []
    for engine, js in by_engine.items():
        size = BATCH[engine]
        out += [js[i:i + size] for i in range(0, len(js), size)]
    return out


# --- corpus -------------------------------------------------------------------------------------
def build_corpus(out_dir: str | Path, num_utts: int, speakers: list[Speaker], seed: int = 0,
                 sample_rate: int = 16000, num_workers: int = 2, sentences: list[Sentence] | None = None,
                 lead_silence: float = 0.1, tail_silence: float = 0.1, target_rms: float | None = 0.05,
                 absolute_paths: bool = True, progress: bool = True, max_failure_rate: float = 0.05,
                 balance_engines: bool = False) -> DataDir:
    """Synthesise `num_utts` utterances spread evenly over `speakers` into a Kaldi data dir at
    `out_dir` (see the module docstring). Sentences are drawn without replacement while they
    last (seeded); utterance ids are `<speaker id>-<index>`. With `balance_engines`, the utterances
    are spread evenly over the engines first, then over each engine's speakers (espeak-ng alone has
    hundreds of voices, flite and festival a few). Returns the validated DataDir."""
    if not speakers:
        raise ValueError("build_corpus: no speakers given (see make_speakers)")
    if num_utts < 1:
        raise ValueError(f"build_corpus: num_utts must be >= 1, got {num_utts}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rng = random.Random(seed)
    pool_sentences = list(sentences) if sentences is not None else fortune_sentences()
    order = list(range(len(pool_sentences)))
    rng.shuffle(order)
    spk_order = list(speakers)
    rng.shuffle(spk_order)
    groups = [[s for s in spk_order if s.engine == e] for e in sorted({s.engine for s in spk_order})] \
        if balance_engines else [spk_order]
    jobs = []
    for i in range(num_utts):
        group = groups[i % len(groups)]
        spk = group[(i // len(groups)) % len(group)]
        sent = pool_sentences[order[i % len(order)]]
        jobs.append(_Job(f"{spk.id}-{i:06d}", spk, sent))
    params = dict(sample_rate=sample_rate, lead_silence=lead_silence, tail_silence=tail_silence,
                  target_rms=target_rms)
    batches = [(b, str(out_dir), params) for b in _batches(jobs)]
    results: list[_Result] = []
    bar = _progress(num_utts, progress, out_dir.name)
    workers = max(1, min(num_workers, MAX_WORKERS, len(batches)))
    if workers == 1:
        for b in batches:
            res = _run_batch(b)
            results += res
            bar.update(len(res))
    else:
        with mp.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            for res in pool.imap_unordered(_run_batch, batches):
                results += res
                bar.update(len(res))
    bar.close()

    failed = [r for r in results if r.error]
    if failed:
        print(f"build_corpus: {len(failed)} of {num_utts} utterances failed, e.g. {failed[0].utt}: "
              f"{failed[0].error}", file=sys.stderr)
    if len(failed) > max_failure_rate * num_utts:
        raise SynthError(f"build_corpus: {len(failed)}/{num_utts} utterances failed "
                         f"(more than {max_failure_rate:.0%}); first: {failed[0].utt}: {failed[0].error}")
    ok = [r for r in results if not r.error]
    sentence_of = {j.utt: j.sentence for j in jobs}
    wav_scp = {r.utt: str((out_dir / r.wav).resolve()) if absolute_paths else r.wav for r in ok}
    data = DataDir(wav_scp=wav_scp, utt2spk={r.utt: r.speaker for r in ok},
                   text={r.utt: sentence_of[r.utt].transcript for r in ok},
                   utt2dur={r.utt: r.duration for r in ok}, utt2lang={r.utt: "en" for r in ok}, path=out_dir)
    data.save(out_dir)
    write_ctm(out_dir / "phones.ctm",
              [CtmEntry(r.utt, "1", p.start, p.end - p.start, p.label) for r in ok for p in r.phones])
    write_ctm(out_dir / "words.ctm",
              [CtmEntry(r.utt, "1", w.start, w.end - w.start, w.label) for r in ok for w in (r.words or [])])
    write_phones_txt(out_dir / "phones.txt")
    used = sorted({r.speaker for r in ok})
    by_id = {s.id: s for s in speakers}
    (out_dir / "speakers.json").write_text(json.dumps([by_id[s].to_dict() for s in used], indent=1) + "\n")
    engines = {e: ok_why for e, ok_why in (("flite", flite.available()), ("festival", festival.available()),
                                           ("espeak", espeak.available()))
               if any(by_id[s].engine == e for s in used)}
    meta = {"num_utts": len(ok), "num_failed": len(failed), "requested": num_utts, "seed": seed,
            "sample_rate": sample_rate, "lead_silence": lead_silence, "tail_silence": tail_silence,
            "target_rms": target_rms, "num_speakers": len(used),
            "hours": round(sum(r.duration for r in ok) / 3600, 4),
            "engines": {e: why for e, (_, why) in engines.items()},
            "words_ctm_utts": sum(1 for r in ok if r.words), "seconds": round(time.time() - started, 1),
            "command": " ".join(sys.argv)}
    (out_dir / "corpus.json").write_text(json.dumps(meta, indent=1) + "\n")
    return DataDir.load(out_dir)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"synth {desc}", unit="utt")
