"""Training shards: a data dir turned into one safetensors file that a CPU can hold and sample from.

A shard holds the corpus audio (int16, concatenated, at the codec rate), per-utterance offsets and
speaker ids, and frame-level phone ids at the codec's mel-frame rate (0 = silence/unknown, -1 = no
transcript). `CropSampler` draws deterministic random crops: the crops of step s depend only on
(seed, s, rank), which is what makes resume exact.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

NO_TEXT = -1


@dataclasses.dataclass
class Shard:
    audio: np.ndarray  # int16 [total_samples]
    utt_offsets: np.ndarray  # int64 [U+1] into audio
    labels: np.ndarray  # int16 [total_frames]
    label_offsets: np.ndarray  # int64 [U+1]
    speaker: np.ndarray  # int64 [U]
    utt_ids: list[str]
    speakers: list[str]
    phones: list[str]
    sample_rate: int
    hop_length: int

    @property
    def num_utts(self) -> int:
        return len(self.utt_ids)

    def wav(self, i: int) -> np.ndarray:
        return self.audio[self.utt_offsets[i]:self.utt_offsets[i + 1]].astype(np.float32) / 32768.0

    def save(self, path: str | Path) -> None:
        meta = {"utt_ids": self.utt_ids, "speakers": self.speakers, "phones": self.phones,
                "sample_rate": self.sample_rate, "hop_length": self.hop_length}
        tmp = Path(str(path) + ".partial")
        save_file({"audio": self.audio, "utt_offsets": self.utt_offsets, "labels": self.labels,
                   "label_offsets": self.label_offsets, "speaker": self.speaker}, str(tmp),
                  metadata={"shard": json.dumps(meta)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Shard":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {})["shard"])
        t = load_file(str(path))
        return cls(t["audio"], t["utt_offsets"], t["labels"], t["label_offsets"], t["speaker"], meta["utt_ids"],
                   meta["speakers"], meta["phones"], meta["sample_rate"], meta["hop_length"])


def build_shard(utts: list[tuple[str, str, np.ndarray, np.ndarray | None]], phones: list[str], sample_rate: int,
                hop_length: int) -> Shard:
    """utts: (utt_id, speaker, float wav at sample_rate, frame labels or None) → Shard."""
    speakers = sorted({spk for _, spk, _, _ in utts})
    spk_index = {s: i for i, s in enumerate(speakers)}
    audio, labels, uo, lo = [], [], [0], [0]
    for _, _, wav, lab in utts:
        audio.append((np.clip(wav, -1, 1) * 32767).astype(np.int16))
        n_frames = len(wav) // hop_length
        if lab is None:
            lab = np.full(n_frames, NO_TEXT, np.int16)
        lab = np.asarray(lab[:n_frames], np.int16)
        lab = np.pad(lab, (0, n_frames - len(lab)), constant_values=0)
        labels.append(lab)
        uo.append(uo[-1] + len(wav))
        lo.append(lo[-1] + n_frames)
    return Shard(np.concatenate(audio), np.array(uo, np.int64), np.concatenate(labels), np.array(lo, np.int64),
                 np.array([spk_index[s] for _, s, _, _ in utts], np.int64), [u for u, _, _, _ in utts], speakers,
                 phones, sample_rate, hop_length)


@dataclasses.dataclass
class CropBatch:
    wav: torch.Tensor  # [B, frames·hop]
    history: torch.Tensor  # [B, mel_context] samples before the crop (zeros at utterance start)
    labels: torch.Tensor  # [B, frames] phone ids, -1 = no transcript
    speaker: torch.Tensor  # [B]
    ref_wav: torch.Tensor  # [B, ref_frames·hop] another crop of the same speaker (voice reference)
    # the semantic branch's input when it is perturbed (`perturb.py`): wav and history, changed together
    perturbed_wav: torch.Tensor | None = None
    perturbed_history: torch.Tensor | None = None
    # the same crops cut from a twin shard (`twins.py`: the utterances spoken again at another pitch)
    twin_wav: torch.Tensor | None = None
    twin_history: torch.Tensor | None = None


class CropSampler:
    """Deterministic crops aligned to token boundaries: batch(step) depends on (seed, step, rank) only."""

    def __init__(self, shard: Shard, batch_size: int, frames: int, frame_multiple: int, mel_context: int,
                 seed: int = 0, ref_frames: int | None = None, twin: Shard | None = None) -> None:
        if twin is not None and (twin.utt_ids != shard.utt_ids or not np.array_equal(twin.utt_offsets, shard.utt_offsets)):
            raise ValueError("CropSampler: the twin shard does not hold the shard's utterances with their lengths "
                             "(make it from this shard with recipes.codec.twins)")
        self.shard, self.batch_size, self.frames, self.twin = shard, batch_size, frames, twin
        self.multiple, self.context, self.seed = frame_multiple, mel_context, seed
        self.ref_frames = ref_frames or frames
        n_frames = np.diff(shard.label_offsets)
        self.weights = n_frames / n_frames.sum()
        self.by_speaker = {}
        for i, s in enumerate(shard.speaker):
            self.by_speaker.setdefault(int(s), []).append(i)

    def _crop(self, rng, utt: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        total = len(self.shard.wav(utt)) // self.shard.hop_length
        start_max = max(0, total - frames)
        start = int(rng.integers(0, start_max // self.multiple + 1)) * self.multiple
        seg, hist = self._cut(self.shard, utt, start, frames)
        lab = self.shard.labels[self.shard.label_offsets[utt] + start:self.shard.label_offsets[utt] + start + frames]
        lab = np.pad(lab.astype(np.int64), (0, frames - len(lab)), constant_values=0)
        return seg, hist, lab, start

    def _cut(self, shard: Shard, utt: int, start: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """`frames` frames from frame `start` and the `context` samples before them (zero-padded)."""
        hop, wav = shard.hop_length, shard.wav(utt)
        seg = wav[start * hop:(start + frames) * hop]
        seg = np.pad(seg, (0, frames * hop - len(seg)))
        hist = wav[max(0, start * hop - self.context):start * hop]
        return seg, np.pad(hist, (self.context - len(hist), 0))

    def batch(self, step: int, rank: int = 0) -> CropBatch:
        rng = np.random.default_rng([self.seed, step, rank])
        utts = rng.choice(self.shard.num_utts, size=self.batch_size, p=self.weights)
        wavs, hists, labs, refs, twins, twin_hists = [], [], [], [], [], []
        for u in utts:
            seg, hist, lab, start = self._crop(rng, int(u), self.frames)
            same = self.by_speaker[int(self.shard.speaker[u])]
            others = [o for o in same if o != u] or same
            ref, _, _, _ = self._crop(rng, int(rng.choice(others)), self.ref_frames)
            wavs.append(seg), hists.append(hist), labs.append(lab), refs.append(ref)
            if self.twin is not None:
                twin, twin_hist = self._cut(self.twin, int(u), start, self.frames)
                twins.append(twin), twin_hists.append(twin_hist)
        stack = lambda xs: torch.from_numpy(np.stack(xs)) if xs else None
        return CropBatch(stack(wavs), stack(hists), stack(labs), torch.from_numpy(self.shard.speaker[utts]),
                         stack(refs), twin_wav=stack(twins), twin_history=stack(twin_hists))
