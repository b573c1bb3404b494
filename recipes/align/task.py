"""Training the CTC aligner with the shared trainer: utterances of Kaldi data dirs with `text`.

Audio streams from disk (no shard: a full LibriTTS training set does not fit a process's memory
at 16 kHz) with a small thread pool reading a few batches ahead (and the trainer's prefetch thread
ahead of that). Batches are bucketed by duration:
step s draws an anchor utterance from an RNG seeded by (seed, s, rank) and takes its neighbours in
duration order up to `batch_seconds` of audio, so a batch is a function of the step alone (exact
resume) and padding stays small. Utterances that CTC cannot align (no letters left after
normalisation, more target frames than audio frames) or that are longer than `max_seconds` are
left out once, at start-up, and counted.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import itertools
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio

from ..datadir import DataDir
from ..trainer import LossTerm, TrainerConfig, TrainingTask
from .model import AlignerConfig, CtcAligner
from .text import CharTokenizer

__all__ = ["AlignerTrainConfig", "AlignerTask", "Utterance", "load_utterances", "read_audio", "min_frames"]


@dataclasses.dataclass
class SpecAugment:
    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0  # emission-rate-independent: mel frames


@dataclasses.dataclass
class AlignerTrainConfig:
    data: list[str] = dataclasses.field(default_factory=lambda: ["data/train"])
    model: AlignerConfig = dataclasses.field(default_factory=AlignerConfig)
    batch_seconds: float = 320.0  # audio per batch (per rank)
    max_seconds: float = 20.0  # longer utterances are left out of training
    max_utts: int = 0  # 0 = all; else a deterministic spread over the data
    loader_threads: int = 2  # 0 = read batches synchronously
    prefetch: int = 4
    spec_augment: SpecAugment = dataclasses.field(default_factory=SpecAugment)
    trainer: TrainerConfig = dataclasses.field(default_factory=lambda: TrainerConfig(amp="off"))


@dataclasses.dataclass(frozen=True)
class Utterance:
    utt: str
    path: Path
    start: float  # seconds
    end: float  # seconds, -1 = to the end
    duration: float  # seconds
    targets: tuple[int, ...]


def min_frames(targets) -> int:
    """Fewest CTC frames that can emit `targets`: one per token plus a blank between repeats."""
    return len(targets) + sum(1 for a, b in zip(targets, targets[1:]) if a == b)


@functools.lru_cache(maxsize=8)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


def read_audio(path: Path, start: float, end: float, sample_rate: int) -> torch.Tensor:
    """Mono float32 [N] at `sample_rate` of a file or a segment of it (seconds; end -1 = to the end)."""
    info = sf.info(str(path))
    first = int(round(start * info.samplerate))
    frames = -1 if end < 0 else int(round((end - start) * info.samplerate))
    data, sr = sf.read(str(path), start=first, frames=frames, dtype="float32", always_2d=True)
    wav = torch.from_numpy(data.mean(axis=1))
    if sr != sample_rate:
        with torch.no_grad():
            wav = _resampler(sr, sample_rate)(wav)
    return wav


def load_utterances(dirs, cfg: AlignerConfig, max_seconds: float = float("inf"),
                    log=print) -> list[Utterance]:
    """Alignable utterances of the data dirs (each needs `text`), sorted by duration."""
    tok = CharTokenizer(cfg.alphabet)
    out: list[Utterance] = []
    skipped = collections.Counter()
    for d in dirs:
        data = DataDir.load(d)
        if data.text is None:
            raise ValueError(f"{d}/text: the aligner trains on transcribed speech; this data dir has no text file")
        for utt in data.utts:
            path, start, end = data.audio(utt)
            if data.utt2dur is not None:
                dur = data.utt2dur[utt]
            elif end >= 0:
                dur = end - start
            else:
                dur = sf.info(str(path)).duration - start
            targets = tuple(tok.encode(tok.words(data.text[utt])))
            if not targets:
                skipped["no letters in the transcript"] += 1
            elif dur > max_seconds:
                skipped[f"longer than {max_seconds:g} s"] += 1
            elif min_frames(targets) > cfg.num_frames(int(dur * cfg.sample_rate)):
                skipped["transcript longer than the audio frames"] += 1
            else:
                out.append(Utterance(utt, path, start, end, dur, targets))
    if skipped:
        log(f"aligner data: left out {sum(skipped.values())} utterances: "
            + ", ".join(f"{n} {why}" for why, n in skipped.items()))
    if not out:
        raise ValueError(f"aligner data: no usable utterance in {[str(d) for d in dirs]}")
    return sorted(out, key=lambda u: (u.duration, u.utt))


class AlignerTask(TrainingTask):
    def __init__(self, cfg: AlignerTrainConfig) -> None:
        self.cfg = cfg
        utts = load_utterances(cfg.data, cfg.model, cfg.max_seconds, log=lambda m: print(m, file=sys.stderr))
        if cfg.max_utts and len(utts) > cfg.max_utts:
            utts = [utts[i] for i in np.linspace(0, len(utts) - 1, cfg.max_utts).round().astype(int)]
        self.utts = utts
        self.durations = np.array([u.duration for u in utts])
        self._warned: set[str] = set()

    def build_model(self) -> CtcAligner:
        return CtcAligner(self.cfg.model)

    def batch_indices(self, step: int, rank: int) -> list[int]:
        """Consecutive utterances in duration order from an anchor drawn by (seed, step, rank)."""
        rng = np.random.default_rng([self.cfg.trainer.seed, step, rank])
        i = int(rng.integers(len(self.utts)))
        n = max(1, int(self.cfg.batch_seconds // max(self.durations[i], 1e-3)))
        lo = max(0, min(i, len(self.utts) - n))
        return list(range(lo, min(len(self.utts), lo + n)))

    def batch(self, step: int, rank: int) -> dict:
        sr = self.cfg.model.sample_rate
        wavs, targets = [], []
        errors = []
        for i in self.batch_indices(step, rank):
            u = self.utts[i]
            try:
                wavs.append(read_audio(u.path, u.start, u.end, sr))
            except Exception as e:  # one unreadable file must not end a long run: skip it, say so once
                errors.append(f"{u.utt}: cannot read {u.path}: {e}")
                if u.utt not in self._warned:
                    self._warned.add(u.utt)
                    print(f"aligner data: skipping {errors[-1]}", file=sys.stderr)
                continue
            targets.append(torch.tensor(u.targets, dtype=torch.long))
        if not wavs:
            raise RuntimeError(f"step {step}: no readable audio in the batch: {errors}")
        lengths = torch.tensor([len(w) for w in wavs])
        return {"wav": torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True), "lengths": lengths,
                "targets": torch.cat(targets), "target_lengths": torch.tensor([len(t) for t in targets])}

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator[dict]:
        if self.cfg.loader_threads <= 0:
            yield from (self.batch(s, rank) for s in itertools.count(start_step))
            return
        with concurrent.futures.ThreadPoolExecutor(self.cfg.loader_threads) as pool:
            ahead = collections.deque(pool.submit(self.batch, s, rank)
                                      for s in range(start_step, start_step + max(1, self.cfg.prefetch)))
            step = start_step + len(ahead)
            while True:
                batch = ahead.popleft().result()
                ahead.append(pool.submit(self.batch, step, rank))
                step += 1
                yield batch

    def losses(self, model, batch: dict, step: int) -> Iterator[LossTerm]:
        aug = dataclasses.asdict(self.cfg.spec_augment)
        log_probs, out_lengths = model(batch["wav"], batch["lengths"], augment=aug if any(aug.values()) else None)
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch["targets"], out_lengths, batch["target_lengths"],
                          blank=0, reduction="mean", zero_infinity=True)
        blank = log_probs.detach().argmax(-1).eq(0).float()
        valid = torch.arange(log_probs.shape[1], device=blank.device)[None] < out_lengths[:, None]
        yield LossTerm("main", loss, {"ctc/loss": loss.detach(), "ctc/blank_share": (blank * valid).sum() / valid.sum(),
                                      "ctc/utts": float(len(out_lengths))})
