"""Causal convolutions that stream: the same weights give the same output in one call or in chunks.

Offline, a causal Conv1d pads (effective_kernel - stride) zeros on the left and emits one frame per
`stride` input samples; streaming keeps exactly those samples of history. A causal ConvTranspose1d
emits `stride` samples per input frame and carries the overlap-add tail (kernel - stride samples)
to the next chunk. Inputs are whole multiples of the stride (the codec API buffers partial frames).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .streaming import StreamingError, StreamingModule, StreamingState, check_batch


@dataclasses.dataclass
class ConvState(StreamingState):
    history: torch.Tensor  # [B, C, context] last input samples


@dataclasses.dataclass
class OverlapAddState(StreamingState):
    tail: torch.Tensor  # [B, C, overlap] partial sums not yet emitted


def with_history(module: StreamingModule, x: torch.Tensor, context: int) -> torch.Tensor:
    """x [B, C, T] with `context` past samples prepended: zeros offline, the carried history when
    streaming (and the history is advanced). The building block of every causal framed op."""
    if not module.is_streaming:
        return F.pad(x, (context, 0))
    state: ConvState = module.state
    check_batch(module, x, state.history.shape[0])
    full = torch.cat([state.history, x], dim=-1)
    if context:
        state.history.copy_(full[..., full.shape[-1] - context:])
    return full


class StreamingConv1d(StreamingModule):
    """Causal Conv1d; input [B, C_in, T] with T a multiple of stride → [B, C_out, T / stride]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                              groups=groups, bias=bias)
        self.stride = stride
        effective = (kernel_size - 1) * dilation + 1
        if effective < stride:
            raise ValueError(f"kernel ({effective}) shorter than stride ({stride}) would skip samples")
        self.context = effective - stride

    def init_state(self, batch_size, device):
        return ConvState(torch.zeros(batch_size, self.conv.in_channels, self.context, device=device,
                                     dtype=self.conv.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.stride:
            raise StreamingError(f"StreamingConv1d: length {x.shape[-1]} is not a multiple of stride {self.stride}")
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        return self.conv(with_history(self, x, self.context))


def carry_tail(module: StreamingModule, y: torch.Tensor, n_out: int) -> torch.Tensor:
    """Overlap-add bookkeeping: y [B, C, n_out + overlap] holds this chunk's contributions; when
    streaming, add the carried tail to its head and keep its last `overlap` samples for the next
    chunk. Returns the first n_out samples (final when streaming, the tail lost offline)."""
    if module.is_streaming:
        state: OverlapAddState = module.state
        check_batch(module, y, state.tail.shape[0])
        overlap = state.tail.shape[-1]
        if overlap:
            y[..., :overlap] += state.tail
            state.tail.copy_(y[..., n_out:n_out + overlap])
    return y[..., :n_out]


class StreamingConvTranspose1d(StreamingModule):
    """Causal ConvTranspose1d; input [B, C_in, T] → [B, C_out, T * stride] (overlap tail carried)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool = True):
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel ({kernel_size}) shorter than stride ({stride}) leaves gaps")
        self.convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.stride = stride
        self.overlap = kernel_size - stride

    def init_state(self, batch_size, device):
        return OverlapAddState(torch.zeros(batch_size, self.convtr.out_channels, self.overlap, device=device,
                                           dtype=self.convtr.weight.dtype))

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_out = x.shape[-1] * self.stride
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.convtr.out_channels, 0)
        y = self.convtr(x)  # [B, C, (T-1)*stride + kernel]
        return self._finish(carry_tail(self, y, n_out))
