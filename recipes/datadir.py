"""Kaldi data directories: the one on-disk contract between corpus preparation, training and scoring.

A data dir holds `wav.scp` (recording id → audio path), `utt2spk`, `spk2utt`, and optionally
`text`, `segments`, `utt2dur` and `utt2lang`. Every file is sorted by its first field in C
(byte) order, one entry per id, as Kaldi's `utils/validate_data_dir.sh` requires. `DataDir`
loads, validates and writes such a directory; every problem raises `DataDirError` naming the
file, the line number and what was found versus expected. Audio entries are plain file paths
(relative paths are taken relative to the data dir); Kaldi pipe commands (`cmd |`) are rejected
because nothing here runs shell commands to read audio.

    d = DataDir.load("data/train")           # parses + validates
    for utt in d.utts: path, start, end = d.audio(utt)
    d.save("data/train_copy")                # writes sorted files, spk2utt derived from utt2spk
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["DataDir", "DataDirError", "Segment", "sort_key"]


class DataDirError(ValueError):
    """A data dir that Kaldi (or Duet) would not accept; the message names file, line and problem."""


@dataclasses.dataclass(frozen=True)
class Segment:
    """A piece of a recording: `recording` id in wav.scp, `start`/`end` in seconds (end -1 = to the end)."""

    recording: str
    start: float
    end: float


def sort_key(key: str) -> bytes:
    """Kaldi sorts with `LC_ALL=C sort`: byte order of the UTF-8 encoding."""
    return key.encode("utf-8")


_REQUIRED = ("wav.scp", "utt2spk")


@dataclasses.dataclass
class DataDir:
    """In-memory Kaldi data dir. Dicts are keyed by utterance id, except `wav_scp`, keyed by
    recording id (= utterance id when there is no `segments`). `text`, `segments`, `utt2dur`,
    `utt2lang` are optional (None = file absent); `text` may be absent for reconstruction-only
    data. `spk2utt` is always derived from `utt2spk`."""

    wav_scp: dict[str, str]
    utt2spk: dict[str, str]
    text: dict[str, str] | None = None
    segments: dict[str, Segment] | None = None
    utt2dur: dict[str, float] | None = None
    utt2lang: dict[str, str] | None = None
    path: Path | None = None  # where it was loaded from: relative audio paths resolve against it
    _lines: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    # --- views -------------------------------------------------------------------------------
    @property
    def utts(self) -> list[str]:
        """Utterance ids in Kaldi order."""
        return sorted(self.utt2spk, key=sort_key)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for utt in self.utts:
            out.setdefault(self.utt2spk[utt], []).append(utt)
        return {spk: out[spk] for spk in sorted(out, key=sort_key)}

    @property
    def speakers(self) -> list[str]:
        return list(self.spk2utt)

    def wav_path(self, recording: str) -> Path:
        """Absolute path of a recording's audio (relative wav.scp entries resolve against the dir)."""
        p = Path(self.wav_scp[recording])
        if not p.is_absolute() and self.path is not None:
            p = self.path / p
        return p

    def audio(self, utt: str) -> tuple[Path, float, float]:
        """(path, start seconds, end seconds or -1 for 'to the end') of an utterance."""
        if self.segments is not None:
            seg = self.segments[utt]
            return self.wav_path(seg.recording), seg.start, seg.end
        return self.wav_path(utt), 0.0, -1.0

    def subset(self, utts) -> "DataDir":
        """A new DataDir restricted to `utts` (and the recordings they use)."""
        keep = set(utts)
        unknown = keep - set(self.utt2spk)
        if unknown:
            raise DataDirError(f"subset: utterances not in the data dir: {sorted(unknown)[:5]}")

        def pick(d):
            return None if d is None else {k: v for k, v in d.items() if k in keep}

        segments = pick(self.segments)
        recs = {s.recording for s in segments.values()} if segments is not None else keep
        return DataDir(wav_scp={k: v for k, v in self.wav_scp.items() if k in recs},
                       utt2spk=pick(self.utt2spk), text=pick(self.text), segments=segments,
                       utt2dur=pick(self.utt2dur), utt2lang=pick(self.utt2lang), path=self.path)

    # --- reading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, validate: bool = True, check_audio: bool = True) -> "DataDir":
        """Parse a data dir. Format errors (bad lines, unsorted, duplicates) always raise;
        `validate` adds the cross-file checks of `validate()`."""
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(f"{path}: data dir does not exist")
        for name in _REQUIRED:
            if not (path / name).is_file():
                raise DataDirError(f"{path / name}: required file is missing")
        d = cls(wav_scp={}, utt2spk={}, path=path)
        d.wav_scp = d._read_map(path / "wav.scp", _parse_wav)
        d.utt2spk = d._read_map(path / "utt2spk", _parse_token)
        if (path / "text").is_file():
            d.text = d._read_map(path / "text", _parse_rest, allow_empty=True)
        if (path / "segments").is_file():
            d.segments = d._read_map(path / "segments", _parse_segment)
        if (path / "utt2dur").is_file():
            d.utt2dur = d._read_map(path / "utt2dur", _parse_duration)
        if (path / "utt2lang").is_file():
            d.utt2lang = d._read_map(path / "utt2lang", _parse_token)
        if (path / "spk2utt").is_file():
            d._check_spk2utt_file(path / "spk2utt")
        else:
            raise DataDirError(f"{path / 'spk2utt'}: required file is missing "
                               f"(make it from utt2spk, e.g. DataDir.load(..., validate=False).save(...))")
        if validate:
            d.validate(check_audio=check_audio)
        return d

    def _read_map(self, file: Path, parse, allow_empty: bool = False) -> dict:
        out: dict = {}
        lines: dict[str, int] = {}
        prev: str | None = None
        with open(file, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.rstrip("\n")
                if not line.strip():
                    raise DataDirError(f"{file} line {lineno}: empty line")
                parts = line.split(maxsplit=1)
                key, rest = parts[0], (parts[1].strip() if len(parts) > 1 else "")
                if not rest and not allow_empty:
                    raise DataDirError(f"{file} line {lineno}: expected '<id> <value>', found only {key!r}")
                if key in out:
                    raise DataDirError(f"{file} line {lineno}: duplicate id {key!r} "
                                       f"(first on line {lines[key]})")
                if prev is not None and sort_key(key) < sort_key(prev):
                    raise DataDirError(f"{file} line {lineno}: not sorted: {key!r} comes after {prev!r} "
                                       f"(Kaldi needs LC_ALL=C sort order)")
                try:
                    out[key] = parse(rest)
                except ValueError as e:
                    raise DataDirError(f"{file} line {lineno}: {e}") from None
                lines[key] = lineno
                prev = key
        self._lines[file.name] = lines
        return out

    def _check_spk2utt_file(self, file: Path) -> None:
        expected = self.spk2utt
        spk2utt = self._read_map(file, lambda rest: rest.split())
        lines = self._lines["spk2utt"]
        for spk, utts in spk2utt.items():
            if spk not in expected:
                raise DataDirError(f"{file} line {lines[spk]}: speaker {spk!r} has no utterance in utt2spk")
            if utts != expected[spk]:
                if sorted(utts, key=sort_key) == expected[spk]:
                    problem = f"utterances not sorted: {utts[:4]}..."
                else:
                    missing = sorted(set(expected[spk]) - set(utts))[:3]
                    extra = sorted(set(utts) - set(expected[spk]))[:3]
                    problem = f"inconsistent with utt2spk (missing {missing}, extra {extra})"
                raise DataDirError(f"{file} line {lines[spk]}: speaker {spk!r}: {problem}")
        for spk in expected:
            if spk not in spk2utt:
                raise DataDirError(f"{file}: speaker {spk!r} of utt2spk is missing "
                                   f"(inconsistent with utt2spk)")

    # --- checking ----------------------------------------------------------------------------
    def _where(self, name: str, key: str) -> str:
        base = (self.path / name) if self.path is not None else Path(name)
        line = self._lines.get(name, {}).get(key)
        return f"{base} line {line}" if line else f"{base}"

    def _has_audio(self, utt: str) -> bool:
        if self.segments is None:
            return utt in self.wav_scp
        return utt in self.segments and self.segments[utt].recording in self.wav_scp

    def validate(self, check_audio: bool = True) -> "DataDir":
        """Cross-file checks: every utterance has audio, speaker, (text, duration, language when
        those files exist) and nothing is left over; audio files exist. Returns self."""
        if not self.utt2spk:
            raise DataDirError(f"{self._where('utt2spk', '')}: no utterances")
        utts = set(self.utt2spk)
        for key in self.wav_scp:
            if not key or any(c.isspace() for c in key):
                raise DataDirError(f"{self._where('wav.scp', key)}: bad recording id {key!r}")
        if self.segments is None:
            for utt in self.utts:
                if utt not in self.wav_scp:
                    raise DataDirError(f"{self._where('utt2spk', utt)}: utterance {utt!r} has no audio "
                                       f"in wav.scp")
            for rec in self.wav_scp:
                if rec not in utts:
                    raise DataDirError(f"{self._where('wav.scp', rec)}: recording {rec!r} has no entry in "
                                       f"utt2spk")
        else:
            for utt in self.utts:
                if utt not in self.segments:
                    raise DataDirError(f"{self._where('utt2spk', utt)}: utterance {utt!r} has no entry in "
                                       f"segments")
            for utt, seg in self.segments.items():
                if utt not in utts:
                    raise DataDirError(f"{self._where('segments', utt)}: utterance {utt!r} not in utt2spk")
                if seg.recording not in self.wav_scp:
                    raise DataDirError(f"{self._where('segments', utt)}: utterance {utt!r} has no audio: "
                                       f"recording {seg.recording!r} is not in wav.scp")
        for name, table in (("text", self.text), ("utt2dur", self.utt2dur), ("utt2lang", self.utt2lang)):
            if table is None:
                continue
            for utt in table:
                if not self._has_audio(utt):
                    raise DataDirError(f"{self._where(name, utt)}: utterance {utt!r} has no audio in wav.scp")
                if utt not in utts:
                    raise DataDirError(f"{self._where(name, utt)}: utterance {utt!r} is not in utt2spk")
            for utt in self.utts:
                if utt not in table:
                    raise DataDirError(f"{self._where(name, '')}: utterance {utt!r} of utt2spk is missing")
        for utt, spk in self.utt2spk.items():
            if not spk or any(c.isspace() for c in spk):
                raise DataDirError(f"{self._where('utt2spk', utt)}: bad speaker id {spk!r}")
        if check_audio:
            for rec, entry in self.wav_scp.items():
                if not self.wav_path(rec).is_file():
                    raise DataDirError(f"{self._where('wav.scp', rec)}: audio file {entry!r} does not exist")
        return self

    # --- writing -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write every present file sorted in C order (spk2utt derived). Returns the dir."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _write(path / "wav.scp", self.wav_scp, str)
        _write(path / "utt2spk", self.utt2spk, str)
        _write(path / "spk2utt", self.spk2utt, " ".join)
        for name, table, fmt in (("text", self.text, str),
                                 ("segments", self.segments,
                                  lambda s: f"{s.recording} {s.start:.3f} {s.end:.3f}"),
                                 ("utt2dur", self.utt2dur, lambda v: f"{v:.4f}"),
                                 ("utt2lang", self.utt2lang, str)):
            if table is not None:
                _write(path / name, table, fmt)
            elif (path / name).exists():
                (path / name).unlink()  # a stale optional file would contradict the new contents
        return path


def _write(file: Path, table: dict, fmt) -> None:
    tmp = file.with_name(file.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for key in sorted(table, key=sort_key):
            value = fmt(table[key])
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")
    tmp.replace(file)


def _parse_wav(rest: str) -> str:
    if rest.endswith("|"):
        raise ValueError(f"pipe command {rest!r} not supported: wav.scp entries must be audio file paths")
    if len(rest.split()) != 1:
        raise ValueError(f"expected one audio path, found {rest!r} (paths with spaces are not supported)")
    return rest


def _parse_token(rest: str) -> str:
    if len(rest.split()) != 1:
        raise ValueError(f"expected one field after the id, found {rest!r}")
    return rest


def _parse_rest(rest: str) -> str:
    return " ".join(rest.split())


def _parse_segment(rest: str) -> Segment:
    parts = rest.split()
    if len(parts) != 3:
        raise ValueError(f"expected '<utt> <recording> <start> <end>', found {rest!r}")
    try:
        start, end = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"segment times must be numbers, found {parts[1]!r} {parts[2]!r}") from None
    if start < 0 or (end != -1 and end <= start):
        raise ValueError(f"segment times must satisfy 0 <= start < end (or end = -1), found {start} {end}")
    return Segment(parts[0], start, end)


def _parse_duration(rest: str) -> float:
    try:
        value = float(rest)
    except ValueError:
        raise ValueError(f"duration must be a number of seconds, found {rest!r}") from None
    if not value > 0:
        raise ValueError(f"duration must be > 0 seconds, found {value}")
    return value
