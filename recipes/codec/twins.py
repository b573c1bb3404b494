"""Pitch twins: every synthetic utterance of a codec shard spoken again by its engine at another pitch.

    python -m recipes.codec.twins --shard data/train.safetensors --data data/synth_train \
        --out data/twins.safetensors [--pitch-ratio 1.8] [--seed 0]

Praat's PSOLA (perturb.py) is one way to change the pitch; the TTS engines' own prosody control is
another, and the tokens should ignore both: a codec made invariant to PSOLA alone still changed half
of its tokens when flite spoke the same sentence higher (`recipes.score.invariance`). flite and
festival keep their timing exactly when only the pitch changes, espeak to within ~200 samples over an
utterance, so the twin is aligned with the original to well under a token and the
semantic stage can use it as the perturbed view of the same crop (`PerturbationConfig.twin_rate`).

The twin shard has the shard's utterances in its order and with its lengths. An utterance keeps its
own audio (no twin) when it is not synthetic (real recordings), its sentence is not found, or the
engine's new rendering drifts by more than `--max-drift` samples; the summary counts each case.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..datadir import DataDir
from ..synth.corpus import normalise, synthesize
from ..synth.speakers import Speaker
from ..synth.text import Sentence, fortune_sentences
from .shards import Shard


def twin_pitch(pitch: float, ratio: float, u: float, lo: float = 0.5, hi: float = 2.0) -> float:
    """The speaker's pitch factor times ratio^(2u - 1) (log-uniform in [1/ratio, ratio] for u uniform in
    [0, 1)), kept inside the range the engines accept, [lo, hi]."""
    return float(np.clip(pitch * math.exp((2 * u - 1) * math.log(ratio)), lo, hi))


def build_twins(shard: Shard, data_dirs: list[Path], ratio: float, seed: int = 0, max_drift: int | None = None,
                sentences: list[Sentence] | None = None, progress: bool = True) -> tuple[Shard, dict[str, int]]:
    """(twin shard, counts of "twinned", "real", "no_sentence", "length_changed", "failed").
    `max_drift`: samples by which a twin's length may differ (cut or zero-padded at the end; default one
    hop): espeak's pitch-synchronous timing drifts by up to ~200 samples over an utterance. `sentences`: the
    corpus's sentence pool (default: the fortune sentences recipes.synth draws from), to find what the engine read."""
    max_drift = shard.hop_length if max_drift is None else max_drift
    spoken = {s.transcript: s.spoken for s in (fortune_sentences() if sentences is None else sentences)}
    where: dict[str, tuple[DataDir, dict, dict]] = {}
    for d in data_dirs:
        data = DataDir.load(d)
        speakers_path, corpus_path = Path(d) / "speakers.json", Path(d) / "corpus.json"
        if not speakers_path.is_file() or not corpus_path.is_file():
            raise ValueError(f"{d}: no speakers.json or corpus.json (is it a synthetic corpus from recipes.synth?)")
        speakers = {s["id"]: s for s in json.loads(speakers_path.read_text())}
        corpus = json.loads(corpus_path.read_text())  # the twin is trimmed and scaled as the original was
        trim = {k: corpus[k] for k in ("lead_silence", "tail_silence", "target_rms") if k in corpus}
        for utt in data.utts:
            where[utt] = (data, speakers, trim)
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(("twinned", "real", "no_sentence", "length_changed", "failed"), 0)
    audio = shard.audio.copy()
    for i, utt in enumerate(tqdm(shard.utt_ids, desc="pitch twins", disable=not progress)):
        u = float(rng.uniform())  # one draw per utterance, so a twin does not depend on which ones are skipped
        if utt not in where:
            counts["real"] += 1
            continue
        data, speakers, trim = where[utt]
        sentence = spoken.get((data.text or {}).get(utt, ""))
        spk = speakers.get(data.utt2spk[utt])
        if sentence is None or spk is None:
            counts["no_sentence"] += 1
            continue
        fields = {k: spk[k] for k in ("engine", "voice", "pitch", "rate", "variant") if k in spk}
        speaker = Speaker(**fields)
        pitch = twin_pitch(speaker.pitch, ratio, u)
        try:
            syn = synthesize(dataclasses.replace(speaker, pitch=pitch), sentence)
            wav = normalise(syn, shard.sample_rate, **trim).audio
        except Exception as e:  # an engine failure on one sentence costs that twin, not the shard
            counts["failed"] += 1
            if progress:
                tqdm.write(f"pitch twins: {utt}: {e}")
            continue
        a, b = shard.utt_offsets[i], shard.utt_offsets[i + 1]
        if abs(len(wav) - (b - a)) > max_drift:
            counts["length_changed"] += 1
            continue
        wav = np.pad(wav, (0, max(0, (b - a) - len(wav))))[: b - a]
        audio[a:b] = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
        counts["twinned"] += 1
    twins = dataclasses.replace(shard, audio=audio)
    return twins, counts


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shard", type=Path, required=True, help="the codec training shard (recipes.codec.prepare)")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="the synthetic data dirs the shard came from")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pitch-ratio", type=float, default=1.8, help="twin pitch = speaker pitch x [1/r, r], log-uniform")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-drift", type=int, default=None, help="samples a twin's length may differ (default: one hop)")
    args = p.parse_args(argv)
    if args.pitch_ratio <= 1.0:
        p.error(f"--pitch-ratio must be > 1, got {args.pitch_ratio}")
    twins, counts = build_twins(Shard.load(args.shard), args.data, args.pitch_ratio, args.seed, args.max_drift)
    if counts["twinned"] == 0:
        raise SystemExit(f"pitch twins: no utterance could be spoken again at another pitch ({counts})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    twins.save(args.out)
    print(f"pitch twins: {counts} -> {args.out}")


if __name__ == "__main__":
    main()
