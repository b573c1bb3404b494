"""Causal, chunk-streamable iSTFT vocoder (Vocos-style head on causal ConvNeXt blocks).

mel [B, n_mels, T] → per frame a complex spectrum (log-magnitude and phase) → irfft → window →
overlap-add at hop. Frame t's synthesis window ends where its analysis window ends, (t+1)·hop, so
the overlap-add stream is complete up to T·hop − (n_fft − hop) after T frames: that overlap is the
vocoder's only algorithmic latency. `forward` returns the overlap-add stream (its first n_fft − hop
samples lie before time 0); `codec.api` aligns it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MelConfig, VocoderConfig
from .conv import OverlapAddState, StreamingConv1d, carry_tail
from .streaming import StreamingModule


class CausalConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.dwconv = StreamingConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 3 * dim), nn.GELU(), nn.Linear(3 * dim, dim))
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x):  # [B, C, T]
        y = self.mlp(self.norm(self.dwconv(x).transpose(1, 2))).transpose(1, 2)
        return x + self.gamma[:, None] * y


class OverlapAdd(StreamingModule):
    """frames [B, n_fft, T] → overlap-add stream [B, T·hop] (tail carried when streaming)."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        envelope = (torch.hann_window(n_fft) ** 2).view(-1, hop).sum(0) if n_fft % hop == 0 else None
        self.norm = float(envelope.mean()) if envelope is not None else float((torch.hann_window(n_fft) ** 2).sum() / hop)

    def init_state(self, batch_size, device):
        return OverlapAddState(torch.zeros(batch_size, self.n_fft - self.hop, device=device))

    def full(self, frames: torch.Tensor) -> torch.Tensor:
        """All (T-1)·hop + n_fft samples, the incomplete tail included (offline only)."""
        frames = frames * self.window[:, None] / self.norm
        t = frames.shape[-1]
        return F.fold(frames, output_size=(1, (t - 1) * self.hop + self.n_fft), kernel_size=(1, self.n_fft),
                      stride=(1, self.hop)).flatten(1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[-1]
        if t == 0:
            return frames.new_zeros(frames.shape[0], 0)
        return carry_tail(self, self.full(frames), t * self.hop)

    def flush(self) -> torch.Tensor:
        """The carried, incomplete tail [B, n_fft − hop] at the end of a stream."""
        return self.state.tail.clone()


class Vocoder(nn.Module):
    def __init__(self, cfg: VocoderConfig, mel: MelConfig) -> None:
        super().__init__()
        self.cfg, self.hop = cfg, mel.hop_length
        self.inp = StreamingConv1d(mel.n_mels, cfg.dim, cfg.kernel_size)
        self.blocks = nn.ModuleList(CausalConvNeXtBlock(cfg.dim, cfg.kernel_size) for _ in range(cfg.num_blocks))
        self.norm = nn.LayerNorm(cfg.dim)
        self.bins = cfg.n_fft // 2 + 1
        self.head = nn.Linear(cfg.dim, 2 * self.bins)
        self.ola = OverlapAdd(cfg.n_fft, mel.hop_length)

    @property
    def lag(self) -> int:
        return self.cfg.n_fft - self.hop

    def frames(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, n_mels, T] → time-domain frames [B, n_fft, T] (before window and overlap-add)."""
        x = self.inp(mel)
        for block in self.blocks:
            x = block(x)
        logmag, phase = self.head(self.norm(x.transpose(1, 2))).float().chunk(2, dim=-1)
        mag = logmag.clamp(max=6.0).exp()
        spec = torch.polar(mag, phase)
        return torch.fft.irfft(spec, n=self.cfg.n_fft, dim=-1).transpose(1, 2)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Overlap-add stream [B, T·hop] (delayed by `lag` samples)."""
        return self.ola(self.frames(mel))

    def synthesize(self, mel: torch.Tensor) -> torch.Tensor:
        """Offline: mel [B, n_mels, T] → waveform [B, T·hop] aligned with the input time axis
        (the last `lag` samples carry only part of their overlap-add)."""
        return self.ola.full(self.frames(mel))[:, self.lag:]
