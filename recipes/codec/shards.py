"""Training shards: a data dir turned into one file that every rank of a node maps, and that may be
larger than memory.

On-disk layout (a plain safetensors file, so `safetensors` reads it too):

    u64 little-endian  N, the header's length in bytes
    N bytes            JSON header (space-padded to a multiple of 8): per array its dtype, shape and
                       [begin, end) byte offsets into the data; "__metadata__" holds {"shard": JSON of
                       utt_ids, speakers, phones, sample_rate, hop_length}
    data               little-endian arrays, each 8-byte aligned as written here:
                       utt_offsets   int64 [U+1]            sample offsets of each utterance into audio
                       label_offsets int64 [U+1]            frame offsets into labels
                       speaker       int64 [U]              index into speakers
                       audio         int16 [total_samples]  the corpus at the codec rate, concatenated
                       labels        int16 [total_frames]   phone ids at the mel-frame rate
                                                            (0 = silence/unknown, -1 = no transcript)

`Shard.load` maps audio and labels read-only (numpy memmap at the header's offsets; files written by
`safetensors.numpy.save_file`, in another array order, read the same): the ranks of a node share one
page-cache copy, and a shard larger than RAM streams from disk. Only the O(utterances) arrays are
read into memory. `ShardWriter` writes one utterance at a time, so `prepare` never holds the corpus.
`CropSampler` draws deterministic random crops: the crops of step s depend only on (seed, s, rank),
which is what makes resume exact.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

NO_TEXT = -1
_DTYPES = {"I16": np.dtype("<i2"), "I64": np.dtype("<i8")}
_SMALL = ("utt_offsets", "label_offsets", "speaker")  # read into memory; audio and labels are mapped
_ORDER = _SMALL + ("audio", "labels")


@dataclasses.dataclass
class Shard:
    audio: np.ndarray  # int16 [total_samples] (a read-only memmap when loaded)
    utt_offsets: np.ndarray  # int64 [U+1] into audio
    labels: np.ndarray  # int16 [total_frames] (a read-only memmap when loaded)
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

    def num_samples(self, i: int) -> int:
        return int(self.utt_offsets[i + 1] - self.utt_offsets[i])

    def wav(self, i: int) -> np.ndarray:
        """Utterance i as float32 [samples] in [-1, 1)."""
        return self.audio[self.utt_offsets[i]:self.utt_offsets[i + 1]].astype(np.float32) / 32768.0

    def meta(self) -> dict:
        return {"utt_ids": self.utt_ids, "speakers": self.speakers, "phones": self.phones,
                "sample_rate": self.sample_rate, "hop_length": self.hop_length}

    def save(self, path: str | Path) -> None:
        """Write the layout above atomically (`<path>.partial`, renamed into place)."""
        _write(Path(path), {name: np.ascontiguousarray(getattr(self, name)) for name in _ORDER}, self.meta())

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> "Shard":
        """Open a shard; `mmap=False` reads audio and labels into memory (what loading did before)."""
        path = Path(path)
        header, data_start = _read_header(path)
        try:
            meta = json.loads(header.pop("__metadata__")["shard"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a codec training shard (no 'shard' metadata in its header)") from e
        missing = [n for n in _ORDER if n not in header]
        if missing:
            raise ValueError(f"{path}: shard has no {missing} (has {sorted(header)})")
        size = path.stat().st_size
        arrays = {}
        for name in _ORDER:
            spec = header[name]
            dtype = _DTYPES.get(spec["dtype"])
            begin, end = spec["data_offsets"]
            if dtype is None or len(spec["shape"]) != 1 or end - begin != spec["shape"][0] * (dtype.itemsize if dtype else 0):
                raise ValueError(f"{path}: array {name} is {spec}; expected a 1-D I16/I64 array")
            if data_start + end > size:
                raise ValueError(f"{path}: truncated ({size} bytes, array {name} ends at byte {data_start + end})")
            n = spec["shape"][0]
            if not mmap or name in _SMALL or n == 0:
                with open(path, "rb") as f:
                    f.seek(data_start + begin)
                    arrays[name] = np.fromfile(f, dtype, n)
            else:
                arrays[name] = np.memmap(path, dtype, mode="r", offset=data_start + begin, shape=(n,))
        return cls(arrays["audio"], arrays["utt_offsets"], arrays["labels"], arrays["label_offsets"],
                   arrays["speaker"], meta["utt_ids"], meta["speakers"], meta["phones"], meta["sample_rate"],
                   meta["hop_length"])


def _read_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path}: {len(raw)} bytes, too short for a shard")
        n = int.from_bytes(raw, "little")
        if n > os.path.getsize(path) - 8:
            raise ValueError(f"{path}: header length {n} is beyond the file's end; not a safetensors shard")
        return json.loads(f.read(n)), 8 + n


def _write(path: Path, arrays: dict[str, np.ndarray | tuple[BinaryIO, str, int]], meta: dict) -> None:
    """The one writer of the layout: each array is in memory, or (an open raw little-endian file, its
    safetensors dtype, its length), copied in chunks. In `_ORDER`, int64 first and without gaps
    (safetensors allows none), every array is aligned to its item size."""
    header, offset, sources = {"__metadata__": {"shard": json.dumps(meta)}}, 0, []
    for name in _ORDER:
        a = arrays[name]
        if isinstance(a, np.ndarray):
            kind = {2: "I16", 8: "I64"}.get(a.dtype.itemsize) if a.dtype.kind == "i" else None
            if kind is None or a.ndim != 1:
                raise ValueError(f"{path}: shard array {name} is {a.dtype} {a.shape}; expected 1-D int16 or int64")
            n, a = len(a), a.astype(_DTYPES[kind], copy=False)
        else:
            a, kind, n = a
        nbytes = n * _DTYPES[kind].itemsize
        header[name] = {"dtype": kind, "shape": [n], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        sources.append(a)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    tmp = Path(str(path) + ".partial")
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for a in sources:
            if isinstance(a, np.ndarray):
                f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
            else:
                a.seek(0)
                shutil.copyfileobj(a, f, 16 << 20)
    tmp.replace(path)


def to_int16(wav: np.ndarray) -> np.ndarray:
    """float wav in [-1, 1] → int16, as a shard stores it."""
    return (np.clip(wav, -1, 1) * 32767).astype(np.int16)


def frame_labels_for(n_samples: int, hop_length: int, labels: np.ndarray | None) -> np.ndarray:
    """One label per whole mel frame of an utterance: `labels` cut or padded with 0, or NO_TEXT throughout."""
    n_frames = n_samples // hop_length
    if labels is None:
        return np.full(n_frames, NO_TEXT, np.int16)
    lab = np.asarray(labels[:n_frames], np.int16)
    return np.pad(lab, (0, n_frames - len(lab)), constant_values=0)


class ShardWriter:
    """Writes a shard one utterance at a time: audio and labels go to raw files beside `path` as they
    come, and `close()` writes the shard from them (so peak memory is one utterance, plus the
    per-utterance ids); a writer left by an exception leaves no shard and no temporary files.

        with ShardWriter(out, phones, 16000, 256) as w:
            for utt, spk, wav, labels in ...:
                w.add(utt, spk, wav, labels)
    """

    def __init__(self, path: str | Path, phones: list[str], sample_rate: int, hop_length: int) -> None:
        self.path, self.phones, self.sample_rate, self.hop_length = Path(path), list(phones), sample_rate, hop_length
        self._audio = open(str(self.path) + ".audio.partial", "w+b")
        self._labels = open(str(self.path) + ".labels.partial", "w+b")
        self.utt_ids: list[str] = []
        self._speakers: list[str] = []
        self._samples, self._frames = [0], [0]

    def add(self, utt_id: str, speaker: str, wav: np.ndarray, labels: np.ndarray | None = None) -> None:
        """wav: float [samples] at the shard's rate (int16 is taken as it is); labels: phone ids per frame or None."""
        audio = wav if wav.dtype == np.int16 else to_int16(wav)
        lab = frame_labels_for(len(audio), self.hop_length, labels)
        self._audio.write(audio.astype("<i2", copy=False).tobytes())
        self._labels.write(lab.astype("<i2", copy=False).tobytes())
        self.utt_ids.append(utt_id)
        self._speakers.append(speaker)
        self._samples.append(self._samples[-1] + len(audio))
        self._frames.append(self._frames[-1] + len(lab))

    def close(self) -> Path:
        if not self.utt_ids:
            raise ValueError(f"{self.path}: a shard needs at least one utterance")
        speakers = sorted(set(self._speakers))
        index = {s: i for i, s in enumerate(speakers)}
        self._audio.flush()
        self._labels.flush()
        _write(self.path, {"utt_offsets": np.array(self._samples, np.int64),
                           "label_offsets": np.array(self._frames, np.int64),
                           "speaker": np.array([index[s] for s in self._speakers], np.int64),
                           "audio": (self._audio, "I16", self._samples[-1]),
                           "labels": (self._labels, "I16", self._frames[-1])},
               {"utt_ids": self.utt_ids, "speakers": speakers, "phones": self.phones,
                "sample_rate": self.sample_rate, "hop_length": self.hop_length})
        self._discard()
        return self.path

    def _discard(self) -> None:
        for f in (self._audio, self._labels):
            f.close()
            Path(f.name).unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self._discard()


def build_shard(utts: list[tuple[str, str, np.ndarray, np.ndarray | None]], phones: list[str], sample_rate: int,
                hop_length: int) -> Shard:
    """utts: (utt_id, speaker, float wav at sample_rate, frame labels or None) → an in-memory Shard (small
    corpora and tests; `ShardWriter` writes a large one)."""
    speakers = sorted({spk for _, spk, _, _ in utts})
    spk_index = {s: i for i, s in enumerate(speakers)}
    audio = [to_int16(wav) for _, _, wav, _ in utts]
    labels = [frame_labels_for(len(a), hop_length, lab) for a, (_, _, _, lab) in zip(audio, utts)]
    offsets = lambda xs: np.cumsum([0] + [len(x) for x in xs]).astype(np.int64)
    return Shard(np.concatenate(audio), offsets(audio), np.concatenate(labels), offsets(labels),
                 np.array([spk_index[s] for _, s, _, _ in utts], np.int64), [u for u, _, _, _ in utts], speakers,
                 phones, sample_rate, hop_length)


@dataclasses.dataclass
class CropBatch:
    wav: torch.Tensor  # [B, frames·hop]
    history: torch.Tensor  # [B, mel_context] samples before the crop (zeros at utterance start)
    labels: torch.Tensor  # [B, frames] phone ids, -1 = no transcript
    speaker: torch.Tensor  # [B]
    # [B, ref_frames·hop] another crop of the same speaker (voice reference); None for a stage without
    # a voice encoder (CropSampler(references=False))
    ref_wav: torch.Tensor | None = None
    # the semantic branch's input when it is perturbed (`perturb.py`): wav and history, changed together
    perturbed_wav: torch.Tensor | None = None
    perturbed_history: torch.Tensor | None = None
    # the same crops cut from a twin shard (`twins.py`: the utterances spoken again at another pitch)
    twin_wav: torch.Tensor | None = None
    twin_history: torch.Tensor | None = None


class CropSampler:
    """Deterministic crops aligned to token boundaries: batch(step) depends on (seed, step, rank) only.

    Each crop converts only its own samples (and history) to float, once. `references=False` cuts no
    voice-reference crops but still makes their random draws, so the other crops stay the same."""

    def __init__(self, shard: Shard, batch_size: int, frames: int, frame_multiple: int, mel_context: int,
                 seed: int = 0, ref_frames: int | None = None, twin: Shard | None = None,
                 references: bool = True) -> None:
        if twin is not None and (twin.utt_ids != shard.utt_ids or not np.array_equal(twin.utt_offsets, shard.utt_offsets)):
            raise ValueError("CropSampler: the twin shard does not hold the shard's utterances with their lengths "
                             "(make it from this shard with recipes.codec.twins)")
        self.shard, self.batch_size, self.frames, self.twin = shard, batch_size, frames, twin
        self.multiple, self.context, self.seed = frame_multiple, mel_context, seed
        self.ref_frames = ref_frames or frames
        self.references = references
        n_frames = np.diff(shard.label_offsets)
        self.weights = n_frames / n_frames.sum()
        self.by_speaker: dict[int, list[int]] = {}
        self.rank_in_speaker = np.zeros(shard.num_utts, np.int64)  # utterance i is by_speaker[spk][rank_in_speaker[i]]
        for i, s in enumerate(shard.speaker):
            same = self.by_speaker.setdefault(int(s), [])
            self.rank_in_speaker[i] = len(same)
            same.append(i)

    def _start(self, rng, utt: int, frames: int) -> int:
        total = self.shard.num_samples(utt) // self.shard.hop_length
        return int(rng.integers(0, max(0, total - frames) // self.multiple + 1)) * self.multiple

    def _cut(self, shard: Shard, utt: int, start: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """`frames` frames from frame `start` and the `context` samples before them (zero-padded), float32."""
        hop, base, n = shard.hop_length, int(shard.utt_offsets[utt]), shard.num_samples(utt)
        first, end = max(0, start * hop - self.context), min(n, (start + frames) * hop)
        x = shard.audio[base + first:base + end].astype(np.float32) / 32768.0
        hist, seg = x[:start * hop - first], x[start * hop - first:]
        return np.pad(seg, (0, frames * hop - len(seg))), np.pad(hist, (self.context - len(hist), 0))

    def _reference_utt(self, rng, utt: int) -> int:
        """Another utterance of utt's speaker (utt itself when it is the speaker's only one); the same
        draw as `rng.choice([o for o in same if o != utt] or same)`, without building the list."""
        same = self.by_speaker[int(self.shard.speaker[utt])]
        if len(same) == 1:
            return same[int(rng.choice(1))]
        k = int(rng.choice(len(same) - 1))
        return same[k if k < self.rank_in_speaker[utt] else k + 1]

    def batch(self, step: int, rank: int = 0) -> CropBatch:
        rng = np.random.default_rng([self.seed, step, rank])
        utts = rng.choice(self.shard.num_utts, size=self.batch_size, p=self.weights)
        wavs, hists, labs, refs, twins, twin_hists = [], [], [], [], [], []
        offsets, labels = self.shard.label_offsets, self.shard.labels
        for u in utts:
            u = int(u)
            start = self._start(rng, u, self.frames)
            seg, hist = self._cut(self.shard, u, start, self.frames)
            lab = labels[offsets[u] + start:min(offsets[u] + start + self.frames, offsets[u + 1])]
            labs.append(np.pad(lab.astype(np.int64), (0, self.frames - len(lab)), constant_values=0))
            ref_utt = self._reference_utt(rng, u)
            ref_start = self._start(rng, ref_utt, self.ref_frames)
            if self.references:
                refs.append(self._cut(self.shard, ref_utt, ref_start, self.ref_frames)[0])
            wavs.append(seg), hists.append(hist)
            if self.twin is not None:
                twin, twin_hist = self._cut(self.twin, u, start, self.frames)
                twins.append(twin), twin_hists.append(twin_hist)
        stack = lambda xs: torch.from_numpy(np.stack(xs)) if xs else None
        return CropBatch(stack(wavs), stack(hists), stack(labs), torch.from_numpy(self.shard.speaker[utts]),
                         stack(refs), twin_wav=stack(twins), twin_history=stack(twin_hists))
