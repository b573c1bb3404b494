"""Sentences for synthetic corpora, cut from the Debian `fortunes` data files.

The fortune files are plain text, one quip per `%`-separated record. We take the non-offensive
set (the `off/` directory that `fortunes-off` installs is skipped, as are the `.dat` indexes,
the `.u8` links and the ASCII-art files), strip attributions, split records into sentences and
keep the short, clean, ASCII ones. The output is deterministic (files in sorted order, first
occurrence of each sentence kept), so a seed is all a recipe needs to pick the same text again.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

__all__ = ["Sentence", "fortune_sentences", "normalise_transcript", "FORTUNE_DIR"]

FORTUNE_DIR = Path("/usr/share/games/fortunes")
EXCLUDED_FILES = frozenset({"art", "ascii-art", "translate-me"})  # pictures and non-English text

_ALLOWED = re.compile(r"^[A-Za-z ,.;!?']+$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ATTRIBUTION = re.compile(r"^\s*(--|-- |- [A-Z]|\(c\))")


@dataclasses.dataclass(frozen=True)
class Sentence:
    """`spoken`: what the TTS engine reads (punctuation kept for prosody); `transcript`: the
    Kaldi `text` form (lower case, words only, apostrophes kept)."""

    spoken: str
    transcript: str
    source: str  # fortune file name

    @property
    def num_words(self) -> int:
        return len(self.transcript.split())


def normalise_transcript(text: str) -> str:
    """Lower case, punctuation removed (word-internal apostrophes kept), single spaces."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z' ]+", " ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def _records(path: Path) -> list[str]:
    raw = path.read_bytes().decode("utf-8", errors="replace")
    return [r for r in re.split(r"^%\s*$", raw, flags=re.M) if r.strip()]


def _clean_record(record: str) -> str:
    lines = []
    for line in record.splitlines():
        if _ATTRIBUTION.match(line) or line.strip().startswith(("--", "\t--")):
            break  # attribution / signature: the rest of the record is not the quip
        if line.startswith(("\t\t", "        ")) and lines:
            break  # deeply indented trailer (source, author)
        lines.append(line.strip())
    return " ".join(l for l in lines if l)


def _clean_sentence(s: str) -> str | None:
    s = s.strip().strip("\"()[]").strip()
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", " ", s)  # hyphenated words: read as two words
    if not s or s[-1] not in ".!?" or "--" in s or ".." in s:
        return None
    if not _ALLOWED.match(s):
        return None  # digits, symbols, quotes, non-ASCII
    # all-caps words are read as words, not spelled out
    s = " ".join(w.lower() if len(w.strip(",.;!?'")) > 1 and w.isupper() else w for w in s.split())
    return s


@functools.lru_cache(maxsize=8)
def _load(directory: str, min_words: int, max_words: int) -> tuple[Sentence, ...]:
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: fortune data not found (apt-get install fortunes; "
                                f"see recipes/install_system_deps.sh)")
    seen: set[str] = set()
    out: list[Sentence] = []
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.is_symlink() or path.suffix in (".dat", ".u8") \
                or path.name in EXCLUDED_FILES:
            continue  # off/ (offensive set) is a directory and is skipped here
        for record in _records(path):
            for piece in _SENTENCE_END.split(_clean_record(record)):
                spoken = _clean_sentence(piece)
                if spoken is None:
                    continue
                transcript = normalise_transcript(spoken)
                n = len(transcript.split())
                if n < min_words or n > max_words or transcript in seen:
                    continue
                seen.add(transcript)
                out.append(Sentence(spoken, transcript, path.name))
    if not out:
        raise ValueError(f"{root}: no usable sentences found")
    return tuple(out)


def fortune_sentences(directory: str | Path = FORTUNE_DIR, min_words: int = 3,
                      max_words: int = 20) -> list[Sentence]:
    """All usable sentences (3–20 words by default), in deterministic order."""
    return list(_load(str(directory), min_words, max_words))
