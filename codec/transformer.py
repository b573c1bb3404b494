"""Causal transformer with RoPE, a sliding window and a fixed-size ring KV cache.

Offline (training) it attends over the whole sequence through `kernels.causal_attention`; streaming,
each layer writes the new keys/values into a ring buffer of `window + max_step - 1` slots that
stores every slot's absolute position (-1 = empty), and attends through `kernels.ring_attention`
with the mask derived from those positions. A chunk longer than `max_step` frames is processed in
sub-steps, so any chunk size works and a step never reallocates the cache.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

import kernels

from .streaming import StreamingError, StreamingModule, StreamingState, check_batch


@dataclasses.dataclass
class TransformerConfig:
    dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None = num_heads (no grouping)
    mlp_ratio: float = 3.0
    window: int | None = 128  # frames of context; required for streaming
    max_step: int = 16  # frames per streaming sub-step (ring size = window + max_step - 1)
    rope_theta: float = 10000.0
    dropout: float = 0.0


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [B, T] (int) → cos, sin [B, 1, T, head_dim/2]; angles in float64 so hour-long
    streams keep their precision."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float64) / head_dim)
    angles = positions.to(torch.float64)[..., None] * inv_freq
    return angles.cos().float()[:, None], angles.sin().float()[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of x [B, H, T, D]."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


@dataclasses.dataclass
class KVCacheState(StreamingState):
    keys: torch.Tensor  # [B, Hkv, S, D]
    values: torch.Tensor  # [B, Hkv, S, D]
    slot_positions: torch.Tensor  # [B, S] absolute position per slot, -1 = empty
    next_position: torch.Tensor  # [B] position of the next frame

    def reset_value(self, name):
        return -1 if name == "slot_positions" else 0


class CausalSelfAttention(StreamingModule):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.num_heads:
            raise ValueError(f"dim {cfg.dim} not divisible by num_heads {cfg.num_heads}")
        self.cfg = cfg
        self.num_heads = cfg.num_heads
        self.num_kv_heads = cfg.num_kv_heads or cfg.num_heads
        self.head_dim = cfg.dim // cfg.num_heads
        self.qkv = nn.Linear(cfg.dim, (self.num_heads + 2 * self.num_kv_heads) * self.head_dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    @property
    def cache_size(self) -> int:
        return self.cfg.window + self.cfg.max_step - 1

    def init_state(self, batch_size, device):
        if self.cfg.window is None:
            raise StreamingError("streaming needs a finite attention window (TransformerConfig.window)")
        shape = (batch_size, self.num_kv_heads, self.cache_size, self.head_dim)
        dtype = self.qkv.weight.dtype
        return KVCacheState(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype),
                            torch.full((batch_size, self.cache_size), -1, device=device, dtype=torch.long),
                            torch.zeros(batch_size, device=device, dtype=torch.long))

    def _project(self, x, positions):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split([self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim,
                                     self.num_kv_heads * self.head_dim], dim=-1)
        q = q.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope_cos_sin(positions, self.head_dim, self.cfg.rope_theta)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        if not self.is_streaming:
            positions = torch.arange(t, device=x.device)[None].expand(b, t)
            q, k, v = self._project(x, positions)
            y = kernels.causal_attention(q, k, v, window=self.cfg.window)
        else:
            y = self._step(x)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))

    def _step(self, x):
        state: KVCacheState = self.state
        check_batch(self, x, state.keys.shape[0])
        b, t, _ = x.shape
        if t > self.cfg.max_step:
            raise StreamingError(f"attention step of {t} frames exceeds max_step={self.cfg.max_step}")
        positions = state.next_position[:, None] + torch.arange(t, device=x.device)
        q, k, v = self._project(x, positions)
        slots = positions % self.cache_size
        idx = slots[:, None, :, None].expand(b, self.num_kv_heads, t, self.head_dim)
        state.keys.scatter_(2, idx, k)
        state.values.scatter_(2, idx, v)
        state.slot_positions.scatter_(1, slots, positions)
        state.next_position += t
        return kernels.ring_attention(q, state.keys, state.values, positions, state.slot_positions,
                                      window=self.cfg.window)


class TransformerLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        x = x + self.dropout(self.attn(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class CausalTransformer(StreamingModule):
    """x [B, T, dim] → [B, T, dim], causal; streams any chunk length in sub-steps of max_step."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.dim)

    def _run(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_streaming or x.shape[1] <= self.cfg.max_step:
            return self._run(x)
        return torch.cat([self._run(part) for part in x.split(self.cfg.max_step, dim=1)], dim=1)
