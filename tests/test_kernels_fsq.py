"""Triton FSQ kernels against vector_quantize_pytorch.FSQ and the PyTorch reference, in Triton's CPU
interpreter (kernels.triton_fsq imported with TRITON_INTERPRET=1: tests/interpreted_kernels.py).
"""
import pytest
import torch

import kernels
from kernels import reference
from tests.interpreted_kernels import import_interpreted, skip_unless_interpreted

tf = import_interpreted("kernels.triton_fsq")  # before vector_quantize_pytorch, which imports triton
from vector_quantize_pytorch import FSQ  # noqa: E402

pytestmark = [skip_unless_interpreted(tf), pytest.mark.usefixtures("interpret")]

LEVELS = [[3] * 8, [8, 5, 5, 5], [7, 5, 5, 5, 5], [8, 6, 5], [4, 4, 3]]


def _inputs(levels, seed=0):
    """[2, 300, d]: wide random values plus the exact ties (z = -shift puts an even level on a .5 boundary),
    zero, and saturating values."""
    g = torch.Generator().manual_seed(seed)
    d = len(levels)
    z = torch.randn(2, 300, d, generator=g) * 2.5
    const, _, _ = tf._constants(levels, torch.device("cpu"))
    z[0, 0] = -const[2]
    z[0, 1] = 0.0
    z[0, 2] = 40.0
    z[0, 3] = -40.0
    z[0, 4] = -const[2] + 1e-7
    return z


@pytest.mark.parametrize("levels", LEVELS, ids=str)
def test_fsq_indices_and_codes_match_vector_quantize_pytorch(levels):
    z = _inputs(levels)
    codes, idx = tf.fsq_triton(z, levels)
    vq_codes, vq_idx = FSQ(levels)(z)
    assert idx.dtype == torch.int64 and idx.shape == z.shape[:-1]
    assert torch.equal(idx, vq_idx.long())
    assert torch.equal(codes, vq_codes)
    assert int(idx.max()) < FSQ(levels).codebook_size


@pytest.mark.parametrize("levels", LEVELS[:3], ids=str)
def test_fsq_straight_through_gradient_matches_reference(levels):
    z = _inputs(levels, seed=1)
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(2))
    zt = z.clone().requires_grad_()
    codes, _ = tf.fsq_triton(zt, levels)
    codes.backward(g)
    zr = z.clone().requires_grad_()
    ref_codes, _ = reference.fsq_reference(zr, levels)
    ref_codes.backward(g)
    torch.testing.assert_close(zt.grad, zr.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fsq_low_precision_inputs(dtype):
    levels = [8, 5, 5, 5]
    z = _inputs(levels).to(dtype)
    codes, idx = tf.fsq_triton(z, levels)
    ref_codes, ref_idx = reference.fsq_reference(z, levels)
    assert codes.dtype == dtype
    assert torch.equal(idx, ref_idx) and torch.equal(codes, ref_codes)


@pytest.mark.parametrize("levels", LEVELS, ids=str)
def test_fsq_decode_inverts_and_matches_library(levels):
    size = FSQ(levels).codebook_size
    idx = torch.cat([torch.arange(size), torch.randint(0, size, (37,), generator=torch.Generator().manual_seed(3))])
    idx = idx.reshape(1, -1)
    codes = tf.fsq_decode_triton(idx, levels)
    assert codes.shape == (1, idx.shape[1], len(levels)) and codes.dtype == torch.float32
    assert torch.equal(codes, FSQ(levels).indices_to_codes(idx))
    assert torch.equal(codes, reference.fsq_decode_reference(idx, levels))
    assert torch.equal(FSQ(levels).codes_to_indices(codes).long(), idx)  # and the library maps them back


def test_public_api_and_edge_cases():
    levels = [3] * 8
    z = _inputs(levels)
    with kernels.use_backend("triton"):
        codes, idx = kernels.fsq(z, levels)
        back = kernels.fsq_decode(idx, levels)
        empty_codes, empty_idx = kernels.fsq(z[:, :0], levels)
    ref_codes, ref_idx = kernels.fsq(z, levels)  # reference on CPU by default
    assert torch.equal(idx, ref_idx) and torch.equal(codes, ref_codes)
    assert torch.equal(back, codes)
    assert empty_codes.shape == (2, 0, 8) and empty_idx.shape == (2, 0)
    with pytest.raises(ValueError, match="expected 8"):
        tf.fsq_triton(z[..., :4], levels)
    with pytest.raises(ValueError, match=r"\[0, 6561\)"):
        tf.fsq_decode_triton(torch.tensor([6561]), levels)
    with pytest.raises(ValueError, match="levels"):
        tf.fsq_triton(torch.zeros(3, 2), [1, 5])


def test_forcing_triton_fsq_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with kernels.use_backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernels.fsq(torch.zeros(2, 3), [3, 3, 3])
