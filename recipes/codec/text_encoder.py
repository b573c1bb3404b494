"""Frame-level text (phone) encoder for the contrastive alignment of stage 2.

Phone ids arrive already duration-upsampled to the token grid (from the TTS engine's exact timings
or from forced alignment); a non-causal conv stack adds local context and within-phone position so
neighbouring frames of one phone are not identical targets. Training-only: inference never sees text.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrameTextEncoder(nn.Module):
    def __init__(self, num_units: int, dim: int = 128, out_dim: int = 64, layers: int = 3, kernel: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_units + 1, dim)  # +1: index 0 = silence / unknown
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel, padding=kernel // 2) for _ in range(layers))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B, T] (>= 0) → [B, T, out_dim]."""
        x = self.embed(labels).transpose(1, 2)
        for conv in self.convs:
            x = x + F.gelu(conv(x))
        return self.proj(x.transpose(1, 2))
