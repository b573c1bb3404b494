"""CTC forced alignment of one utterance: emissions + transcript → word and character CTM entries.

`torchaudio.functional.forced_align` finds the best CTC path through the emissions for the target
characters (with `|` between words); `merge_tokens` turns the path into one span per target token.
CTC emissions are peaky (a character is often emitted on a single frame), so spans are widened
into a segmentation: a character or separator lasts from its first frame to the next token's first
frame, capped at `max_unit_seconds` beyond its own span; the last token ends with its span. A word
runs from its first character's start to its last character's end; separators become `sil`. What
no entry covers (leading/trailing blank, capped pauses) is silence for `recipes.ctm.frame_labels`.
Emission frame f is centred at f·frame_seconds (centred STFT), so it spans [(f − ½), (f + ½))·frame_seconds.
An utterance that cannot be aligned raises `AlignmentError` saying why.
"""
from __future__ import annotations

import dataclasses

import torch
import torchaudio.functional as AF

from ..ctm import CtmEntry
from .text import SEPARATOR, CharTokenizer

__all__ = ["AlignmentError", "Alignment", "align_emission", "check_alignable"]


class AlignmentError(ValueError):
    """An utterance the aligner cannot align; the message names the utterance and the reason."""


@dataclasses.dataclass
class Alignment:
    words: list[CtmEntry]  # one per normalised transcript word, in order
    phones: list[CtmEntry]  # characters and `sil` (word separators), in order
    score: float  # mean log-probability per frame of the best path


def check_alignable(utt: str, words: list[str], targets: list[int], num_frames: int, frame_seconds: float) -> None:
    """Raise AlignmentError when no CTC path of `num_frames` frames can emit `targets`."""
    if not words:
        raise AlignmentError(f"{utt}: nothing to align: the transcript has no letters of the aligner's alphabet")
    repeats = sum(1 for a, b in zip(targets, targets[1:]) if a == b)
    need = len(targets) + repeats
    if num_frames < need:
        raise AlignmentError(
            f"{utt}: transcript longer than the audio: {len(words)} words = {len(targets)} CTC tokens "
            f"(+{repeats} blanks between repeated letters) need >= {need} frames, but the audio gives "
            f"{num_frames} frames ({num_frames * frame_seconds:.2f} s at {1 / frame_seconds:.0f} frames/s); "
            f"wrong transcript or truncated audio?")


def align_emission(emission: torch.Tensor, words: list[str], tokenizer: CharTokenizer, frame_seconds: float,
                   utt: str = "utt", channel: str = "1", max_unit_seconds: float = 0.3,
                   duration: float | None = None) -> Alignment:
    """Force-align `words` to one utterance's CTC log-probs.

    emission: [T, vocab] log-probs (T frames of `frame_seconds` s, blank = 0); words: normalised
    words (see `CharTokenizer.words`); duration: the audio's length in seconds (ends are clamped
    to it). Returns word and unit CTM entries with times in seconds and `conf` = mean emission
    probability of the word's (unit's) frames."""
    if emission.dim() != 2 or emission.shape[-1] != tokenizer.vocab_size:
        raise AlignmentError(f"{utt}: emission must be [frames, {tokenizer.vocab_size}], got {tuple(emission.shape)}")
    targets = tokenizer.encode(words) if words else []
    num_frames = emission.shape[0]
    check_alignable(utt, words, targets, num_frames, frame_seconds)
    emission = emission.detach().float().cpu()
    if not torch.isfinite(emission).all():
        raise AlignmentError(f"{utt}: the aligner produced non-finite emissions")
    path, scores = AF.forced_align(emission[None], torch.tensor([targets], dtype=torch.int32), blank=0)
    spans = AF.merge_tokens(path[0], scores[0].exp())
    if len(spans) != len(targets):  # cannot happen for a valid CTC path; guard against silent corruption
        raise AlignmentError(f"{utt}: forced alignment gave {len(spans)} token spans for {len(targets)} targets")
    cap = max(1, int(round(max_unit_seconds / frame_seconds)))
    limit = duration if duration is not None else num_frames * frame_seconds

    def t(frame: int) -> float:  # frame f is centred at f·frame_seconds (centred STFT): it starts half a frame early
        return min(max(0.0, (frame - 0.5) * frame_seconds), limit)

    phones: list[CtmEntry] = []
    bounds: list[tuple[int, int, float]] = []  # (start, end, score) per token, in frames
    for i, span in enumerate(spans):
        end = span.end
        if i + 1 < len(spans):
            end = max(span.end, min(spans[i + 1].start, span.end + cap))
        bounds.append((span.start, end, span.score))
        if t(end) > t(span.start):
            phones.append(CtmEntry(utt, channel, t(span.start), t(end) - t(span.start),
                                   tokenizer.unit(targets[i]), round(span.score, 3)))
    word_entries: list[CtmEntry] = []
    k = 0
    for w in words:
        first, last = k, k + len(w) - 1
        start, end = bounds[first][0], bounds[last][1]
        conf = sum(b[2] for b in bounds[first:last + 1]) / len(w)
        if t(end) > t(start):
            word_entries.append(CtmEntry(utt, channel, t(start), t(end) - t(start), w, round(conf, 3)))
        k = last + 1
        if k < len(targets):
            assert targets[k] == SEPARATOR
            k += 1
    if len(word_entries) != len(words):
        raise AlignmentError(f"{utt}: {len(words) - len(word_entries)} words fall beyond the end of the audio")
    score = float(scores[0].sum()) / num_frames
    return Alignment(word_entries, phones, score)
