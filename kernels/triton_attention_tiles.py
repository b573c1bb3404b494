"""What the Triton attention kernels share: jit tile primitives (a dot that the interpreter can run in
bf16, a zero-filled tile load, one online-softmax step) and the host side of a launch (input checks,
tile sizes per head dim and dtype, dot precision). `kernels.triton_attention` (training forward and
backward) and `kernels.triton_ring_attention` (ring-cache decode) build on them, so both kernels tile,
check and round alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .compile_check import COMPILE_ONLY

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 128


# --------------------------------------------------------------------------------------------
# jit helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _dot(a, b, acc, UPCAST: tl.constexpr, PREC: tl.constexpr):
    """acc + a @ b. UPCAST: the interpreter cannot multiply bf16 (it stores them as uint16)."""
    if UPCAST:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc, input_precision=PREC)
    return acc


@triton.jit
def _load_tile(ptrs, rows, n_rows, offs_d, HEAD_DIM: tl.constexpr, CHECK_ROWS: tl.constexpr,
               EVEN_D: tl.constexpr):
    """Load a [rows, BLOCK_D] tile, zero-filling rows >= n_rows (if CHECK_ROWS) and columns >= HEAD_DIM."""
    if CHECK_ROWS:
        if EVEN_D:
            x = tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
        else:
            x = tl.load(ptrs, mask=(rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM), other=0.0)
    else:
        if EVEN_D:
            x = tl.load(ptrs)
        else:
            x = tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    return x
@triton.jit
def _softmax_step(acc, l_i, m_i, s, v, UPCAST: tl.constexpr, PREC: tl.constexpr):
    """One key tile of the online softmax: fold base-2 scores s [rows, keys] and values v into the
    running max m_i, normaliser l_i and unnormalised output acc (shared with the ring decode kernel)."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.exp2(s - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = _dot(p.to(v.dtype), v, acc * alpha[:, None], UPCAST, PREC)
    return acc, l_i, m_new



# --------------------------------------------------------------------------------------------
# host side
# --------------------------------------------------------------------------------------------
def _interpreted() -> bool:
    return not isinstance(_dot, triton.runtime.JITFunction)


@dataclass(frozen=True)
class AttentionConfig:
    """Tile sizes and launch parameters for one call (fwd, bwd-dq and bwd-dkdv tiles)."""
    fwd_m: int
    fwd_n: int
    fwd_warps: int
    fwd_stages: int
    dq_m: int
    dq_n: int
    dkdv_m: int
    dkdv_n: int
    bwd_warps: int
    bwd_stages: int
    decode_n: int = 64
    decode_warps: int = 4


def attention_config(head_dim: int, dtype: torch.dtype) -> AttentionConfig:
    """Tiles for a padded head dim. Interpreter: 16x16 tiles (small and fast to simulate). GPU: chosen
    so that the bf16/fp16 kernels compile for sm_90 without register spills and everything fits shared
    memory (`python -m kernels.compile_check`); still to be tuned on hardware (benchmarks/kernels.py).
    fp32 runs IEEE dots (no tensor cores unless TF32 is allowed): a correctness path with small tiles."""
    if _interpreted():
        return AttentionConfig(16, 16, 1, 1, 16, 16, 16, 16, 1, 1, 16, 1)
    if dtype == torch.float32:
        if head_dim <= 32:
            return AttentionConfig(64, 32, 4, 2, 32, 32, 16, 32, 4, 2, 64, 4)
        if head_dim <= 64:
            return AttentionConfig(32, 32, 4, 2, 32, 32, 16, 32, 8, 2, 32, 4)
        return AttentionConfig(32, 16, 8, 2, 16, 32, 16, 32, 8, 2, 32, 8)
    if head_dim <= 32:
        return AttentionConfig(128, 64, 4, 3, 128, 32, 32, 128, 4, 3, 64, 4)
    if head_dim <= 64:
        return AttentionConfig(128, 64, 4, 3, 128, 32, 32, 128, 8, 3, 64, 4)
    return AttentionConfig(128, 64, 8, 3, 64, 64, 16, 128, 8, 3, 32, 4)


def _check_inputs(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int]:
    """(B, H, Hkv, D, padded D) of a call, or an error that names what is wrong with q, k and v."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"kernels {name}: q, k, v must be 4-D [B, H, T, D]; "
                         f"found {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    bsz, heads, _, dim = q.shape
    if k.shape != v.shape or k.shape[0] != bsz or k.shape[3] != dim:
        raise ValueError(f"kernels {name}: k/v must be [B={bsz}, Hkv, S, D={dim}]; "
                         f"found k {tuple(k.shape)}, v {tuple(v.shape)}")
    hkv = k.shape[1]
    if hkv == 0 or heads % hkv:
        raise ValueError(f"kernels {name}: query heads ({heads}) must be a multiple of "
                         f"key/value heads ({hkv})")
    if not 1 <= dim <= MAX_HEAD_DIM:
        raise ValueError(f"kernels {name}: head dim {dim} unsupported; expected 1..{MAX_HEAD_DIM}")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"kernels {name}: dtypes {q.dtype}, {k.dtype}, {v.dtype}; expected "
                         "one of float16/bfloat16/float32, the same for q, k and v")
    if not q.is_cuda and not _interpreted() and not COMPILE_ONLY.get():
        raise RuntimeError(f"kernels {name}: the Triton attention modules were imported without TRITON_INTERPRET=1, "
                           "so their kernels are compiled for the GPU and cannot take CPU tensors; set "
                           "TRITON_INTERPRET=1 before they are first imported (the first Triton-backend call does it), or use "
                           "the reference backend")
    block_d = max(16, triton.next_power_of_2(dim))
    return bsz, heads, hkv, dim, block_d


def _dot_flags(dtype: torch.dtype) -> tuple[bool, str]:
    """(UPCAST, PREC): bf16 dots are upcast under the interpreter; fp32 follows torch's TF32 switch."""
    upcast = _interpreted() and dtype == torch.bfloat16
    prec = "tf32" if (dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32) else "ieee"
    if dtype != torch.float32:
        prec = "tf32"  # ignored for 16-bit operands
    return upcast, prec
