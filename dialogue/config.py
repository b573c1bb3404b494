"""Configuration of the full-duplex dialogue model.

`StreamConfig` holds the facts of the token streams — codec frames per dialogue step (K), the codec's
frame rate, codebook size, voice dimension, the codec token that encodes silence and the text
vocabulary size. They are derived from the codec config and the tokenizer (`StreamConfig.derive`),
saved with the weights, and never written as literals in code. `DialogueConfig` adds the
architecture, the per-stream delays and the conditioning flags; it round-trips through
`codec.config_io` like every Duet config.
"""
from __future__ import annotations

import dataclasses

from codec.config import CodecConfig
from codec.transformer import TransformerConfig

from .user_encoder import UserEncoderConfig


class DialogueConfigError(ValueError):
    """A dialogue config that cannot build a model (streams not derived, bad delays, ...)."""


@dataclasses.dataclass
class StreamConfig:
    """Token-stream facts; all zero until `derive` fills them from a codec config and a tokenizer."""

    frames_per_step: int = 0  # K: codec frames per dialogue step
    codec_frame_rate: float = 0.0  # codec tokens per second
    codebook_size: int = 0  # codec vocabulary (audio tokens are in [0, codebook_size))
    voice_dim: int = 0  # dimension of the codec's paralinguistic vector
    silence_token: int = 0  # codec token of digital silence: fills delayed audio positions
    text_vocab_size: int = 0  # sentencepiece vocabulary, special ids included
    codec_latency_ms: float = 0.0  # the codec's algorithmic latency (codec.config.latency_ms)
    # steps by which an inner-monologue word's first piece is placed ahead of its audio onset, so the
    # text decides a word before the audio says it (and cannot be read off the system's own audio)
    text_lead: int = 0

    @classmethod
    def derive(cls, codec_cfg: CodecConfig, text_vocab_size: int, silence_token: int,
               step_hz: float = 12.5, text_lead: int = 0) -> "StreamConfig":
        """K = the whole number of codec frames closest to one step at `step_hz` (≥ 1)."""
        k = max(1, round(codec_cfg.frame_rate / step_hz))
        return cls(frames_per_step=k, codec_frame_rate=float(codec_cfg.frame_rate),
                   codebook_size=codec_cfg.codebook_size, voice_dim=codec_cfg.voice_dim,
                   silence_token=int(silence_token), text_vocab_size=int(text_vocab_size),
                   codec_latency_ms=float(codec_cfg.latency_ms), text_lead=int(text_lead))

    @property
    def step_rate(self) -> float:
        """Dialogue steps per second (12.5 Hz for 62.5 Hz codec tokens and K = 5)."""
        return self.codec_frame_rate / self.frames_per_step

    @property
    def step_seconds(self) -> float:
        return self.frames_per_step / self.codec_frame_rate

    def check(self, where: str = "streams") -> None:
        for f in ("frames_per_step", "codec_frame_rate", "codebook_size", "voice_dim", "text_vocab_size"):
            if getattr(self, f) <= 0:
                raise DialogueConfigError(f"{where}.{f} is {getattr(self, f)}; derive the stream facts from the "
                                          f"codec and tokenizer with StreamConfig.derive(...)")
        if self.text_lead < 0:
            raise DialogueConfigError(f"{where}.text_lead is {self.text_lead}, expected >= 0")
        if not 0 <= self.silence_token < self.codebook_size:
            raise DialogueConfigError(f"{where}.silence_token is {self.silence_token}, expected a codec token in "
                                      f"[0, {self.codebook_size})")


@dataclasses.dataclass
class DelayConfig:
    """Per-stream delays in dialogue steps: stream s at grid step t holds its content of step t - delay."""

    text: int = 0
    system: int = 1  # the system's audio follows its inner-monologue text by this many steps
    user: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"text": self.text, "system": self.system, "user": self.user}

    @property
    def max(self) -> int:
        return max(self.text, self.system, self.user)


@dataclasses.dataclass
class DialogueConfig:
    name: str = "duet_dialogue_small"
    streams: StreamConfig = dataclasses.field(default_factory=StreamConfig)
    delays: DelayConfig = dataclasses.field(default_factory=DelayConfig)
    # temporal transformer over dialogue steps; window = steps of context kept in the ring cache
    temporal: TransformerConfig = dataclasses.field(
        default_factory=lambda: TransformerConfig(dim=256, num_layers=4, num_heads=4, window=250, max_step=16))
    # depth transformer over the K+1 (or 2K+1) positions of one step; its window is set by the model
    depth: TransformerConfig = dataclasses.field(
        default_factory=lambda: TransformerConfig(dim=128, num_layers=2, num_heads=4, window=None, max_step=1))
    audio_rank: int | None = None  # None: per-position code tables and heads (Moshi); int: factorised
    user_voice: bool = True  # add a projection of the user's running paralinguistic vector per step
    system_voice: bool = True  # add a projection of the system voice G_sys to every step
    predict_user: bool = False  # the depth transformer also predicts the user's next K tokens (training)
    # listening head: the temporal state transcribes the user (word pieces laid out like the inner
    # monologue, on the user's channel) this many steps after each word's onset; None: no head
    user_text_delay: int | None = None
    # causal conv encoder over the user's tokens at the codec frame rate before they form a step
    # (dialogue.user_encoder); None: the sum of K per-position embeddings
    user_encoder: UserEncoderConfig | None = None
    # feed the listening head's transcript of the user back as an input stream (its previous step's
    # piece, like the inner monologue's), so the reply can copy what was heard at the text level;
    # teacher-forced with the reference transcript in training. Needs the listening head.
    user_text_input: bool = False

    def check(self) -> None:
        self.streams.check(f"{self.name}.streams")
        for name, d in self.delays.as_dict().items():
            if d < 0:
                raise DialogueConfigError(f"{self.name}.delays.{name} is {d}, expected >= 0")
        if self.user_text_delay is not None and self.user_text_delay < 0:
            raise DialogueConfigError(f"{self.name}.user_text_delay is {self.user_text_delay}, expected None or >= 0")
        if self.user_text_input and self.user_text_delay is None:
            raise DialogueConfigError(f"{self.name}.user_text_input needs the listening head: set user_text_delay")
        e = self.user_encoder
        if e is not None and (e.dim < 1 or e.kernel_size < 1 or e.num_layers < 0):
            raise DialogueConfigError(f"{self.name}.user_encoder is {e}: dim and kernel_size must be >= 1, "
                                      f"num_layers >= 0")
        if self.audio_rank is not None and self.audio_rank < 1:
            raise DialogueConfigError(f"{self.name}.audio_rank is {self.audio_rank}, expected None or >= 1")
        if self.temporal.window is None:
            raise DialogueConfigError(f"{self.name}.temporal.window is None; streaming needs a finite window")

    @property
    def depth_positions(self) -> int:
        """Positions per step in the depth transformer: text, system K tokens (+ user K tokens)."""
        k = self.streams.frames_per_step
        return 1 + k + (k if self.predict_user else 0)

    @property
    def theoretical_latency_ms(self) -> float:
        """One step of input + the system audio's delay behind the user's + codec algorithmic latency."""
        steps = 1 + max(0, self.delays.system - self.delays.user)
        return 1000.0 * steps * self.streams.step_seconds + self.streams.codec_latency_ms
