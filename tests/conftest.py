"""Shared test set-up: the repo on sys.path, two torch threads, and two markers.

- `@pytest.mark.slow`: recipe runs and end-to-end checks (minutes). `make test-fast` = `-m "not slow"`.
- `@pytest.mark.needs("flite", ...)`: system tools the test calls; when one is missing the test is skipped,
  naming the Debian package (`make system-deps` installs them all).
"""
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(min(2, os.cpu_count() or 1))

# tool → (how to find it, the Debian package that has it)
SYSTEM_TOOLS = {
    "flite": (lambda: shutil.which("flite"), "flite"),
    "festival": (lambda: shutil.which("festival"), "festival festvox-kallpc16k festvox-us-slt-hts"),
    "espeak-ng": (lambda: _espeak(), "espeak-ng"),
    "codec2": (lambda: shutil.which("c2enc") and shutil.which("c2dec"), "codec2"),
    "opus": (lambda: shutil.which("opusenc") and shutil.which("opusdec"), "opus-tools"),
    "ffmpeg": (lambda: shutil.which("ffmpeg"), "ffmpeg"),
    "asterisk-sounds": (lambda: Path("/usr/share/asterisk/sounds").is_dir(), "asterisk-core-sounds-en-wav"),
    "chromium": (lambda: shutil.which("chromium") or Path("/usr/bin/chromium").is_file(), "chromium"),
}


def _espeak() -> bool:
    from recipes.synth import espeak

    return espeak.available()[0]


def missing_tools(*tools: str) -> list[str]:
    unknown = [t for t in tools if t not in SYSTEM_TOOLS]
    if unknown:
        raise ValueError(f"needs({', '.join(unknown)}): unknown tool; known: {sorted(SYSTEM_TOOLS)}")
    return [t for t in tools if not SYSTEM_TOOLS[t][0]()]


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*tools): system tools the test calls (skipped, naming the "
                                       "package, when one is missing)")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        missing = missing_tools(*mark.args)
        if missing:
            packages = " ".join(SYSTEM_TOOLS[t][1] for t in missing)
            pytest.skip(f"needs {', '.join(missing)}: apt-get install {packages} (or `make system-deps`)")


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def interpret(monkeypatch):
    """Kernel tests: Triton's CPU interpreter, and no DUET_KERNELS override (tests/interpreted_kernels.py)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("DUET_KERNELS", raising=False)
