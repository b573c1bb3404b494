"""Signal metrics of a decoded utterance against its reference, all at one scoring rate.

PESQ-WB (ITU-T P.862.2, 16 kHz) and PESQ-NB (P.862, both signals resampled to 8 kHz) from the
`pesq` package, STOI from `pystoi`, and a mel distance: mean absolute difference of natural-log
mel spectrograms (80 bins, 1024-point FFT, hop 256 at 16 kHz, floor 1e-5). Before any metric the
decoded signal is delay-compensated (`align`): codecs such as codec2 delay their output, and
STOI and the mel distance compare frame by frame; the lag found is reported per system.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["resample", "align", "pesq_wb", "pesq_nb", "stoi", "mel_distance"]


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """float32 [N] at sr_in → float32 [M] at sr_out (torchaudio's windowed-sinc)."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), sr_in, sr_out).numpy()


def align(ref: np.ndarray, deg: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """Shift `deg` so it lines up with `ref` (cross-correlation peak within ±max_lag samples) and
    cut/zero-pad it to len(ref). Returns (aligned deg, lag); lag > 0 means deg was late."""
    from scipy.signal import correlate

    n = min(len(ref), len(deg))
    lag = 0
    if n > 0 and max_lag > 0 and np.any(deg[:n]) and np.any(ref[:n]):
        full = correlate(deg[:n + max_lag] if len(deg) > n else deg[:n], ref[:n], mode="full", method="fft")
        zero = n - 1  # index of lag 0 in the 'full' output
        lo, hi = max(0, zero - max_lag), min(len(full), zero + max_lag + 1)
        lag = int(np.argmax(full[lo:hi]) + lo - zero)
    if lag > 0:
        deg = deg[lag:]
    elif lag < 0:
        deg = np.concatenate([np.zeros(-lag, dtype=deg.dtype), deg])
    out = np.zeros(len(ref), dtype=np.float32)
    m = min(len(ref), len(deg))
    out[:m] = deg[:m]
    return out, lag


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    from pesq import pesq

    try:
        return float(pesq(16000, resample(ref, sr, 16000), resample(deg, sr, 16000), "wb"))
    except Exception:  # silent or too short input: the package raises; the caller averages with nanmean
        return math.nan


def pesq_nb(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    from pesq import pesq

    try:
        return float(pesq(8000, resample(ref, sr, 8000), resample(deg, sr, 8000), "nb"))
    except Exception:
        return math.nan


def stoi(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    from pystoi import stoi as _stoi

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(_stoi(ref, deg, sr, extended=False))
    except Exception:
        return math.nan
    return math.nan if value <= 1e-5 else value  # pystoi's "too few speech frames" sentinel → missing


@functools.lru_cache(maxsize=4)
def _mel(sr: int):
    import torchaudio

    hop = 256 * sr // 16000
    return torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=4 * hop, hop_length=hop, n_mels=80,
                                                power=1.0)


def mel_distance(ref: np.ndarray, deg: np.ndarray, sr: int) -> float:
    """Mean |log mel(ref) − log mel(deg)| over frames and 80 bins (natural log, magnitude mel)."""
    n = min(len(ref), len(deg))
    if n < 256:
        return math.nan
    mel = _mel(sr)
    with torch.no_grad():
        a = torch.log(mel(torch.from_numpy(np.ascontiguousarray(ref[:n]))).clamp_min(1e-5))
        b = torch.log(mel(torch.from_numpy(np.ascontiguousarray(deg[:n]))).clamp_min(1e-5))
    return float((a - b).abs().mean())
