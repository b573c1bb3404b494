"""Triton kernels for finite scalar quantisation (FSQ), the codec's tokeniser.

Why it exists: FSQ is a chain of small elementwise ops (shift, tanh, scale, round, divide, index
dot-product) that PyTorch runs as ~10 kernels with as many round trips through memory. Here one
kernel reads z once and writes the codes and the indices; a second one maps indices back to codes;
a third gives the straight-through gradient. Indices must equal `vector_quantize_pytorch.FSQ`'s, so
every step mirrors its float32 arithmetic: the per-level constants are computed on the host with the
same torch expressions, the multiply and subtract after tanh are not fused into an FMA, rounding is
round-half-to-even and the division is IEEE (div_rn).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .compile_check import COMPILE_ONLY

_EPS = 1e-3  # vector_quantize_pytorch.FSQ.bound's eps


@triton.jit
def _tanh(x, LIBDEVICE: tl.constexpr):
    """float32 tanh. GPU: libdevice (the CUDA math library tanhf, as torch uses). The interpreter has
    no libdevice: evaluate in float64 and round once, so it is as exact as torch's CPU tanh."""
    if LIBDEVICE:
        y = libdevice.tanh(x)
    else:
        xd = x.to(tl.float64)
        small = tl.abs(xd) < 1e-4
        big = 1.0 - 2.0 / (tl.exp(2.0 * tl.where(small, 0.0, xd)) + 1.0)
        y = tl.where(small, xd - xd * xd * xd / 3.0, big).to(tl.float32)
    return y


@triton.jit
def _round_half_even(x):
    """torch.round for |x| < 2**22: nearest integer, ties to even."""
    f = tl.floor(x)
    frac = x - f  # exact
    up = (frac > 0.5) | ((frac == 0.5) & (f - 2.0 * tl.floor(f * 0.5) != 0.0))
    return tl.where(up, f + 1.0, f)


@triton.jit
def _fsq_fwd(Z, CONST, BASIS, CODES, IDX, n_rows, DIM: tl.constexpr, BLOCK_R: tl.constexpr,
             BLOCK_C: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Z [N, DIM] → CODES [N, DIM] (Z's dtype), IDX [N] int64. CONST [4, DIM] fp32 rows:
    half_l, offset, shift, half_width; BASIS [DIM] int64. Grid (cdiv(N, BLOCK_R),)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    col_ok = cols < DIM
    half_l = tl.load(CONST + cols, mask=col_ok, other=1.0)
    offset = tl.load(CONST + DIM + cols, mask=col_ok, other=0.0)
    shift = tl.load(CONST + 2 * DIM + cols, mask=col_ok, other=0.0)
    half_width = tl.load(CONST + 3 * DIM + cols, mask=col_ok, other=1.0)
    basis = tl.load(BASIS + cols, mask=col_ok, other=0)
    mask = (rows[:, None] < n_rows) & col_ok[None, :]
    z = tl.load(Z + rows[:, None] * DIM + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    t = _tanh(z + shift[None, :], LIBDEVICE)
    bounded = t * half_l[None, :] - offset[None, :]  # launched with enable_fp_fusion=False: no FMA
    rounded = _round_half_even(bounded)
    codes = tl.math.div_rn(rounded, tl.broadcast_to(half_width[None, :], rounded.shape))
    tl.store(CODES + rows[:, None] * DIM + cols[None, :], codes.to(CODES.dtype.element_ty), mask=mask)
    digits = (rounded + half_width[None, :]).to(tl.int64)
    idx = tl.sum(tl.where(mask, digits * basis[None, :], 0), axis=1)
    tl.store(IDX + rows, idx, mask=rows < n_rows)


@triton.jit
def _fsq_bwd(Z, DCODES, CONST, DZ, n_rows, DIM: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
             LIBDEVICE: tl.constexpr):
    """Straight-through gradient: DZ = DCODES * half_l * (1 - tanh(z + shift)^2) / half_width."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    col_ok = cols < DIM
    half_l = tl.load(CONST + cols, mask=col_ok, other=1.0)
    shift = tl.load(CONST + 2 * DIM + cols, mask=col_ok, other=0.0)
    half_width = tl.load(CONST + 3 * DIM + cols, mask=col_ok, other=1.0)
    mask = (rows[:, None] < n_rows) & col_ok[None, :]
    offs = rows[:, None] * DIM + cols[None, :]
    z = tl.load(Z + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(DCODES + offs, mask=mask, other=0.0).to(tl.float32)
    t = _tanh(z + shift[None, :], LIBDEVICE)
    dz = g * (half_l / half_width)[None, :] * (1.0 - t * t)
    tl.store(DZ + offs, dz.to(DZ.dtype.element_ty), mask=mask)


@triton.jit
def _fsq_decode(IDX, CONST, BASIS, LEVELS, CODES, n_rows, DIM: tl.constexpr, BLOCK_R: tl.constexpr,
                BLOCK_C: tl.constexpr):
    """IDX [N] → CODES [N, DIM] fp32: digit = idx // basis % level, code = (digit - hw) / hw."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    col_ok = cols < DIM
    half_width = tl.load(CONST + 3 * DIM + cols, mask=col_ok, other=1.0)
    basis = tl.load(BASIS + cols, mask=col_ok, other=1)
    levels = tl.load(LEVELS + cols, mask=col_ok, other=1)
    idx = tl.load(IDX + rows, mask=rows < n_rows, other=0).to(tl.int64)
    digits = (idx[:, None] // basis[None, :]) % levels[None, :]
    num = digits.to(tl.float32) - half_width[None, :]
    codes = tl.math.div_rn(num, tl.broadcast_to(half_width[None, :], num.shape))
    mask = (rows[:, None] < n_rows) & col_ok[None, :]
    tl.store(CODES + rows[:, None] * DIM + cols[None, :], codes, mask=mask)


# --------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------

_CONSTS: dict[tuple[tuple[int, ...], str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}



def _interpreted() -> bool:
    return not isinstance(_fsq_fwd, triton.runtime.JITFunction)


def _constants(levels, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(CONST [4, d] fp32: half_l, offset, shift, half_width; BASIS [d] int64; LEVELS [d] int64),
    computed with vector_quantize_pytorch.FSQ's own expressions (int32 levels, float32 maths)."""
    key = (tuple(int(x) for x in levels), str(device))
    if key not in _CONSTS:
        if not levels or min(key[0]) < 2:
            raise ValueError(f"kernels/triton_fsq.py: levels must be a non-empty list of ints >= 2; found {list(levels)}")
        lv = torch.tensor(key[0], dtype=torch.int32)
        half_l = (lv - 1) * (1 + _EPS) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        half_width = (lv // 2).float()
        const = torch.stack([half_l, offset, shift, half_width]).float().contiguous()
        basis = torch.cumprod(torch.tensor([1] + list(key[0][:-1])), dim=0).long()
        _CONSTS[key] = (const.to(device), basis.to(device), lv.long().to(device))
    return _CONSTS[key]


def _check_device(t: torch.Tensor) -> None:
    if not t.is_cuda and not _interpreted() and not COMPILE_ONLY.get():
        raise RuntimeError("kernels/triton_fsq.py was imported without TRITON_INTERPRET=1, so its kernels are "
                           "compiled for the GPU and cannot take CPU tensors; set TRITON_INTERPRET=1 before "
                           "this module is first imported (the first Triton-backend call does it), or use "
                           "the reference backend")


def _block_rows(dim: int) -> tuple[int, int]:
    block_c = triton.next_power_of_2(dim)
    block_r = 64 if _interpreted() else max(1, 4096 // block_c)
    return block_c, block_r


class _FSQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z2d, levels):
        const, basis, _ = _constants(levels, z2d.device)
        n, dim = z2d.shape
        codes = torch.empty_like(z2d)
        idx = torch.empty(n, dtype=torch.int64, device=z2d.device)
        block_c, block_r = _block_rows(dim)
        if n:
            _fsq_fwd[(triton.cdiv(n, block_r),)](z2d, const, basis, codes, idx, n, DIM=dim, BLOCK_R=block_r,
                                                 BLOCK_C=block_c, LIBDEVICE=not _interpreted(),
                                                 num_warps=4, enable_fp_fusion=False)
        ctx.save_for_backward(z2d)
        ctx.levels = levels
        ctx.mark_non_differentiable(idx)
        return codes, idx

    @staticmethod
    def backward(ctx, dcodes, _didx):
        (z2d,) = ctx.saved_tensors
        const, _, _ = _constants(ctx.levels, z2d.device)
        n, dim = z2d.shape
        dz = torch.empty_like(z2d)
        block_c, block_r = _block_rows(dim)
        if n:
            _fsq_bwd[(triton.cdiv(n, block_r),)](z2d, dcodes.contiguous(), const, dz, n, DIM=dim, BLOCK_R=block_r,
                                                 BLOCK_C=block_c, LIBDEVICE=not _interpreted(), num_warps=4)
        return dz, None


def fsq_triton(z: torch.Tensor, levels) -> tuple[torch.Tensor, torch.Tensor]:
    """z [..., len(levels)] → (codes [..., len(levels)] in [-1, 1], z's dtype, straight-through
    gradient; indices [...] int64, identical to vector_quantize_pytorch.FSQ's)."""
    levels = tuple(int(x) for x in levels)
    if z.shape[-1] != len(levels):
        raise ValueError(f"fsq: last dim of z is {z.shape[-1]}, expected {len(levels)} (one per level)")
    if not z.is_floating_point():
        raise ValueError(f"kernels/triton_fsq.py fsq: z must be floating point; found {z.dtype}")
    _check_device(z)
    lead = z.shape[:-1]
    codes, idx = _FSQ.apply(z.reshape(-1, len(levels)).contiguous(), levels)
    return codes.reshape(*lead, len(levels)), idx.reshape(lead)


def fsq_decode_triton(indices: torch.Tensor, levels) -> torch.Tensor:
    """Integer indices [...] → codes [..., len(levels)] float32 in [-1, 1]."""
    levels = tuple(int(x) for x in levels)
    _check_device(indices)
    const, basis, lv = _constants(levels, indices.device)
    codebook_size = 1
    for x in levels:
        codebook_size *= x
    if indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"kernels/triton_fsq.py fsq_decode: indices must be integers; found {indices.dtype}")
    if indices.numel():
        lo, hi = (int(x) for x in torch.aminmax(indices))
        if lo < 0 or hi >= codebook_size:
            raise ValueError(f"fsq_decode: indices must lie in [0, {codebook_size}); found [{lo}, {hi}]")
    flat = indices.reshape(-1).contiguous()
    n, dim = flat.numel(), len(levels)
    codes = torch.empty((n, dim), dtype=torch.float32, device=indices.device)
    block_c, block_r = _block_rows(dim)
    if n:
        _fsq_decode[(triton.cdiv(n, block_r),)](flat, const, basis, lv, codes, n, DIM=dim, BLOCK_R=block_r,
                                                BLOCK_C=block_c, num_warps=4)
    return codes.reshape(*indices.shape, dim)
