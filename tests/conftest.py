import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def interpret(monkeypatch):
    """Kernel tests: Triton's CPU interpreter, and no DUET_KERNELS override (tests/interpreted_kernels.py)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("DUET_KERNELS", raising=False)
