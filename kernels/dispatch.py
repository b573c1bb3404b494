"""One rule decides which backend runs a kernel: Triton on CUDA tensors, the PyTorch reference
elsewhere; `DUET_KERNELS=triton|reference|auto` or the `use_backend(...)` context manager override it.
CUDA tensors without an importable Triton are an error, not a quiet switch to the slower reference.
Under `TRITON_INTERPRET=1` the Triton kernels also run on CPU tensors (that is how tests check them).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os

BACKENDS = ("auto", "triton", "reference")
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("duet_kernel_backend", default=None)


@functools.cache
def triton_import_error() -> str | None:
    """None when `import triton` works, else why it does not (the exception, in one line)."""
    try:
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or a broken install failing at import time
        return f"{type(e).__name__}: {e}"
    return None


def triton_available() -> bool:
    return triton_import_error() is None


def requested_backend() -> str:
    forced = _forced.get()
    if forced is not None:
        return forced
    env = os.environ.get("DUET_KERNELS", "auto").lower()
    if env not in BACKENDS:
        raise ValueError(f"DUET_KERNELS={env!r}; expected one of {BACKENDS}")
    return env


def use_triton(*tensors) -> bool:
    """True when the Triton path should run for these tensors. Never a silent fallback: CUDA tensors
    without an importable Triton are an error that says why and how to choose the reference instead."""
    backend = requested_backend()
    if backend == "reference":
        return False
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    on_cuda = all(t.is_cuda for t in tensors)
    why = triton_import_error()
    if backend == "triton":
        if why is not None:
            raise RuntimeError(f"kernel backend 'triton' requested (DUET_KERNELS or use_backend) but triton cannot "
                               f"be imported ({why}); pip install 'triton>=3.0', or request 'reference'")
        if not (on_cuda or interpret):
            raise RuntimeError("Triton backend forced on CPU tensors; set TRITON_INTERPRET=1 to run the interpreter")
        return True
    if not on_cuda:
        return False
    if why is not None:
        raise RuntimeError(f"CUDA tensors run Duet's Triton kernels, but triton cannot be imported ({why}); "
                           "pip install 'triton>=3.0', or choose the PyTorch reference explicitly with "
                           "DUET_KERNELS=reference or `with kernels.use_backend('reference'):`")
    return True


@contextlib.contextmanager
def use_backend(name: str):
    """Force a backend ('triton', 'reference' or 'auto') inside a `with` block."""
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; expected one of {BACKENDS}")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)
