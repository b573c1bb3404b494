"""One rule decides which backend runs a kernel: Triton on CUDA tensors, the PyTorch reference
elsewhere; `DUET_KERNELS=triton|reference|auto` or the `use_backend(...)` context manager override it.
Under `TRITON_INTERPRET=1` the Triton kernels also run on CPU tensors (that is how tests check them).
"""
from __future__ import annotations

import contextlib
import contextvars
import os

BACKENDS = ("auto", "triton", "reference")
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("duet_kernel_backend", default=None)


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def requested_backend() -> str:
    forced = _forced.get()
    if forced is not None:
        return forced
    env = os.environ.get("DUET_KERNELS", "auto").lower()
    if env not in BACKENDS:
        raise ValueError(f"DUET_KERNELS={env!r}; expected one of {BACKENDS}")
    return env


def use_triton(*tensors) -> bool:
    """True when the Triton path should run for these tensors."""
    backend = requested_backend()
    if backend == "reference":
        return False
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "triton":
        if not triton_available():
            raise RuntimeError("DUET_KERNELS=triton but triton is not importable")
        if not (on_cuda or interpret):
            raise RuntimeError("Triton backend forced on CPU tensors; set TRITON_INTERPRET=1 to run the interpreter")
        return True
    return on_cuda and triton_available()


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
