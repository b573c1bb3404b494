"""Transcripts as CTC targets for the forced aligner: words → characters, with a word separator.

Real corpora (LibriTTS `.normalized.txt`) keep case, punctuation and the odd accented letter; the
aligner works on a small fixed alphabet (lower-case letters and the apostrophe by default, stored in
the aligner's config). `normalise_words` maps a transcript to the words that get aligned: accents
are stripped (é → e), dashes and slashes split words, other punctuation is dropped, and a word with
no letter left (e.g. a lone digit, if the alphabet has none) is dropped, so the CTM words are a
normalised subset of the transcript in order.

CTC ids: 0 = blank, 1 = word separator `|`, 2.. = the alphabet. The unit inventory written beside
the CTMs (`phones.txt`) has `sil 0` (what the separator and untouched frames become) and then the
alphabet, so a character's unit id is its CTC id − 1.
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

__all__ = ["BLANK", "SEPARATOR", "SILENCE", "DEFAULT_ALPHABET", "CharTokenizer", "normalise_words"]

BLANK = 0
SEPARATOR = 1
SILENCE = "sil"
DEFAULT_ALPHABET = "abcdefghijklmnopqrstuvwxyz'"

_SPLIT = re.compile(r"[\s\-\u2010-\u2015/]+")  # whitespace, hyphens and dashes, slashes
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'"})


def normalise_words(text: str, alphabet: str = DEFAULT_ALPHABET) -> list[str]:
    """A transcript → the words the aligner sees (lower case, alphabet characters only).

    'Well-known, “café” isn't 5.' → ['well', 'known', 'cafe', "isn't"] (with the default alphabet).
    Apostrophes are kept inside words and stripped at their ends (quotes)."""
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    keep = set(alphabet)
    words = []
    for raw in _SPLIT.split(text):
        w = "".join(c for c in raw if c in keep).strip("'")
        if w:
            words.append(w)
    return words


class CharTokenizer:
    """Characters of `alphabet` ↔ CTC ids (0 blank, 1 separator, 2.. characters)."""

    def __init__(self, alphabet: str = DEFAULT_ALPHABET) -> None:
        if len(set(alphabet)) != len(alphabet) or any(c.isspace() or c == "|" for c in alphabet):
            raise ValueError(f"alphabet must be distinct non-space characters other than '|', got {alphabet!r}")
        self.alphabet = alphabet
        self.ids = {c: i + 2 for i, c in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        """CTC classes: blank + separator + alphabet."""
        return len(self.alphabet) + 2

    def words(self, text: str) -> list[str]:
        return normalise_words(text, self.alphabet)

    def encode(self, words: list[str]) -> list[int]:
        """Words → CTC target ids, `|` between words (not at the ends)."""
        out: list[int] = []
        for i, w in enumerate(words):
            if i:
                out.append(SEPARATOR)
            try:
                out.extend(self.ids[c] for c in w)
            except KeyError as e:
                raise ValueError(f"word {w!r} has character {e.args[0]!r} outside the alphabet "
                                 f"{self.alphabet!r}") from None
        return out

    def unit(self, ctc_id: int) -> str:
        """CTC id → unit name written in phones.ctm (separator → `sil`)."""
        if ctc_id == SEPARATOR:
            return SILENCE
        if not 2 <= ctc_id < self.vocab_size:
            raise ValueError(f"CTC id {ctc_id} is not a unit (blank is 0, vocabulary size {self.vocab_size})")
        return self.alphabet[ctc_id - 2]

    @property
    def units(self) -> list[str]:
        """The unit inventory: `sil` (id 0) then the alphabet (id = CTC id − 1)."""
        return [SILENCE] + list(self.alphabet)

    def write_units(self, path: str | Path) -> Path:
        """phones.txt: `<unit> <id>` per line, `sil 0` first (as recipes.synth writes it)."""
        path = Path(path)
        path.write_text("".join(f"{u} {i}\n" for i, u in enumerate(self.units)), encoding="utf-8")
        return path
