"""Plain PyTorch references for Duet's hot paths.

These are the ground truth the Triton kernels are tested against and the backend used on CPU.
Attention goes through `torch.nn.functional.scaled_dot_product_attention` with an explicit mask
derived from absolute positions, so the same function serves training (contiguous keys) and
streaming decode (a ring buffer whose slots carry their own positions).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand_kv(k: torch.Tensor, num_q_heads: int) -> torch.Tensor:
    """Repeat grouped key/value heads [B, Hkv, S, D] to [B, Hq, S, D]."""
    hkv = k.shape[1]
    if hkv == num_q_heads:
        return k
    if num_q_heads % hkv:
        raise ValueError(f"query heads ({num_q_heads}) must be a multiple of key/value heads ({hkv})")
    return k.repeat_interleave(num_q_heads // hkv, dim=1)


def position_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """Boolean mask [B, 1, Tq, S]: key visible iff 0 <= k_pos <= q_pos (and q_pos - k_pos < window).

    q_pos: [B, Tq] or [Tq]; k_pos: [B, S] or [S] (negative = empty slot).
    """
    if q_pos.dim() == 1:
        q_pos = q_pos[None]
    if k_pos.dim() == 1:
        k_pos = k_pos[None]
    qp = q_pos[:, None, :, None]
    kp = k_pos[:, None, None, :]
    mask = (kp >= 0) & (kp <= qp)
    if window is not None:
        mask &= (qp - kp) < window
    return mask


def causal_attention_reference(q, k, v, *, q_offset: int = 0, window: int | None = None,
                               scale: float | None = None) -> torch.Tensor:
    """Causal (optionally sliding-window) attention; q [B, H, Tq, D], k/v [B, Hkv, Tk, D].

    Query i sits at absolute position q_offset + i, key j at position j.
    """
    tq, tk = q.shape[2], k.shape[2]
    q_pos = torch.arange(tq, device=q.device) + q_offset
    k_pos = torch.arange(tk, device=q.device)
    mask = position_mask(q_pos, k_pos, window)
    return _masked_sdpa(q, k, v, mask, scale)


def ring_attention_reference(q, k_cache, v_cache, q_pos, cache_pos, *, window: int | None = None,
                             scale: float | None = None) -> torch.Tensor:
    """Attention of a few queries against a ring KV cache.

    q [B, H, Tq, D]; k_cache/v_cache [B, Hkv, S, D]; q_pos [B, Tq] absolute positions of the
    queries; cache_pos [B, S] absolute position stored in each slot (-1 = empty).
    """
    mask = position_mask(q_pos, cache_pos, window)
    return _masked_sdpa(q, k_cache, v_cache, mask, scale)


def _masked_sdpa(q, k, v, mask, scale):
    k = _expand_kv(k, q.shape[1])
    v = _expand_kv(v, q.shape[1])
    # A query with no visible key (only possible for padded/empty rows) would give NaN; guard it.
    any_visible = mask.any(dim=-1, keepdim=True)
    safe_mask = mask | ~any_visible
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask, scale=scale)
    return out.masked_fill(~any_visible, 0.0)


def fsq_bound(z: torch.Tensor, levels: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Squash z into the FSQ grid's range, as `vector_quantize_pytorch.FSQ.bound` does."""
    half_l = (levels - 1) * (1 + eps) / 2
    offset = torch.where(levels % 2 == 0, 0.5, 0.0)
    shift = (offset / half_l).atanh()
    return (z + shift).tanh() * half_l - offset


def fsq_reference(z: torch.Tensor, levels: list[int] | tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite scalar quantisation of z [..., len(levels)] → (codes in [-1, 1] with a
    straight-through gradient, integer indices [...])."""
    lv = torch.tensor(list(levels), device=z.device, dtype=torch.float32)
    if z.shape[-1] != len(levels):
        raise ValueError(f"fsq: last dim of z is {z.shape[-1]}, expected {len(levels)} (one per level)")
    zf = z.float()
    bounded = fsq_bound(zf, lv)
    rounded = bounded + (bounded.round() - bounded).detach()
    half_width = (lv // 2)
    codes = rounded / half_width
    indices = _codes_to_indices(rounded.detach(), lv)
    return codes.to(z.dtype), indices


def _basis(lv: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), dim=0).long()


def _codes_to_indices(rounded: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    half_width = lv // 2
    digits = (rounded + half_width).round().long()
    return (digits * _basis(lv)).sum(dim=-1)


def fsq_decode_reference(indices: torch.Tensor, levels: list[int] | tuple[int, ...]) -> torch.Tensor:
    """Integer indices [...] → codes [..., len(levels)] in [-1, 1]."""
    lv = torch.tensor(list(levels), device=indices.device, dtype=torch.float32)
    codebook_size = int(torch.prod(lv).item())
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= codebook_size):
        raise ValueError(f"fsq_decode: indices must lie in [0, {codebook_size}); found "
                         f"[{int(indices.min())}, {int(indices.max())}]")
    digits = (indices[..., None] // _basis(lv)) % lv.long()
    half_width = lv // 2
    return (digits.float() - half_width) / half_width
