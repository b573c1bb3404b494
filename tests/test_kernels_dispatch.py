"""kernels.dispatch: which backend runs, and no silent fallback when Triton cannot be had."""
from types import SimpleNamespace

import pytest
import torch

from kernels import dispatch, use_backend

CUDA = SimpleNamespace(is_cuda=True)  # use_triton reads only .is_cuda: a stand-in for a CUDA tensor on any machine


@pytest.fixture
def no_triton(monkeypatch):
    monkeypatch.delenv("DUET_KERNELS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(dispatch, "triton_import_error", lambda: "ImportError: No module named 'triton'")


def test_cpu_tensors_run_the_reference_in_auto_mode(no_triton):
    assert not dispatch.use_triton(torch.zeros(2))


def test_auto_on_cuda_without_triton_is_an_error_that_says_why_and_what_to_do(no_triton):
    with pytest.raises(RuntimeError, match=r"No module named 'triton'.*pip install 'triton>=3.0'.*DUET_KERNELS=reference"):
        dispatch.use_triton(CUDA, CUDA)


def test_a_requested_triton_backend_without_triton_is_an_error(no_triton):
    with use_backend("triton"), pytest.raises(RuntimeError, match="'triton' requested.*No module named 'triton'"):
        dispatch.use_triton(CUDA)


def test_the_reference_requested_on_cuda_needs_no_triton(no_triton, monkeypatch):
    with use_backend("reference"):
        assert not dispatch.use_triton(CUDA)
    monkeypatch.setenv("DUET_KERNELS", "reference")
    assert not dispatch.use_triton(CUDA)


def test_cuda_with_triton_runs_triton(monkeypatch):
    monkeypatch.delenv("DUET_KERNELS", raising=False)
    monkeypatch.setattr(dispatch, "triton_import_error", lambda: None)
    assert dispatch.use_triton(CUDA)
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        with use_backend("cuda"):
            pass
