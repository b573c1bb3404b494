"""What every TTS engine wrapper returns: audio plus the engine's own phone and word times."""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Segment", "Synthesis", "SynthError"]


class SynthError(RuntimeError):
    """A TTS engine is missing or failed; the message says which engine, voice and why."""


@dataclasses.dataclass(frozen=True)
class Segment:
    """A labelled time span in seconds. `label` is a unit of `phones.PHONES` (after mapping)
    or a word."""

    label: str
    start: float
    end: float


@dataclasses.dataclass
class Synthesis:
    """One synthesised utterance as the engine produced it.

    audio: float32 [N] in [-1, 1] at `sample_rate` Hz; phones: contiguous-or-gapped phone
    segments (units of `phones.PHONES`, `sil` for pauses); words: word segments or None when the
    engine gives no word times; native_phones: the engine's own phone names, parallel to the
    events the phones came from (for debugging and phone-set studies)."""

    audio: np.ndarray
    sample_rate: int
    phones: list[Segment]
    words: list[Segment] | None
    engine: str
    voice: str
    native_phones: list[str] = dataclasses.field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate
