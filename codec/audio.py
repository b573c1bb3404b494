"""Audio input checks and conversion: every public entry point funnels audio through here, so bad
input fails with one clear error that names the problem (and the file, when there is one)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, non-finite, wrong dtype or shape."""


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a sound file → (float32 [channels, N], sample_rate)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for corrupt input
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    return check_waveform(wav, sr, what=str(path)), sr


def check_waveform(wav, sample_rate: int, what: str = "waveform") -> torch.Tensor:
    """Validate a waveform tensor: floating dtype, 1-3 dims, non-empty, finite; returns it as float32."""
    if not isinstance(wav, torch.Tensor):
        if isinstance(wav, np.ndarray):
            wav = torch.from_numpy(wav)
        else:
            raise AudioError(f"{what}: expected a torch.Tensor or numpy array, got {type(wav).__name__}")
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise AudioError(f"{what}: sample_rate must be a positive int, got {sample_rate!r}")
    if not wav.is_floating_point():
        raise AudioError(f"{what}: dtype {wav.dtype} is not floating point; pass float audio in [-1, 1] "
                         f"(e.g. int16 / 32768)")
    if wav.dim() not in (1, 2, 3):
        raise AudioError(f"{what}: expected [N], [B, N] or [B, C, N], got shape {tuple(wav.shape)}")
    if wav.shape[-1] == 0 or wav.numel() == 0:
        raise AudioError(f"{what}: empty audio (0 samples)")
    if not torch.isfinite(wav).all():
        raise AudioError(f"{what}: contains NaN or infinite samples")
    return wav.float()


def to_mono_batch(wav: torch.Tensor, sample_rate: int, target_rate: int, what: str = "waveform") -> torch.Tensor:
    """[N] / [B, N] / [B, C, N] at any rate → [B, N'] mono at target_rate (channels averaged)."""
    wav = check_waveform(wav, sample_rate, what)
    if wav.dim() == 1:
        wav = wav[None]
    elif wav.dim() == 3:
        wav = wav.mean(dim=1)
    if sample_rate != target_rate:
        wav = torchaudio.functional.resample(wav, int(sample_rate), int(target_rate))
    return wav
