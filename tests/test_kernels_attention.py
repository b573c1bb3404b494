"""Triton attention kernels against the PyTorch reference, in Triton's CPU interpreter.

kernels.triton_attention is imported with TRITON_INTERPRET=1 (tests/interpreted_kernels.py). Shapes are
tiny and tiles are 16x16 under the interpreter, so lengths 17 and 33 cover ragged last tiles and
several tiles.
"""
import pytest
import torch

import kernels
from kernels import reference
from tests.interpreted_kernels import import_interpreted, skip_unless_interpreted

ta = import_interpreted("kernels.triton_attention")
tr = import_interpreted("kernels.triton_ring_attention")
pytestmark = [skip_unless_interpreted(ta), pytest.mark.usefixtures("interpret")]

# Tolerances, once per dtype. fp32: against the fp32 reference. fp16/bf16: against the reference run in
# fp32 on the same (already rounded) inputs; the kernel rounds P and dS to the input dtype before the
# second matmul, as FlashAttention does, so a few ulps of the output magnitude are expected.
TOL = {
    torch.float32: dict(atol=2e-5, rtol=2e-5),
    torch.float16: dict(atol=4e-3, rtol=4e-3),
    torch.bfloat16: dict(atol=3e-2, rtol=3e-2),
}


def _qkv(b, h, hkv, tq, tk, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, tq, d, generator=g).to(dtype)
    k = torch.randn(b, hkv, tk, d, generator=g).to(dtype)
    v = torch.randn(b, hkv, tk, d, generator=g).to(dtype)
    return q, k, v


def _fwd_bwd(fn, q, k, v, do, **kw):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    o = fn(q, k, v, **kw)
    o.backward(do)
    return o.detach(), q.grad, k.grad, v.grad


def assert_close_per_dtype(got, want, dtype, what):
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        torch.testing.assert_close(a.float(), b.float(), **TOL[dtype], msg=lambda m: f"{what} {name}: {m}")


# (B, H, Hkv, Tq, Tk, D, q_offset, window)
CASES = [
    (1, 2, 2, 1, 1, 16, 0, None),       # length 1
    (1, 2, 1, 17, 17, 16, 0, None),     # ragged, GQA 2:1
    (2, 4, 2, 33, 33, 32, 0, 5),        # window much smaller than the sequence
    (1, 4, 1, 17, 40, 16, 23, None),    # q_offset > 0 (chunked prefill), GQA 4:1
    (1, 2, 1, 33, 50, 64, 10, 12),      # offset + window, head dim 64
    (1, 2, 2, 20, 10, 16, 5, 3),        # late queries see no key: output and grads 0
    (1, 2, 2, 17, 17, 24, 0, None),     # head dim not a power of two (padded to 32)
    (1, 2, 1, 33, 33, 16, 0, 1),        # window 1: each query sees only itself
    (1, 2, 2, 16, 64, 32, 48, 40),      # tile-aligned, window: fully visible interior tiles between masked ones
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}H{}Hkv{}Tq{}Tk{}D{}off{}w{}".format(*c))
def test_causal_attention_fp32_matches_reference(case):
    b, h, hkv, tq, tk, d, off, win = case
    q, k, v = _qkv(b, h, hkv, tq, tk, d, torch.float32)
    do = torch.randn(b, h, tq, d, generator=torch.Generator().manual_seed(1))
    got = _fwd_bwd(ta.causal_attention_triton, q, k, v, do, q_offset=off, window=win)
    want = _fwd_bwd(reference.causal_attention_reference, q, k, v, do, q_offset=off, window=win)
    assert_close_per_dtype(got, want, torch.float32, str(case))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_causal_attention_low_precision(dtype):
    q, k, v = _qkv(1, 4, 2, 33, 33, 32, dtype, seed=2)
    do = torch.randn(1, 4, 33, 32, generator=torch.Generator().manual_seed(3)).to(dtype)
    got = _fwd_bwd(ta.causal_attention_triton, q, k, v, do, window=20, q_offset=0)
    want = _fwd_bwd(reference.causal_attention_reference, q.float(), k.float(), v.float(), do.float(), window=20)
    assert all(x.dtype == dtype for x in got)
    assert_close_per_dtype(got, want, dtype, str(dtype))


def test_causal_attention_strided_inputs_and_scale():
    """[B, T, H, D] projections viewed as [B, H, T, D] run without a copy; explicit scale."""
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 17, 4, 16, generator=g).transpose(1, 2)
    k = torch.randn(2, 17, 2, 16, generator=g).transpose(1, 2)
    v = torch.randn(2, 17, 2, 16, generator=g).transpose(1, 2)
    do = torch.randn(2, 4, 17, 16, generator=g)
    got = _fwd_bwd(ta.causal_attention_triton, q, k, v, do, scale=0.3, window=9)
    want = _fwd_bwd(reference.causal_attention_reference, q, k, v, do, scale=0.3, window=9)
    assert_close_per_dtype(got, want, torch.float32, "strided")


def test_public_api_uses_triton_when_forced():
    q, k, v = _qkv(1, 2, 1, 17, 17, 16, torch.float32)
    with kernels.use_backend("triton"):
        out = kernels.causal_attention(q, k, v, window=4)
    torch.testing.assert_close(out, reference.causal_attention_reference(q, k, v, window=4), **TOL[torch.float32])


def _ring_case(b, h, hkv, tq, slots, d, written, dtype, seed=0):
    """A ring cache after `written[b]` positions were appended (slot = pos % S; wraps when written > S),
    and the last tq of them as queries."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, tq, d, generator=g).to(dtype)
    k = torch.randn(b, hkv, slots, d, generator=g).to(dtype)
    v = torch.randn(b, hkv, slots, d, generator=g).to(dtype)
    cache_pos = torch.full((b, slots), -1, dtype=torch.long)
    q_pos = torch.empty(b, tq, dtype=torch.long)
    for i, n in enumerate(written):
        for p in range(max(0, n - slots), n):
            cache_pos[i, p % slots] = p
        q_pos[i] = torch.arange(n - tq, n)
    return q, k, v, q_pos, cache_pos


# (B, H, Hkv, Tq, S, D, written per batch item, window, num_splits)
RING_CASES = [
    (2, 4, 2, 1, 40, 16, (57, 63), None, None),   # wrapped, decode step, GQA
    (2, 4, 2, 3, 40, 32, (50, 12), 17, 3),        # wrapped + partly filled, window, split-KV
    (1, 4, 1, 2, 37, 16, (100,), 8, 2),           # ragged S, window < S, GQA 4:1
    (1, 2, 2, 1, 16, 64, (1,), 4, 1),             # first step: one filled slot
    (1, 8, 2, 4, 33, 16, (70,), 40, 2),           # window > S: every valid slot visible; 16 query rows
]


@pytest.mark.parametrize("case", RING_CASES, ids=lambda c: "B{}H{}Hkv{}Tq{}S{}D{}n{}w{}s{}".format(*c))
def test_ring_attention_matches_reference(case):
    b, h, hkv, tq, slots, d, written, win, splits = case
    q, k, v, q_pos, cache_pos = _ring_case(b, h, hkv, tq, slots, d, written, torch.float32)
    got = tr.ring_attention_triton(q, k, v, q_pos, cache_pos, window=win, num_splits=splits)
    want = reference.ring_attention_reference(q, k, v, q_pos, cache_pos, window=win)
    torch.testing.assert_close(got, want, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ring_attention_low_precision(dtype):
    q, k, v, q_pos, cache_pos = _ring_case(2, 4, 2, 2, 40, 32, (55, 9), dtype, seed=5)
    got = tr.ring_attention_triton(q, k, v, q_pos, cache_pos, window=19, num_splits=2)
    want = reference.ring_attention_reference(q.float(), k.float(), v.float(), q_pos, cache_pos, window=19)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, **TOL[dtype])


def test_ring_attention_empty_cache_gives_zero_and_reads_in_place():
    q, k, v, q_pos, cache_pos = _ring_case(1, 2, 2, 1, 16, 16, (0,), torch.float32)
    q_pos[:] = 3
    before = k.clone()
    out = kernels.ring_attention(q, k, v, q_pos, cache_pos)  # reference path on CPU by default
    with kernels.use_backend("triton"):
        out_t = kernels.ring_attention(q, k, v, q_pos, cache_pos)
    assert torch.equal(out_t, torch.zeros_like(out_t)) and torch.equal(out, out_t)
    assert torch.equal(k, before)


def test_dispatch_defaults_to_reference_on_cpu(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("Triton path taken on CPU without being forced")

    monkeypatch.setattr(ta, "causal_attention_triton", boom)
    monkeypatch.setattr(tr, "ring_attention_triton", boom)
    q, k, v = _qkv(1, 2, 1, 5, 5, 16, torch.float32)
    out = kernels.causal_attention(q, k, v)
    torch.testing.assert_close(out, reference.causal_attention_reference(q, k, v))
    with kernels.use_backend("reference"):
        monkeypatch.setenv("DUET_KERNELS", "triton")
        kernels.causal_attention(q, k, v)  # the context manager wins over the environment


def test_forcing_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    q, k, v = _qkv(1, 2, 1, 5, 5, 16, torch.float32)
    with kernels.use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernels.causal_attention(q, k, v)
    monkeypatch.setenv("DUET_KERNELS", "triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernels.ring_attention(q, k, v, torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long))


def test_bad_shapes_raise_clear_errors():
    q, k, v = _qkv(1, 3, 2, 5, 5, 16, torch.float32)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        ta.causal_attention_triton(q, k, v)
    q, k, v = _qkv(1, 2, 1, 5, 5, 256, torch.float32)
    with pytest.raises(ValueError, match="head dim 256"):
        ta.causal_attention_triton(q, k, v)
