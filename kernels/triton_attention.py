"""Triton attention for Duet: a FlashAttention-2 style causal / sliding-window forward and backward
for training (this file), and a split-KV decode kernel that reads a ring KV cache in place
(`kernels.triton_ring_attention`); both build on `kernels.triton_attention_tiles` (tile primitives,
input checks, launch configs).

Why it exists: the transformers in the codec and the dialogue model are causal with optional
sliding windows and grouped KV heads; SDPA with an explicit mask materialises nothing clever for
them. These kernels tile queries and keys, keep an online softmax in registers, skip key tiles that
the causal/window mask hides, and read grouped KV heads once per group. Masks are derived from
absolute positions exactly as in `kernels.reference`:

query i sits at q_offset + i, key j at j; visible iff j <= q_offset + i and q_offset + i - j < window.
A query with no visible key outputs 0.

Numerics: fp32 accumulation, logsumexp kept in base 2; fp32 inputs use IEEE dots unless
`torch.backends.cuda.matmul.allow_tf32` is set (then TF32, like torch matmul).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .triton_attention_tiles import (LOG2E, _check_inputs, _dot, _dot_flags, _interpreted,  # noqa: F401 (tests)
                                     _load_tile, _softmax_step, attention_config)


# --------------------------------------------------------------------------------------------
# tile ranges: the causal / window mask at tile granularity
# --------------------------------------------------------------------------------------------

@triton.jit
def _query_tile_key_range(start_m, Tq, Tk, q_offset, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key tiles for query tile start_m, in three segments [lo, a) masked, [a, b) fully visible,
    [b, hi) masked; lo, a and b are multiples of BLOCK_N (hi need not be)."""
    m_first = start_m * BLOCK_M
    m_last = tl.minimum(m_first + BLOCK_M, Tq) - 1
    p_first = q_offset + m_first
    p_last = q_offset + m_last
    lo = tl.maximum(p_first - window + 1, 0) // BLOCK_N * BLOCK_N
    hi = tl.minimum(p_last + 1, Tk)
    full_lo = (tl.maximum(p_last - window + 1, 0) + BLOCK_N - 1) // BLOCK_N * BLOCK_N
    full_hi = tl.minimum(p_first + 1, Tk) // BLOCK_N * BLOCK_N
    a = tl.minimum(full_lo, hi)
    b = tl.maximum(full_hi, a)
    return lo, a, b, hi


@triton.jit
def _key_tile_query_range(start_n, Tq, Tk, q_offset, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query tiles that see key tile start_n: [lo, a) masked, [a, b) fully visible, [b, hi) masked."""
    n_first = start_n * BLOCK_N
    n_last = tl.minimum(n_first + BLOCK_N, Tk) - 1
    lo = tl.maximum(n_first - q_offset, 0) // BLOCK_M * BLOCK_M
    hi = tl.minimum(tl.maximum(n_last + window - q_offset, 0), Tq)
    full_lo = (tl.maximum(n_last - q_offset, 0) + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    full_hi = tl.minimum(tl.maximum(n_first + window - q_offset, 0), Tq) // BLOCK_M * BLOCK_M
    a = tl.minimum(full_lo, hi)
    b = tl.maximum(full_hi, a)
    return lo, a, b, hi


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


@triton.jit
def _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
               pos, offs_d, lo, hi, Tk, window, qk_scale,
               HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_D: tl.constexpr,
               MASKED: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        kn = start_n + offs_n
        k = _load_tile(k_base + kn[:, None] * stride_kn + offs_d[None, :] * stride_kd, kn, Tk, offs_d,
                       HEAD_DIM, MASKED, EVEN_D)
        s = _dot(q, tl.trans(k), tl.zeros([q.shape[0], BLOCK_N], dtype=tl.float32), UPCAST, PREC) * qk_scale
        if MASKED:
            vis = (kn[None, :] <= pos[:, None]) & (pos[:, None] - kn[None, :] < window) & (kn[None, :] < Tk)
            s = tl.where(vis, s, float("-inf"))
        v = _load_tile(v_base + kn[:, None] * stride_vn + offs_d[None, :] * stride_vd, kn, Tk, offs_d,
                       HEAD_DIM, MASKED, EVEN_D)
        acc, l_i, m_i = _softmax_step(acc, l_i, m_i, s, v, UPCAST, PREC)
    return acc, l_i, m_i


@triton.jit(do_not_specialize=["q_offset", "window"])  # one binary for every chunk offset
def _attn_fwd(Q, K, V, O, LSE,
              stride_qb, stride_qh, stride_qm, stride_qd,
              stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd,
              stride_ob, stride_oh, stride_om, stride_od,
              H, Tq, Tk, q_offset, window, qk_scale,
              GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
    """Grid (cdiv(Tq, BLOCK_M), B * H). Writes O [B, H, Tq, D] and LSE [B, H, Tq] (base 2, +inf if empty).
    Query tiles run last-first: the late tiles see the most keys, so they start in the first wave."""
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    hk = h // GROUP
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = _load_tile(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                   offs_m, Tq, offs_d, HEAD_DIM, True, EVEN_D)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    pos = q_offset + offs_m

    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)  # finite: a fully masked tile gives exp2(-inf) = 0
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, a, bb, hi = _query_tile_key_range(start_m, Tq, Tk, q_offset, window, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                               pos, offs_d, lo, a, Tk, window, qk_scale, HEAD_DIM, BLOCK_N, EVEN_D, True,
                               UPCAST, PREC)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                               pos, offs_d, a, bb, Tk, window, qk_scale, HEAD_DIM, BLOCK_N, EVEN_D, False,
                               UPCAST, PREC)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                               pos, offs_d, bb, hi, Tk, window, qk_scale, HEAD_DIM, BLOCK_N, EVEN_D, True,
                               UPCAST, PREC)

    has_key = l_i > 0.0
    out = acc / tl.where(has_key, l_i, 1.0)[:, None]
    lse = tl.where(has_key, m_i + tl.log2(tl.where(has_key, l_i, 1.0)), float("inf"))
    row_ok = offs_m < Tq
    tl.store(LSE + bh.to(tl.int64) * Tq + offs_m, lse, mask=row_ok)
    o_ptrs = O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


# --------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------

@triton.jit
def _bwd_delta(O, DO, DELTA, stride_ob, stride_oh, stride_om, stride_od,
               stride_dob, stride_doh, stride_dom, stride_dod, H, Tq,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr):
    """DELTA [B, H, Tq] = rowsum(O * dO) in fp32. Grid (cdiv(Tq, BLOCK_M), B * H)."""
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < Tq) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
                mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                 mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + bh.to(tl.int64) * Tq + offs_m, tl.sum(o * do, 1), mask=offs_m < Tq)


@triton.jit
def _dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
              pos, offs_d, lo, hi, Tk, window, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_D: tl.constexpr,
              MASKED: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        kn = start_n + offs_n
        k = _load_tile(k_base + kn[:, None] * stride_kn + offs_d[None, :] * stride_kd, kn, Tk, offs_d,
                       HEAD_DIM, MASKED, EVEN_D)
        v = _load_tile(v_base + kn[:, None] * stride_vn + offs_d[None, :] * stride_vd, kn, Tk, offs_d,
                       HEAD_DIM, MASKED, EVEN_D)
        s = _dot(q, tl.trans(k), tl.zeros([q.shape[0], BLOCK_N], dtype=tl.float32), UPCAST, PREC) * qk_scale
        if MASKED:
            vis = (kn[None, :] <= pos[:, None]) & (pos[:, None] - kn[None, :] < window) & (kn[None, :] < Tk)
            s = tl.where(vis, s, float("-inf"))
        p = tl.exp2(s - lse[:, None])
        dp = _dot(do, tl.trans(v), tl.zeros([q.shape[0], BLOCK_N], dtype=tl.float32), UPCAST, PREC)
        ds = p * (dp - delta[:, None])
        dq = _dot(ds.to(k.dtype), k, dq, UPCAST, PREC)
    return dq


@triton.jit(do_not_specialize=["q_offset", "window"])  # one binary for every chunk offset
def _attn_bwd_dq(Q, K, V, DO, LSE, DELTA, DQ,
                 stride_qb, stride_qh, stride_qm, stride_qd,
                 stride_kb, stride_kh, stride_kn, stride_kd,
                 stride_vb, stride_vh, stride_vn, stride_vd,
                 stride_dob, stride_doh, stride_dom, stride_dod,
                 stride_dqb, stride_dqh, stride_dqm, stride_dqd,
                 H, Tq, Tk, q_offset, window, qk_scale, sm_scale,
                 GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
    """dQ [B, H, Tq, D]. Grid (cdiv(Tq, BLOCK_M), B * H); query tiles last-first, as in the forward."""
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    hk = h // GROUP
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = _load_tile(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                   offs_m, Tq, offs_d, HEAD_DIM, True, EVEN_D)
    do = _load_tile(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dod,
                    offs_m, Tq, offs_d, HEAD_DIM, True, EVEN_D)
    row_ok = offs_m < Tq
    lse = tl.load(LSE + bh.to(tl.int64) * Tq + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + bh.to(tl.int64) * Tq + offs_m, mask=row_ok, other=0.0)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    pos = q_offset + offs_m

    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, a, bb, hi = _query_tile_key_range(start_m, Tq, Tk, q_offset, window, BLOCK_M, BLOCK_N)
    dq = _dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                   pos, offs_d, lo, a, Tk, window, qk_scale, HEAD_DIM, BLOCK_N, EVEN_D, True, UPCAST, PREC)
    dq = _dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                   pos, offs_d, a, bb, Tk, window, qk_scale, HEAD_DIM, BLOCK_N, EVEN_D, False, UPCAST, PREC)
    dq = _dq_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
                   pos, offs_d, bb, hi, Tk, window, qk_scale, HEAD_DIM, BLOCK_N, EVEN_D, True, UPCAST, PREC)
    dq_ptrs = DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqm + offs_d[None, :] * stride_dqd
    tl.store(dq_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


@triton.jit
def _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base,
                stride_qm, stride_qd, stride_dom, stride_dod,
                kpos, offs_d, lo, hi, Tq, q_offset, window, qk_scale,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, EVEN_D: tl.constexpr,
                MASKED: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        qm = start_m + offs_m
        q = _load_tile(q_base + qm[:, None] * stride_qm + offs_d[None, :] * stride_qd, qm, Tq, offs_d,
                       HEAD_DIM, MASKED, EVEN_D)
        do = _load_tile(do_base + qm[:, None] * stride_dom + offs_d[None, :] * stride_dod, qm, Tq, offs_d,
                        HEAD_DIM, MASKED, EVEN_D)
        if MASKED:
            lse = tl.load(lse_base + qm, mask=qm < Tq, other=float("inf"))
            delta = tl.load(delta_base + qm, mask=qm < Tq, other=0.0)
        else:
            lse = tl.load(lse_base + qm)
            delta = tl.load(delta_base + qm)
        s_t = _dot(k, tl.trans(q), tl.zeros([k.shape[0], BLOCK_M], dtype=tl.float32), UPCAST, PREC) * qk_scale
        if MASKED:
            qpos = q_offset + qm
            vis = (kpos[:, None] <= qpos[None, :]) & (qpos[None, :] - kpos[:, None] < window) & (qm[None, :] < Tq)
            s_t = tl.where(vis, s_t, float("-inf"))
        p_t = tl.exp2(s_t - lse[None, :])
        dv = _dot(p_t.to(do.dtype), do, dv, UPCAST, PREC)
        dp_t = _dot(v, tl.trans(do), tl.zeros([k.shape[0], BLOCK_M], dtype=tl.float32), UPCAST, PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = _dot(ds_t.to(q.dtype), q, dk, UPCAST, PREC)
    return dk, dv


@triton.jit(do_not_specialize=["q_offset", "window"])  # one binary for every chunk offset
def _attn_bwd_dkdv(Q, K, V, DO, LSE, DELTA, DK, DV,
                   stride_qb, stride_qh, stride_qm, stride_qd,
                   stride_kb, stride_kh, stride_kn, stride_kd,
                   stride_vb, stride_vh, stride_vn, stride_vd,
                   stride_dob, stride_doh, stride_dom, stride_dod,
                   stride_dkb, stride_dkh, stride_dkn, stride_dkd,
                   stride_dvb, stride_dvh, stride_dvn, stride_dvd,
                   H, Hkv, Tq, Tk, q_offset, window, qk_scale, sm_scale,
                   GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr):
    """dK, dV [B, Hkv, Tk, D], summed over the GROUP query heads that share a KV head (no atomics).
    Grid (cdiv(Tk, BLOCK_N), B * Hkv)."""
    start_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // Hkv).to(tl.int64)
    hk = (bh % Hkv).to(tl.int64)
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = _load_tile(K + b * stride_kb + hk * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                   offs_n, Tk, offs_d, HEAD_DIM, True, EVEN_D)
    v = _load_tile(V + b * stride_vb + hk * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                   offs_n, Tk, offs_d, HEAD_DIM, True, EVEN_D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    lo, a, bb, hi = _key_tile_query_range(start_n, Tq, Tk, q_offset, window, BLOCK_M, BLOCK_N)
    for g in range(GROUP):
        h = hk * GROUP + g
        q_base = Q + b * stride_qb + h * stride_qh
        do_base = DO + b * stride_dob + h * stride_doh
        lse_base = LSE + (b * H + h) * Tq
        delta_base = DELTA + (b * H + h) * Tq
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
                             stride_dom, stride_dod, offs_n, offs_d, lo, a, Tq, q_offset, window, qk_scale,
                             HEAD_DIM, BLOCK_M, EVEN_D, True, UPCAST, PREC)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
                             stride_dom, stride_dod, offs_n, offs_d, a, bb, Tq, q_offset, window, qk_scale,
                             HEAD_DIM, BLOCK_M, EVEN_D, False, UPCAST, PREC)
        dk, dv = _dkdv_tiles(dk, dv, k, v, q_base, do_base, lse_base, delta_base, stride_qm, stride_qd,
                             stride_dom, stride_dod, offs_n, offs_d, bb, hi, Tq, q_offset, window, qk_scale,
                             HEAD_DIM, BLOCK_M, EVEN_D, True, UPCAST, PREC)
    mask = (offs_n[:, None] < Tk) & (offs_d[None, :] < HEAD_DIM)
    dk_ptrs = DK + b * stride_dkb + hk * stride_dkh + offs_n[:, None] * stride_dkn + offs_d[None, :] * stride_dkd
    dv_ptrs = DV + b * stride_dvb + hk * stride_dvh + offs_n[:, None] * stride_dvn + offs_d[None, :] * stride_dvd
    tl.store(dk_ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------

def _window_arg(window: int | None, limit: int) -> int:
    if window is None:
        return limit
    if window < 1:
        raise ValueError(f"kernels/triton_attention.py: window must be >= 1 or None; found {window}")
    return min(int(window), limit)


def _attention_forward(q, k, v, q_offset, window, scale):
    bsz, heads, hkv, dim, block_d = _check_inputs("causal_attention", q, k, v)
    tq, tk = q.shape[2], k.shape[2]
    cfg = attention_config(block_d, q.dtype)
    upcast, prec = _dot_flags(q.dtype)
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((bsz, heads, tq), dtype=torch.float32, device=q.device)
    if o.numel() == 0:
        return o, lse
    grid = (triton.cdiv(tq, cfg.fwd_m), bsz * heads)
    _attn_fwd[grid](q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
                    heads, tq, tk, q_offset, window, scale * LOG2E,
                    GROUP=heads // hkv, HEAD_DIM=dim, BLOCK_D=block_d, BLOCK_M=cfg.fwd_m, BLOCK_N=cfg.fwd_n,
                    UPCAST=upcast, PREC=prec, num_warps=cfg.fwd_warps, num_stages=cfg.fwd_stages)
    return o, lse


def _attention_backward(do, q, k, v, o, lse, q_offset, window, scale):
    bsz, heads, hkv, dim, block_d = _check_inputs("causal_attention", q, k, v)
    tq, tk = q.shape[2], k.shape[2]
    cfg = attention_config(block_d, q.dtype)
    upcast, prec = _dot_flags(q.dtype)
    if do.dtype != q.dtype:
        do = do.to(q.dtype)
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    delta = torch.empty_like(lse)
    _bwd_delta[(triton.cdiv(tq, cfg.dq_m), bsz * heads)](
        o, do, delta, *o.stride(), *do.stride(), heads, tq,
        HEAD_DIM=dim, BLOCK_D=block_d, BLOCK_M=cfg.dq_m, num_warps=4)
    common = dict(GROUP=heads // hkv, HEAD_DIM=dim, BLOCK_D=block_d, UPCAST=upcast, PREC=prec,
                  num_warps=cfg.bwd_warps, num_stages=cfg.bwd_stages)
    _attn_bwd_dkdv[(triton.cdiv(tk, cfg.dkdv_n), bsz * hkv)](
        q, k, v, do, lse, delta, dk, dv, *q.stride(), *k.stride(), *v.stride(), *do.stride(),
        *dk.stride(), *dv.stride(), heads, hkv, tq, tk, q_offset, window, scale * LOG2E, scale,
        BLOCK_M=cfg.dkdv_m, BLOCK_N=cfg.dkdv_n, **common)
    _attn_bwd_dq[(triton.cdiv(tq, cfg.dq_m), bsz * heads)](
        q, k, v, do, lse, delta, dq, *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
        heads, tq, tk, q_offset, window, scale * LOG2E, scale,
        BLOCK_M=cfg.dq_m, BLOCK_N=cfg.dq_n, **common)
    return dq, dk, dv


class _CausalAttention(torch.autograd.Function):
    """Saves q, k, v, o and the base-2 logsumexp [B, H, Tq]; backward recomputes the probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, q_offset, window, scale):
        o, lse = _attention_forward(q, k, v, q_offset, window, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.args = (q_offset, window, scale)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _attention_backward(do, q, k, v, o, lse, *ctx.args)
        return dq, dk, dv, None, None, None


def causal_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, q_offset: int = 0,
                            window: int | None = None, scale: float | None = None) -> torch.Tensor:
    """Causal (optionally sliding-window) attention with autograd.

    q [B, H, Tq, D]; k, v [B, Hkv, Tk, D] with H % Hkv == 0; returns [B, H, Tq, D] in q's dtype.
    Query i is at position q_offset + i, key j at j; visible iff j <= q_offset + i and
    q_offset + i - j < window. Rows that see no key return 0.
    """
    if q_offset < 0:
        raise ValueError(f"kernels/triton_attention.py causal_attention: q_offset must be >= 0; found {q_offset}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    limit = max(q.shape[2] + q_offset, k.shape[2]) + 1
    return _CausalAttention.apply(q, k, v, int(q_offset), _window_arg(window, limit), scale)
