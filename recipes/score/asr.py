"""Word error rate with pocketsphinx's bundled US-English model (offline, no download).

`Recognizer` keeps one pocketsphinx 5 `Decoder` (default en-us acoustic model, language model
and dictionary from the wheel) and decodes 16 kHz int16 audio. WER is corpus-level: total word
edits (Levenshtein) over total reference words, after lower-casing and dropping punctuation.
"""
from __future__ import annotations

import re

import numpy as np

__all__ = ["Recognizer", "normalise_words", "word_errors", "wer"]


def normalise_words(text: str) -> list[str]:
    text = re.sub(r"\(\d+\)", " ", text.lower())  # pocketsphinx alternative-pronunciation marks
    text = re.sub(r"[^a-z' ]+", " ", text)
    return [w.strip("'") for w in text.split() if w.strip("'") and not w.startswith("<")]


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between word lists (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER in [0, ∞) (fraction, not percent)."""
    errors = words = 0
    for r, h in zip(refs, hyps):
        rw = normalise_words(r)
        errors += word_errors(rw, normalise_words(h))
        words += len(rw)
    return errors / words if words else float("nan")


class Recognizer:
    """pocketsphinx decoder at 16 kHz; `transcribe(float audio [N] at 16 kHz) → text`."""

    sample_rate = 16000

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise RuntimeError("pocketsphinx is not installed (pip install pocketsphinx>=5)") from e
        self.decoder = Decoder(samprate=self.sample_rate, loglevel="FATAL")

    def transcribe(self, audio: np.ndarray) -> str:
        if len(audio) < self.sample_rate // 50:
            return ""  # pocketsphinx cannot take an (almost) empty buffer
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        d = self.decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""
