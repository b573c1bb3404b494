"""A causal encoder over the user's codec tokens at the codec's frame rate, before they become a step.

Without it, a step's user input is the sum of K per-position token embeddings: a linear function of
the K tokens, blind to the frames just before the step. Hearing a word from a 62.5 Hz single-codebook
stream needs more than that: phones span step boundaries, and the same phone comes out as different
tokens in different voices. The encoder runs residual causal convolutions (dilation doubling per
layer) over the frames, then concatenates each step's K frames and projects them to the temporal
width. It streams with the codec's causal convolutions: one step's K frames per call, history carried
in `StreamingConv1d` state, so streaming equals offline and `reset(mask)` clears it per conversation.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from codec.conv import StreamingConv1d


@dataclasses.dataclass
class UserEncoderConfig:
    dim: int = 128  # channels at frame rate
    num_layers: int = 3  # residual causal conv blocks; dilation 1, 2, 4, ...
    kernel_size: int = 3

    @property
    def receptive_frames(self) -> int:
        """Frames of context each output frame sees (itself included)."""
        return 1 + sum((self.kernel_size - 1) * 2 ** i for i in range(self.num_layers))


class CausalFrameBlock(nn.Module):
    """x + Linear(GELU(causal dilated Conv1d(LayerNorm(x)))) on [B, T, C]."""

    def __init__(self, dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = StreamingConv1d(dim, dim, kernel_size, dilation=dilation)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.proj(F.gelu(y))


class UserFrameEncoder(nn.Module):
    """User tokens [B, S, K] → step inputs [B, S, out_dim] (the role of `CodeEmbedding` for the user).
    With `shared` (the model's factorised codebook table, width `rank`) the token embedding is that
    table followed by a projection; otherwise the encoder owns a table."""

    def __init__(self, cfg: UserEncoderConfig, num_codes: int, frames_per_step: int, out_dim: int,
                 rank: int | None = None, shared: nn.Embedding | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if shared is not None:
            self.shared = [shared]  # registered once, by its owner
            self.inp = nn.Linear(rank, cfg.dim)
        else:
            self.table = nn.Embedding(num_codes, cfg.dim)
        self.blocks = nn.ModuleList(CausalFrameBlock(cfg.dim, cfg.kernel_size, 2 ** i) for i in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(frames_per_step * cfg.dim, out_dim)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.inp(self.shared[0](tokens)) if hasattr(self, "shared") else self.table(tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, s, k = tokens.shape
        x = self._embed(tokens.reshape(b, s * k))  # [B, S*K, C], frames in time order
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x).reshape(b, s, k * self.cfg.dim))
