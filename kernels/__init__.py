"""Duet's hot paths: causal attention (training and ring-cache decode) and FSQ quantisation.

Each op has a PyTorch reference and a Triton kernel; `kernels.dispatch` chooses between them.
"""
from __future__ import annotations

from .dispatch import use_backend, use_triton
from .reference import (causal_attention_reference, fsq_decode_reference, fsq_reference,
                        ring_attention_reference)


def causal_attention(q, k, v, *, q_offset: int = 0, window: int | None = None, scale: float | None = None):
    """Causal attention, q [B, H, Tq, D], k/v [B, Hkv, Tk, D] (GQA when Hkv < H).

    Query i is at absolute position q_offset + i and key j at j; a key is visible when
    j <= q_offset + i and, with a window, q_offset + i - j < window.
    """
    if use_triton(q, k, v):
        from .triton_attention import causal_attention_triton
        return causal_attention_triton(q, k, v, q_offset=q_offset, window=window, scale=scale)
    return causal_attention_reference(q, k, v, q_offset=q_offset, window=window, scale=scale)


def ring_attention(q, k_cache, v_cache, q_pos, cache_pos, *, window: int | None = None, scale: float | None = None):
    """Streaming decode: queries q [B, H, Tq, D] at positions q_pos [B, Tq] against a ring cache
    k/v [B, Hkv, S, D] whose slots hold positions cache_pos [B, S] (-1 = empty). No copy of the cache."""
    if use_triton(q, k_cache, v_cache):
        from .triton_ring_attention import ring_attention_triton
        return ring_attention_triton(q, k_cache, v_cache, q_pos, cache_pos, window=window, scale=scale)
    return ring_attention_reference(q, k_cache, v_cache, q_pos, cache_pos, window=window, scale=scale)


def fsq(z, levels):
    """FSQ: z [..., len(levels)] → (codes in [-1, 1], straight-through gradient; indices [...] int64)."""
    if use_triton(z):
        from .triton_fsq import fsq_triton
        return fsq_triton(z, levels)
    return fsq_reference(z, levels)


def fsq_decode(indices, levels):
    """FSQ indices [...] → codes [..., len(levels)] in [-1, 1]."""
    if use_triton(indices):
        from .triton_fsq import fsq_decode_triton
        return fsq_decode_triton(indices, levels)
    return fsq_decode_reference(indices, levels)


__all__ = ["causal_attention", "ring_attention", "fsq", "fsq_decode", "use_backend"]
