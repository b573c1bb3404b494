"""Codec configuration and presets.

Everything that defines a codec's stream — sample rate, mel hop, token downsampling, FSQ levels,
and hence frame rate and bitrate — lives here and is saved beside the weights. Code reads frame
rates from a config, never from a constant.
"""
from __future__ import annotations

import dataclasses
import math

from .transformer import TransformerConfig


@dataclasses.dataclass
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None


@dataclasses.dataclass
class VocoderConfig:
    dim: int = 192
    num_blocks: int = 4
    kernel_size: int = 7
    n_fft: int = 1024  # synthesis window; its overlap (n_fft - hop) is the vocoder's algorithmic latency


SEMANTIC_INPUTS = ("latent", "cepstrum", "phones")


def _recognizer_transformer() -> TransformerConfig:
    return TransformerConfig(dim=128, num_layers=3)


@dataclasses.dataclass
class SemanticInputConfig:
    """What the semantic branch hears. "latent": the encoder's A, which carries everything, pitch
    included. "cepstrum": the low-quefrency cepstrum of the log-mel above `min_hz`, without c0: level
    and the F0 region are out by construction, most of the harmonic ripple too. What a pitch change
    does to the envelope itself stays, and must still be learned away (egs/mini/codec1/RESULTS.md:
    with flite it is as large as the whole log-mel change). "phones": a causal frame classifier over
    `n_units` phone classes (trained on the corpus's phone timings, under voice perturbation) whose
    *decisions*, one-hot, are all the branch hears: how something was said can reach the tokens only
    through the classifier's errors."""
    kind: str = "latent"
    n_ceps: int = 24  # cepstral coefficients c1..c_n over the kept mel bands
    min_hz: float = 250.0  # mel bands centred below this (the F0 region) are left out
    n_units: int = 42  # phones: classes of the frame classifier (the training shard's phone set)
    recognizer: TransformerConfig = dataclasses.field(default_factory=_recognizer_transformer)

    def __post_init__(self) -> None:
        if self.kind not in SEMANTIC_INPUTS:
            raise ValueError(f"semantic_input.kind {self.kind!r}: expected one of {SEMANTIC_INPUTS}")
        if self.n_ceps < 1:
            raise ValueError(f"semantic_input.n_ceps must be >= 1, got {self.n_ceps}")
        if self.n_units < 2:
            raise ValueError(f"semantic_input.n_units must be >= 2, got {self.n_units}")

    def defining_fields(self) -> dict:
        """The fields that shape this kind's token space (for the codec identity)."""
        own = {"latent": (), "cepstrum": ("n_ceps", "min_hz"), "phones": ("n_units", "recognizer")}[self.kind]
        return {"kind": self.kind, **{k: dataclasses.asdict(self)[k] for k in own}}


@dataclasses.dataclass
class CodecConfig:
    name: str = "duet_cpu16k"
    mel: MelConfig = dataclasses.field(default_factory=MelConfig)
    downsample: int = 1  # mel frames per token
    fsq_levels: list[int] = dataclasses.field(default_factory=lambda: [3] * 8)
    latent_dim: int = 128  # dimension of A (acoustic embedding)
    voice_dim: int = 64  # dimension of G (paralinguistic vector)
    voice_hidden: int = 128
    encoder: TransformerConfig = dataclasses.field(default_factory=lambda: TransformerConfig(dim=128, num_layers=3))
    semantic: TransformerConfig = dataclasses.field(default_factory=lambda: TransformerConfig(dim=128, num_layers=2))
    semantic_input: SemanticInputConfig = dataclasses.field(default_factory=SemanticInputConfig)
    connector: TransformerConfig = dataclasses.field(default_factory=lambda: TransformerConfig(dim=128, num_layers=2))
    decoder: TransformerConfig = dataclasses.field(default_factory=lambda: TransformerConfig(dim=128, num_layers=3))
    vocoder: VocoderConfig = dataclasses.field(default_factory=VocoderConfig)

    def __post_init__(self) -> None:
        if self.vocoder.n_fft < self.mel.hop_length:
            raise ValueError(f"vocoder n_fft {self.vocoder.n_fft} < hop {self.mel.hop_length}")
        if any(l < 2 for l in self.fsq_levels):
            raise ValueError(f"FSQ levels must be >= 2, got {self.fsq_levels}")

    # --- derived stream facts ----------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @property
    def samples_per_token(self) -> int:
        return self.mel.hop_length * self.downsample

    @property
    def frame_rate(self) -> float:
        """Tokens per second."""
        return self.mel.sample_rate / self.samples_per_token

    @property
    def codebook_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.codebook_size)

    @property
    def bitrate(self) -> float:
        """Semantic-token bitrate in bits/s (the voice vector is side information, reported apart)."""
        return self.frame_rate * self.bits_per_token

    @property
    def voice_bytes(self) -> int:
        """Bytes of the voice vector per stream (float16)."""
        return 2 * self.voice_dim

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: one whole token of input + the vocoder's overlap-add lag."""
        lag = self.vocoder.n_fft - self.mel.hop_length
        return 1000.0 * (self.samples_per_token + lag) / self.mel.sample_rate


def _reference_mel() -> MelConfig:
    return MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=80)


def _reference_transformer(layers: int) -> TransformerConfig:
    return TransformerConfig(dim=512, num_layers=layers, num_heads=8, window=256, max_step=16)


def secousti_1k() -> CodecConfig:
    """SecoustiCodec-style 1 kbps preset: 22.05 kHz, hop 256 → 86.13 Hz × log2(6561) = 1.09 kbps."""
    return CodecConfig(name="secousti_1k", mel=_reference_mel(), downsample=1, latent_dim=512, voice_dim=128,
                       voice_hidden=256, encoder=_reference_transformer(6), semantic=_reference_transformer(4),
                       connector=_reference_transformer(4), decoder=_reference_transformer(6),
                       vocoder=VocoderConfig(dim=512, num_blocks=8, n_fft=1024))


def secousti_027k() -> CodecConfig:
    """0.27 kbps preset: tokens downsampled 4× to 21.53 Hz → 273 bps."""
    cfg = secousti_1k()
    return dataclasses.replace(cfg, name="secousti_027k", downsample=4,
                               semantic=TransformerConfig(dim=512, num_layers=4, num_heads=8, window=64, max_step=8),
                               connector=TransformerConfig(dim=512, num_layers=4, num_heads=8, window=64, max_step=8))


def duet_cpu16k() -> CodecConfig:
    """Small CPU preset for the bundled default: 16 kHz, hop 256 → 62.5 Hz × 12.68 bits = 0.79 kbps;
    5 tokens per 80 ms dialogue step."""
    return CodecConfig()


PRESETS = {"secousti_1k": secousti_1k, "secousti_027k": secousti_027k, "duet_cpu16k": duet_cpu16k}


def preset(name: str) -> CodecConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown codec preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
