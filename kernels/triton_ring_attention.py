"""Triton decode attention over a ring KV cache, read in place (forward only): the streaming step of
the codec's and the dialogue model's transformers.

Why it exists: a streaming step attends a few new queries to a ring buffer whose slots hold
positions out of order; gathering the cache into position order costs a copy of it per step. These
kernels read the slots where they are and mask by the position each one holds: slot s holds position
cache_pos[b, s] (-1 = empty) and is visible to a query at qp iff 0 <= kp <= qp and qp - kp < window,
exactly as in `kernels.reference`; a query with no visible key outputs 0. On a GPU with few rows to
decode, the cache is split across programs (split-KV) and the partial softmaxes merged in a second
kernel.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .triton_attention_tiles import LOG2E, _check_inputs, _dot, _dot_flags, _load_tile, _softmax_step, attention_config


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------

@triton.jit(do_not_specialize=["window"])
def _ring_fwd(Q, K, V, QPOS, CPOS, O, WS_O, WS_M, WS_L,
              stride_qb, stride_qh, stride_qm, stride_qd,
              stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd,
              stride_pb, stride_pm, stride_cb, stride_cs,
              stride_ob, stride_oh, stride_om, stride_od,
              Hkv, Tq, S, window, qk_scale, split_len, num_splits,
              GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
              BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr,
              UPCAST: tl.constexpr, PREC: tl.constexpr):
    """Rows r = g * Tq + t (group head g, query t) of one KV head against slots
    [split * split_len, (split + 1) * split_len) of the cache. Grid (num_splits, B * Hkv, row tiles).
    SPLIT: write unnormalised partials (WS_O [B*Hkv, splits, R, D], WS_M/WS_L [B*Hkv, splits, R]);
    otherwise write O directly."""
    split = tl.program_id(0)
    bh = tl.program_id(1)
    r_tile = tl.program_id(2)
    b = (bh // Hkv).to(tl.int64)
    hk = (bh % Hkv).to(tl.int64)
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM
    n_rows = GROUP * Tq
    rows = r_tile * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    t = rows % Tq
    h = hk * GROUP + rows // Tq
    offs_d = tl.arange(0, BLOCK_D)
    q_ptrs = Q + b * stride_qb + h[:, None] * stride_qh + t[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = _load_tile(q_ptrs, rows, n_rows, offs_d, HEAD_DIM, True, EVEN_D)
    qpos = tl.load(QPOS + b * stride_pb + t * stride_pm, mask=row_ok, other=-1).to(tl.int64)

    m_i = tl.full([BLOCK_R], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
    s_lo = split * split_len
    s_hi = tl.minimum(s_lo + split_len, S)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(s_lo, s_hi, BLOCK_N):
        sn = start_n + offs_n
        kpos = tl.load(CPOS + b * stride_cb + sn * stride_cs, mask=sn < s_hi, other=-1).to(tl.int64)
        k = _load_tile(k_base + sn[:, None] * stride_kn + offs_d[None, :] * stride_kd, sn, s_hi, offs_d,
                       HEAD_DIM, True, EVEN_D)
        s = _dot(q, tl.trans(k), tl.zeros([BLOCK_R, BLOCK_N], dtype=tl.float32), UPCAST, PREC) * qk_scale
        vis = (kpos[None, :] >= 0) & (kpos[None, :] <= qpos[:, None]) & (qpos[:, None] - kpos[None, :] < window)
        s = tl.where(vis, s, float("-inf"))
        v = _load_tile(v_base + sn[:, None] * stride_vn + offs_d[None, :] * stride_vd, sn, s_hi, offs_d,
                       HEAD_DIM, True, EVEN_D)
        acc, l_i, m_i = _softmax_step(acc, l_i, m_i, s, v, UPCAST, PREC)

    if SPLIT:
        ws = (bh.to(tl.int64) * num_splits + split) * n_rows + rows
        tl.store(WS_M + ws, m_i, mask=row_ok)
        tl.store(WS_L + ws, l_i, mask=row_ok)
        tl.store(WS_O + ws[:, None] * BLOCK_D + offs_d[None, :], acc, mask=row_ok[:, None])
    else:
        out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
        o_ptrs = O + b * stride_ob + h[:, None] * stride_oh + t[:, None] * stride_om + offs_d[None, :] * stride_od
        tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


@triton.jit
def _ring_combine(O, WS_O, WS_M, WS_L, stride_ob, stride_oh, stride_om, stride_od,
                  Hkv, Tq, num_splits,
                  GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
    """Merge the per-split partials of `_ring_fwd` into O. Grid (B * Hkv, row tiles)."""
    bh = tl.program_id(0)
    r_tile = tl.program_id(1)
    b = (bh // Hkv).to(tl.int64)
    hk = (bh % Hkv).to(tl.int64)
    n_rows = GROUP * Tq
    rows = r_tile * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    offs_d = tl.arange(0, BLOCK_D)
    m_i = tl.full([BLOCK_R], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
    for split in range(num_splits):
        ws = (bh.to(tl.int64) * num_splits + split) * n_rows + rows
        m_s = tl.load(WS_M + ws, mask=row_ok, other=-1.0e30)
        l_s = tl.load(WS_L + ws, mask=row_ok, other=0.0)
        o_s = tl.load(WS_O + ws[:, None] * BLOCK_D + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        m_new = tl.maximum(m_i, m_s)
        alpha = tl.exp2(m_i - m_new)
        beta = tl.exp2(m_s - m_new)
        l_i = l_i * alpha + l_s * beta
        acc = acc * alpha[:, None] + o_s * beta[:, None]
        m_i = m_new
    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    t = rows % Tq
    h = hk * GROUP + rows // Tq
    o_ptrs = O + b * stride_ob + h[:, None] * stride_oh + t[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


# --------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------

def _num_splits(rows_tiles: int, bh: int, slots: int, device: torch.device, block_n: int) -> int:
    """Split the cache so that about two waves of programs cover the GPU; at least 4 tiles per split."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    programs = rows_tiles * bh
    want = triton.cdiv(2 * sms, programs)
    return max(1, min(want, triton.cdiv(slots, 4 * block_n)))


def ring_attention_triton(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, q_pos: torch.Tensor,
                          cache_pos: torch.Tensor, *, window: int | None = None, scale: float | None = None,
                          num_splits: int | None = None) -> torch.Tensor:
    """Decode attention of a few queries against a ring KV cache, read in place (forward only).

    q [B, H, Tq, D]; k_cache, v_cache [B, Hkv, S, D]; q_pos [B, Tq] absolute query positions;
    cache_pos [B, S] position held by each slot (-1 = empty). Visible iff 0 <= kp <= qp and
    qp - kp < window. Returns [B, H, Tq, D]; queries with no visible key give 0.
    num_splits: split-KV factor (None = chosen from the GPU's SM count; 1 on CPU).
    """
    bsz, heads, hkv, dim, block_d = _check_inputs("ring_attention", q, k_cache, v_cache)
    tq, slots = q.shape[2], k_cache.shape[2]
    if q_pos.dim() == 1:
        q_pos = q_pos[None].expand(bsz, -1)
    if cache_pos.dim() == 1:
        cache_pos = cache_pos[None].expand(bsz, -1)
    if tuple(q_pos.shape) != (bsz, tq) or tuple(cache_pos.shape) != (bsz, slots):
        raise ValueError(f"kernels/triton_ring_attention.py: q_pos must be [B={bsz}, Tq={tq}] and "
                         f"cache_pos [B={bsz}, S={slots}]; found {tuple(q_pos.shape)}, {tuple(cache_pos.shape)}")
    scale = 1.0 / math.sqrt(dim) if scale is None else float(scale)
    win = 2 ** 62 if window is None else int(window)
    if win < 1:
        raise ValueError(f"kernels/triton_ring_attention.py: window must be >= 1 or None; found {window}")
    cfg = attention_config(block_d, q.dtype)
    upcast, prec = _dot_flags(q.dtype)
    group = heads // hkv
    n_rows = group * tq
    block_r = max(16, min(64, triton.next_power_of_2(n_rows)))
    row_tiles = triton.cdiv(n_rows, block_r)
    if num_splits is None:
        num_splits = _num_splits(row_tiles, bsz * hkv, slots, q.device, cfg.decode_n)
    split_len = triton.cdiv(triton.cdiv(slots, num_splits), cfg.decode_n) * cfg.decode_n
    num_splits = max(1, triton.cdiv(slots, split_len))
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if o.numel() == 0:
        return o
    if slots == 0:
        return o.zero_()
    split = num_splits > 1
    if split:
        ws_o = torch.empty((bsz * hkv, num_splits, n_rows, block_d), dtype=torch.float32, device=q.device)
        ws_m = torch.empty((bsz * hkv, num_splits, n_rows), dtype=torch.float32, device=q.device)
        ws_l = torch.empty_like(ws_m)
    else:
        ws_o = ws_m = ws_l = o
    _ring_fwd[(num_splits, bsz * hkv, row_tiles)](
        q, k_cache, v_cache, q_pos, cache_pos, o, ws_o, ws_m, ws_l,
        *q.stride(), *k_cache.stride(), *v_cache.stride(), *q_pos.stride(), *cache_pos.stride(), *o.stride(),
        hkv, tq, slots, win, scale * LOG2E, split_len, num_splits,
        GROUP=group, HEAD_DIM=dim, BLOCK_D=block_d, BLOCK_R=block_r, BLOCK_N=cfg.decode_n, SPLIT=split,
        UPCAST=upcast, PREC=prec, num_warps=cfg.decode_warps, num_stages=2)
    if split:
        _ring_combine[(bsz * hkv, row_tiles)](
            o, ws_o, ws_m, ws_l, *o.stride(), hkv, tq, num_splits,
            GROUP=group, HEAD_DIM=dim, BLOCK_D=block_d, BLOCK_R=block_r, num_warps=4)
    return o
