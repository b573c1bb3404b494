"""Classical codec baselines run through the real Debian command-line tools.

`codec2_<mode>` (modes 3200, 2400, 1600, 1400, 1300, 1200, 700C, 450): the reference signal is
resampled to 8 kHz, written as raw s16, coded with `c2enc <mode> in.raw out.bit` (headerless)
and decoded with `c2dec`, then resampled back to the scoring rate. `opus<k>k` (e.g. opus6k):
`opusenc --bitrate <k>` on a 16 kHz WAV and `opusdec --rate 16000`. The nominal bitrate is
reported as the system's bitrate; the measured one (bytes written × 8 / seconds; for Opus this
includes the Ogg container) goes into the JSON.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .metrics import resample

__all__ = ["Baseline", "make_baseline", "BaselineError", "CODEC2_MODES"]

CODEC2_MODES = ("3200", "2400", "1600", "1400", "1300", "1200", "700C", "450")


class BaselineError(RuntimeError):
    pass


@dataclasses.dataclass
class Baseline:
    """A classical codec: `process(audio, sr) → (decoded audio at sr, bytes written)`."""

    name: str
    bitrate: float  # nominal bits/s
    kind: str  # codec2 | opus
    mode: str

    def available(self) -> tuple[bool, str]:
        tools = ("c2enc", "c2dec") if self.kind == "codec2" else ("opusenc", "opusdec")
        missing = [t for t in tools if not shutil.which(t)]
        if missing:
            pkg = "codec2" if self.kind == "codec2" else "opus-tools"
            return False, f"{', '.join(missing)} not found (apt-get install {pkg})"
        return True, ""

    def process(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory(prefix="duet-baseline-") as tmp:
            tmp = Path(tmp)
            if self.kind == "codec2":
                x = resample(audio, sr, 8000)
                pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
                (tmp / "in.raw").write_bytes(pcm.tobytes())
                _run(["c2enc", self.mode, str(tmp / "in.raw"), str(tmp / "out.bit")])
                _run(["c2dec", self.mode, str(tmp / "out.bit"), str(tmp / "out.raw")])
                nbytes = (tmp / "out.bit").stat().st_size
                y = np.frombuffer((tmp / "out.raw").read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
                return resample(y, 8000, sr), nbytes
            x = resample(audio, sr, 16000)
            sf.write(tmp / "in.wav", x, 16000, subtype="PCM_16")
            _run(["opusenc", "--quiet", "--bitrate", self.mode, str(tmp / "in.wav"), str(tmp / "out.opus")])
            _run(["opusdec", "--quiet", "--rate", "16000", str(tmp / "out.opus"), str(tmp / "out.wav")])
            nbytes = (tmp / "out.opus").stat().st_size
            y, ysr = sf.read(tmp / "out.wav", dtype="float32")
            if y.ndim > 1:
                y = y.mean(axis=1)
            return resample(y, ysr, sr), nbytes


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, timeout=300)
    if res.returncode != 0:
        raise BaselineError(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.decode(errors='replace')[-300:]}")


def make_baseline(name: str) -> Baseline:
    """`codec2_1200`, `codec2_3200`, `codec2_700C`, `opus6k`, `opus12k`, ... → Baseline."""
    m = re.fullmatch(r"codec2_(\w+)", name)
    if m:
        mode = m.group(1).upper() if m.group(1).lower().endswith("c") else m.group(1)
        if mode not in CODEC2_MODES:
            raise ValueError(f"baseline {name!r}: codec2 mode {mode!r} not one of {CODEC2_MODES}")
        return Baseline(name, float(re.match(r"\d+", mode).group(0)), "codec2", mode)
    m = re.fullmatch(r"opus(\d+(?:\.\d+)?)k", name)
    if m:
        kbps = float(m.group(1))
        if not 0.5 <= kbps <= 512:
            raise ValueError(f"baseline {name!r}: opus bitrate must be 0.5–512 kbit/s")
        return Baseline(name, kbps * 1000, "opus", m.group(1))
    raise ValueError(f"unknown baseline {name!r}: expected codec2_<mode> or opus<k>k (e.g. codec2_1200, opus6k)")
