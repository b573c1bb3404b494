"""Causal log-mel front end (torchaudio) that streams.

Frame t covers samples [(t+1)·hop − n_fft, (t+1)·hop): it ends where its hop ends, so no frame
looks ahead and one frame is emitted per `hop` new samples. The left context is zeros offline and
the carried history when streaming — the same rule as every causal conv in `codec.conv`.
"""
from __future__ import annotations

import torch
import torchaudio

from .config import MelConfig
from .conv import ConvState, with_history
from .streaming import StreamingError, StreamingModule


class MelFrontend(StreamingModule):
    """wav [B, N] (N a multiple of hop) → log-mel [B, n_mels, N / hop]."""

    def __init__(self, cfg: MelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
            f_min=cfg.f_min, f_max=cfg.f_max, center=False, power=1.0, norm="slaney", mel_scale="slaney")
        self.context = cfg.n_fft - cfg.hop_length

    def init_state(self, batch_size, device):
        return ConvState(torch.zeros(batch_size, 1, self.context, device=device))

    def forward(self, wav: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """history [B, n_fft − hop]: the real samples before `wav` (training crops); zeros if None."""
        if history is not None:
            return self.mel(torch.cat([history, wav], dim=-1)).clamp_min(1e-5).log()
        if wav.shape[-1] % self.cfg.hop_length:
            raise StreamingError(f"MelFrontend: {wav.shape[-1]} samples is not a multiple of hop {self.cfg.hop_length}")
        if wav.shape[-1] == 0:
            return wav.new_zeros(wav.shape[0], self.cfg.n_mels, 0)
        full = with_history(self, wav[:, None], self.context)[:, 0]
        return self.mel(full).clamp_min(1e-5).log()
