"""A stand-in codec with the Duet codec's interface, for testing the scorer without weights.

`MuLawStubCodec` quantises every sample with μ-law to `2**bits` levels (tokens = samples, so
`frame_rate` = sample rate) and returns, as its "voice vector", the utterance's mean log
spectrum in 32 bands. It is not a speech codec; it lets the scorer run end to end in the tests
and makes its results predictable (high PESQ, token
probe able to see the speaker through the amplitude histogram).
"""
from __future__ import annotations

import dataclasses
import math

import torch

__all__ = ["MuLawStubCodec", "StubTokens", "StubConfig"]


@dataclasses.dataclass
class StubConfig:
    sample_rate: int
    codebook_size: int
    bitrate: float
    fsq_levels: list[int] | None = None
    voice_dim: int = 32


@dataclasses.dataclass
class StubTokens:
    codes: torch.Tensor  # [B, T]
    voice: torch.Tensor  # [B, D]
    frame_rate: float
    codec_id: str = "stub"
    num_samples: int | None = None


class MuLawStubCodec:
    name = "stub-mulaw"
    description = "mu-law stub (testing only)"
    codec_id = "stub"

    def __init__(self, sample_rate: int = 16000, bits: int = 8) -> None:
        n = 2 ** bits
        self.config = StubConfig(sample_rate, n, float(sample_rate * bits))
        self.mu = n - 1

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return float(self.config.sample_rate)

    def _prepare(self, wav, sample_rate: int) -> torch.Tensor:
        x = torch.as_tensor(wav, dtype=torch.float32)
        if x.dim() == 1:
            x = x[None]
        if x.dim() == 3:
            x = x.mean(1)
        if sample_rate != self.sample_rate:
            import torchaudio.functional as AF

            x = AF.resample(x, sample_rate, self.sample_rate)
        return x.clamp(-1, 1)

    def voice(self, wav, sample_rate: int) -> torch.Tensor:
        x = self._prepare(wav, sample_rate)
        spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True).abs() ** 2
        bands = torch.nn.functional.adaptive_avg_pool1d(spec.mean(-1)[:, None, :], self.config.voice_dim)[:, 0]
        return torch.log(bands + 1e-8)

    def encode(self, wav, sample_rate: int) -> StubTokens:
        x = self._prepare(wav, sample_rate)
        y = torch.sign(x) * torch.log1p(self.mu * x.abs()) / math.log1p(self.mu)
        codes = torch.round((y + 1) / 2 * self.mu).long().clamp(0, self.mu)
        return StubTokens(codes, self.voice(x, self.sample_rate), self.frame_rate, num_samples=x.shape[-1])

    def decode(self, tokens: StubTokens) -> torch.Tensor:
        y = tokens.codes.float() / self.mu * 2 - 1
        x = torch.sign(y) * ((1 + self.mu) ** y.abs() - 1) / self.mu
        return x[:, None, :]
