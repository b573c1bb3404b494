"""Peer implementations that `benchmarks/kernels.py` times Duet's kernels against.

Why it exists: SDPA calls stay inside `kernels/` (project rule), and the fastest peer for causal
attention on a GPU is SDPA's FlashAttention-2 backend, which must be forced explicitly (with an
explicit mask SDPA silently falls back to the slower memory-efficient or math kernels). Flash SDPA
has no sliding window, so for windowed configs it computes full causal attention: more work than
the kernel it is compared with, which the benchmark says in its table.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sdpa_flash_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention through SDPA's flash backend; q [B, H, T, D], k/v [B, Hkv, T, D] (GQA allowed)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.shape[1] != q.shape[1])


def sdpa_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Decode step through SDPA with an explicit boolean mask [B, 1, Tq, S] (any backend SDPA picks):
    what a ring cache costs without a dedicated kernel."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])
