"""Kaldi CTM alignments (word or phone level) and their conversion to frame labels.

A CTM line is `<utt> <channel> <start> <dur> <token> [<conf>]`, times in seconds. Synthetic
corpora write the TTS engines' own phone and word times as CTM; recipes turn them into one unit
id per codec frame (`frame_labels`) for the frame-level text–speech contrastive loss. Reading
validates: durations are positive, and within an utterance the entries are in time order
and do not overlap (a tolerance of `TOLERANCE` seconds absorbs the rounding of the written
times). Errors raise `CtmError` naming the file, line and values.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["CtmEntry", "CtmError", "read_ctm", "write_ctm", "validate_ctm", "group_by_utt",
           "frame_labels", "TOLERANCE"]

TOLERANCE = 1e-4  # seconds; written times have 5 decimals


class CtmError(ValueError):
    """A malformed or inconsistent CTM; the message names the file, line and problem."""


@dataclasses.dataclass(frozen=True)
class CtmEntry:
    utt: str
    channel: str
    start: float  # seconds
    dur: float  # seconds
    token: str
    conf: float | None = None

    @property
    def end(self) -> float:
        return self.start + self.dur


def read_ctm(path: str | Path, validate: bool = True) -> list[CtmEntry]:
    """Parse a CTM file (blank lines and `;;` comments skipped)."""
    path = Path(path)
    entries: list[CtmEntry] = []
    linenos: list[int] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith(";;"):
                continue
            parts = line.split()
            if len(parts) not in (5, 6):
                raise CtmError(f"{path} line {lineno}: expected 'utt channel start dur token [conf]', "
                               f"found {len(parts)} fields: {line!r}")
            try:
                start, dur = float(parts[2]), float(parts[3])
                conf = float(parts[5]) if len(parts) == 6 else None
            except ValueError:
                raise CtmError(f"{path} line {lineno}: start/dur/conf must be numbers, found {line!r}") from None
            entries.append(CtmEntry(parts[0], parts[1], start, dur, parts[4], conf))
            linenos.append(lineno)
    if validate:
        validate_ctm(entries, where=str(path), linenos=linenos)
    return entries


def validate_ctm(entries: Sequence[CtmEntry], where: str = "<ctm>", linenos: Sequence[int] | None = None) -> None:
    """Per utterance and channel: dur > 0, start >= 0, entries sorted by start, no overlaps."""
    last: dict[tuple[str, str], CtmEntry] = {}
    for i, e in enumerate(entries):
        at = f"{where} line {linenos[i]}" if linenos is not None else f"{where} entry {i + 1}"
        if e.start < -TOLERANCE:
            raise CtmError(f"{at}: negative start {e.start} for {e.utt} {e.token!r}")
        if not e.dur > 0:
            raise CtmError(f"{at}: duration must be > 0, found {e.dur} for {e.utt} {e.token!r}")
        prev = last.get((e.utt, e.channel))
        if prev is not None:
            if e.start < prev.start - TOLERANCE:
                raise CtmError(f"{at}: not sorted: {e.utt} {e.token!r} starts at {e.start:.5f}, before the "
                               f"previous entry {prev.token!r} at {prev.start:.5f}")
            if e.start < prev.end - TOLERANCE:
                raise CtmError(f"{at}: overlap: {e.utt} {e.token!r} starts at {e.start:.5f} but the previous "
                               f"entry {prev.token!r} ends at {prev.end:.5f}")
        last[(e.utt, e.channel)] = e


def write_ctm(path: str | Path, entries: Iterable[CtmEntry]) -> Path:
    """Write entries sorted by utterance (C order) and start time; validated first."""
    from .datadir import sort_key

    entries = sorted(entries, key=lambda e: (sort_key(e.utt), e.channel, e.start))
    validate_ctm(entries, where=str(path))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for e in entries:
            conf = f" {e.conf:.3f}" if e.conf is not None else ""
            f.write(f"{e.utt} {e.channel} {e.start:.5f} {e.dur:.5f} {e.token}{conf}\n")
    tmp.replace(path)
    return path


def group_by_utt(entries: Iterable[CtmEntry]) -> dict[str, list[CtmEntry]]:
    out: dict[str, list[CtmEntry]] = {}
    for e in entries:
        out.setdefault(e.utt, []).append(e)
    return out


def frame_labels(ctm_entries: Sequence[CtmEntry], frame_rate: float, num_frames: int,
                 vocab: Mapping[str, int] | Sequence[str]) -> np.ndarray:
    """Duration upsampling: the unit id of every frame of one utterance.

    ctm_entries: one utterance's entries (phones or words); frame_rate in Hz (frames per second);
    num_frames: length T of the frame grid; vocab: token → id (or a list whose index is the id).
    Frame t covers [t/frame_rate, (t+1)/frame_rate) and takes the entry that contains its centre;
    frames no entry covers get 0 (silence / blank). Tokens whose id is 0 in `vocab` (e.g. `sil`)
    are silence. Returns int64 [T]. Unknown tokens raise CtmError.
    """
    if isinstance(vocab, Mapping):
        ids = vocab
    else:
        ids = {tok: i for i, tok in enumerate(vocab)}
    utts = {e.utt for e in ctm_entries}
    if len(utts) > 1:
        raise CtmError(f"frame_labels: entries of one utterance expected, found {len(utts)}: {sorted(utts)[:3]}")
    if frame_rate <= 0 or num_frames < 0:
        raise CtmError(f"frame_labels: need frame_rate > 0 and num_frames >= 0, got {frame_rate}, {num_frames}")
    labels = np.zeros(num_frames, dtype=np.int64)
    if not ctm_entries or num_frames == 0:
        return labels
    entries = sorted(ctm_entries, key=lambda e: e.start)
    starts = np.array([e.start for e in entries])
    ends = np.array([e.end for e in entries])
    unit = np.empty(len(entries), dtype=np.int64)
    for i, e in enumerate(entries):
        if e.token not in ids:
            raise CtmError(f"frame_labels: token {e.token!r} of {e.utt} is not in the vocabulary "
                           f"({len(ids)} entries)")
        unit[i] = ids[e.token]
    centres = (np.arange(num_frames) + 0.5) / frame_rate
    idx = np.searchsorted(starts, centres, side="right") - 1
    valid = idx >= 0
    valid[valid] &= centres[valid] < ends[idx[valid]]
    labels[valid] = unit[idx[valid]]
    return labels
