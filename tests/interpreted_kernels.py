"""Importing Triton kernel modules for Triton's CPU interpreter.

`@triton.jit` decides at decoration time (when a kernels.triton_* module is imported) whether its
kernels are compiled or interpreted, by reading TRITON_INTERPRET; dispatch reads it again at every
call. `import_interpreted` sets the variable for the import only (other test modules keep their
environment); the `interpret` fixture (conftest.py) sets it for each test; `skip_unless_interpreted`
skips a module whose kernels were imported compiled by someone else first.
"""
import importlib
import os

import pytest


def import_interpreted(name: str):
    """Import kernels module `name` with TRITON_INTERPRET=1. Call it before anything imports triton
    itself (vector_quantize_pytorch does): triton.language's own jit helpers are decided then too."""
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        return importlib.import_module(name)
    finally:
        if saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = saved


def skip_unless_interpreted(module):
    return pytest.mark.skipif(not module._interpreted(), reason=f"{module.__name__} was imported before this test "
                              "module without TRITON_INTERPRET=1; its kernels are compiled, not interpreted")
