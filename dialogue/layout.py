"""The aligned token grid of a two-channel dialogue, and its inverse.

One row per dialogue step; columns `[text, system_0..K-1, user_0..K-1]` (`Columns` names them).
The text column is the system's inner monologue: each word's sentencepiece pieces start at the step
of the word's onset in the system channel (or `StreamConfig.text_lead` steps before it), an EPAD sits
on the step just before them, and PAD fills the rest (Moshi's convention). A word that would overlap
the previous one is pushed later, so word order and count always survive the round trip; timings
come back quantised to the step.
Delays shift whole streams later by whole steps (`delay_tokens`) and are undone exactly
(`undelay_tokens`).
"""
from __future__ import annotations

import dataclasses
import math

import torch

from .config import DelayConfig, StreamConfig
from .tokenizer import TextTokenizer


WORD_START = "\u2581"  # sentencepiece's word-boundary mark


class LayoutError(ValueError):
    """Inputs that cannot be laid out on the grid (shapes, lengths, delays)."""


@dataclasses.dataclass
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds


@dataclasses.dataclass(frozen=True)
class Columns:
    """Column indices of a grid with K audio tokens per stream and step."""

    k: int

    @property
    def text(self) -> int:
        return 0

    @property
    def system(self) -> slice:
        return slice(1, 1 + self.k)

    @property
    def user(self) -> slice:
        return slice(1 + self.k, 1 + 2 * self.k)

    @property
    def width(self) -> int:
        return 1 + 2 * self.k

    def delays(self, delays: DelayConfig) -> list[int]:
        return [delays.text] + [delays.system] * self.k + [delays.user] * self.k

    def fills(self, streams: StreamConfig) -> list[int]:
        return [TextTokenizer.PAD] + [streams.silence_token] * (2 * self.k)


# --- text stream ----------------------------------------------------------------------------------
def text_stream(words: list[Word], num_steps: int, step_seconds: float, tokenizer: TextTokenizer,
                lead: int = 0) -> torch.Tensor:
    """Words with onsets → text tokens [num_steps] (undelayed), each word's first piece `lead` steps
    before the step of its onset (or later, when the previous word's pieces are still running).
    Pieces that fall past the end are cut."""
    tokens = torch.full((num_steps,), TextTokenizer.PAD, dtype=torch.long)
    cursor = 0  # first free step
    for w in sorted(words, key=lambda w: w.start):
        pieces = tokenizer.encode_word(w.word)
        onset = max(int(math.floor(w.start / step_seconds + 1e-6)) - lead, cursor + 1)  # room for the EPAD
        if onset >= num_steps:
            break
        tokens[onset - 1] = TextTokenizer.EPAD
        n = min(len(pieces), num_steps - onset)
        tokens[onset:onset + n] = torch.tensor(pieces[:n])
        cursor = onset + n
    return tokens


def text_stream_words(tokens: torch.Tensor, step_seconds: float, tokenizer: TextTokenizer,
                      lead: int = 0) -> list[Word]:
    """Inverse of `text_stream`: text tokens [S] → words; a word is a run of pieces that starts at a
    word-initial piece ("▁…") or after PAD/EPAD; start = its first piece's step, end = the step after
    its last piece, both moved `lead` steps later (seconds on the audio's clock; any shift of the
    stream's clock, negative too, goes through `lead`). Generated streams
    that drop an EPAD still give
    one word per word-initial piece."""
    words: list[Word] = []
    run: list[int] = []

    def close(t: int) -> None:
        if run:
            words.append(Word("".join(tokenizer.decode(run).split()), (t - len(run) + lead) * step_seconds,
                              (t + lead) * step_seconds))
            run.clear()

    for t, tok in enumerate(tokens.tolist()):
        if not tokenizer.is_piece(tok):
            close(t)
            continue
        if tokenizer.piece(tok).startswith(WORD_START):
            close(t)
        run.append(tok)
    close(len(tokens))
    return [w for w in words if w.word]


# --- delays ---------------------------------------------------------------------------------------
def delay_tokens(tokens: torch.Tensor, delays: list[int], fills: list[int]) -> torch.Tensor:
    """tokens [..., S, C] → [..., S + max(delays), C]: column c shifted later by delays[c] steps, the
    steps before and after its content filled with fills[c]."""
    *lead, s, c = tokens.shape
    if len(delays) != c or len(fills) != c:
        raise LayoutError(f"delay_tokens: {c} columns but {len(delays)} delays and {len(fills)} fills")
    out = torch.tensor(fills, dtype=tokens.dtype, device=tokens.device).expand(*lead, s + max(delays), c).clone()
    for col, d in enumerate(delays):
        out[..., d:d + s, col] = tokens[..., col]
    return out


def undelay_tokens(tokens: torch.Tensor, delays: list[int], length: int | None = None) -> torch.Tensor:
    """Inverse of `delay_tokens`: [..., S', C] → [..., length, C] (default S' − max(delays))."""
    s = tokens.shape[-2]
    length = s - max(delays) if length is None else length
    if length < 0 or length + max(delays) > s:
        raise LayoutError(f"undelay_tokens: {s} steps cannot hold {length} steps with delays {delays}")
    return torch.stack([tokens[..., d:d + length, col] for col, d in enumerate(delays)], dim=-1)


def user_text_targets(user_text: torch.Tensor, delays: DelayConfig, user_text_delay: int, total: int) -> torch.Tensor:
    """The listening head's targets: the user's undelayed text stream [..., S] placed on the delayed
    grid's clock, `user_text_delay` steps behind the user's audio, PAD-filled to [..., total]."""
    d = delays.user + user_text_delay
    out = user_text.new_full((*user_text.shape[:-1], total), TextTokenizer.PAD)
    n = max(0, min(user_text.shape[-1], total - d))
    out[..., d:d + n] = user_text[..., :n]
    return out


def delay_rows(values: torch.Tensor, delay: int, total: int) -> torch.Tensor:
    """Per-step vectors [..., S, D] shifted `delay` steps later into [..., total, D]; the steps before
    repeat the first row and those after repeat the last (a running vector holds its value)."""
    s = values.shape[-2]
    index = (torch.arange(total, device=values.device) - delay).clamp(0, s - 1)
    return values.index_select(-2, index)


# --- the grid -------------------------------------------------------------------------------------
@dataclasses.dataclass
class DialogueGrid:
    """Undelayed grid of one dialogue: tokens [S, 1 + 2K] (`Columns`), the user's running voice
    vector after each step [S, D] (or None) and the system voice G_sys [D] (or None)."""

    tokens: torch.Tensor
    user_voice: torch.Tensor | None = None
    system_voice: torch.Tensor | None = None

    @property
    def num_steps(self) -> int:
        return self.tokens.shape[0]


def frames_to_steps(codes: torch.Tensor, k: int, fill: int) -> torch.Tensor:
    """codec codes [F] → [ceil(F / K), K], the last step padded with `fill`."""
    steps = -(-codes.shape[0] // k)
    padded = torch.full((steps * k,), fill, dtype=torch.long)
    padded[:codes.shape[0]] = codes
    return padded.view(steps, k)


def build_grid(user_codes: torch.Tensor, system_codes: torch.Tensor, system_words: list[Word],
               tokenizer: TextTokenizer, streams: StreamConfig, user_voice_frames: torch.Tensor | None = None,
               system_voice: torch.Tensor | None = None) -> DialogueGrid:
    """Codec codes per channel [F] (same F), the system channel's words and (optionally) the user's
    running voice per codec frame [F, D] → the undelayed grid."""
    if user_codes.shape != system_codes.shape or user_codes.dim() != 1:
        raise LayoutError(f"build_grid: channel codes must be [F] of equal length, got "
                          f"{tuple(user_codes.shape)} and {tuple(system_codes.shape)}")
    k = streams.frames_per_step
    user = frames_to_steps(user_codes.long(), k, streams.silence_token)
    system = frames_to_steps(system_codes.long(), k, streams.silence_token)
    text = text_stream(system_words, user.shape[0], streams.step_seconds, tokenizer, streams.text_lead)
    voice = None
    if user_voice_frames is not None:
        if user_voice_frames.shape[0] != user_codes.shape[0]:
            raise LayoutError(f"build_grid: user voice has {user_voice_frames.shape[0]} frames, codes have "
                              f"{user_codes.shape[0]}")
        last = (torch.arange(user.shape[0]) * k + k - 1).clamp(max=user_codes.shape[0] - 1)
        voice = user_voice_frames[last].float()
    return DialogueGrid(torch.cat([text[:, None], system, user], dim=1), voice, system_voice)


def grid_words(tokens: torch.Tensor, streams: StreamConfig, delays: DelayConfig, tokenizer: TextTokenizer,
               delayed: bool = True) -> list[Word]:
    """The inner monologue with timings (seconds on the undelayed clock) from a grid [S, 1 + 2K] or
    from the text column alone [S]."""
    text = tokens if tokens.dim() == 1 else tokens[:, Columns(streams.frames_per_step).text]
    if delayed:
        text = text[delays.text:]
    return text_stream_words(text, streams.step_seconds, tokenizer, streams.text_lead)
