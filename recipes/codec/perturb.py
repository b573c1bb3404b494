"""Information perturbation of the semantic branch's input (NANSY, Choi et al. 2021).

The semantic tokens are meant to say *what* is said; the voice vector says *how*. Trained only to
reconstruct, the tokens keep whatever helps, pitch and loudness included (egs/mini/dialogue1/RESULTS.md:
a linear probe reads a pitch-only speaking style from them in 73 % of held-out conversations). Here the
semantic branch hears a copy of the crop with its pitch, pitch range, formants, level and spectral
colour changed at random while it must still reconstruct the clean crop's latent with the clean
voice vector: what it could learn about those from its input is then wrong as often as right, so it
learns to leave them to the voice vector.

Pitch and formants are changed with Praat's PSOLA "Change gender" (through parselmouth, as NANSY did),
which keeps the time axis, so the phone labels and the target frames stay aligned; the colour with
torchaudio's peaking biquads.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import warnings

import numpy as np
import torch
import torchaudio.functional as AF

PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 60.0, 600.0  # Praat's analysis range, wide enough for the corpora's voices


@dataclasses.dataclass
class PerturbationConfig:
    """Ranges of the random changes; each ratio r draws a factor log-uniformly in [1/r, r]."""

    enabled: bool = False
    pitch_ratio: float = 1.8  # the median F0
    pitch_range_ratio: float = 1.5  # the F0 excursions around the median
    formant_ratio: float = 1.15  # formant frequencies (a vocal tract a little longer or shorter)
    gain_db: float = 12.0  # level, uniform in [-g, g] dB
    eq_bands: int = 2  # random peaking filters (centre log-uniform 150 Hz .. 0.4·sr, Q 1..3)
    eq_gain_db: float = 6.0  # each band's gain, uniform in [-g, g] dB
    # pitch twins (twins.py): a shard of the same utterances spoken again by their engine at another pitch; a crop
    # with a twin starts from it with probability `twin_rate`, and then gets only the EQ and level changes
    twin_shard: str | None = None
    twin_rate: float = 0.5

    def __post_init__(self):
        if min(self.pitch_ratio, self.pitch_range_ratio, self.formant_ratio) < 1.0:
            raise ValueError(f"PerturbationConfig: ratios must be >= 1 (1 = unchanged), got pitch_ratio="
                             f"{self.pitch_ratio}, pitch_range_ratio={self.pitch_range_ratio}, "
                             f"formant_ratio={self.formant_ratio}")
        if not 0.0 <= self.twin_rate <= 1.0:
            raise ValueError(f"PerturbationConfig: twin_rate must be in [0, 1], got {self.twin_rate}")
        if self.gain_db < 0 or self.eq_gain_db < 0 or self.eq_bands < 0:
            raise ValueError("PerturbationConfig: gain_db, eq_gain_db and eq_bands must be >= 0")


def _log_uniform(rng: np.random.Generator, ratio: float) -> float:
    return float(math.exp(rng.uniform(-math.log(ratio), math.log(ratio)))) if ratio > 1.0 else 1.0


def change_voice(wav: np.ndarray, sample_rate: int, pitch: float, pitch_range: float, formant: float,
                 seed: int = 0) -> np.ndarray:
    """PSOLA: median F0 × pitch, F0 range × pitch_range, formants × formant; same length and timing.
    Audio without a measurable pitch (silence, unvoiced crops) keeps its pitch and gets only the formant shift;
    audio Praat cannot resynthesise (e.g. a crop with a few voiced frames) comes back unchanged.
    Praat's PSOLA draws random numbers (unvoiced stretches), so its generator is seeded with `seed` first:
    the same arguments give the same audio, which exact training resume needs."""
    import parselmouth
    from parselmouth.praat import call, run

    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    sound = parselmouth.Sound(wav.astype(np.float64), sampling_frequency=sample_rate)
    with warnings.catch_warnings():  # "no voiced segments" on silent crops is expected, not news
        warnings.simplefilter("ignore", parselmouth.PraatWarning)
        f0 = call(sound.to_pitch(pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ), "Get quantile", 0, 0,
                  0.5, "Hertz")
        new_median = 0.0 if not np.isfinite(f0) else float(np.clip(f0 * pitch, PITCH_FLOOR_HZ, PITCH_CEILING_HZ))
        try:
            out = call(sound, "Change gender", PITCH_FLOOR_HZ, PITCH_CEILING_HZ, formant, new_median, pitch_range, 1.0)
        except parselmouth.PraatError:  # a pitch Praat measures but cannot resynthesise (a few voiced frames)
            return wav.astype(np.float32, copy=True)
    y = out.values[0].astype(np.float32)
    if len(y) != len(wav):  # Praat keeps the duration; guard against an off-by-one at the edges
        y = np.pad(y, (0, max(0, len(wav) - len(y))))[: len(wav)]
    return y


class GuardedVoiceChange:
    """`change_voice` in a worker process with a time limit. Praat's "Change gender" never returns on some
    crops and settings (seen at step 1662 of a semantic run: pitch range x1.49 with formants x0.99 on a
    1.6 s voiced crop; the same crop with either factor at 1 returns in 50 ms), and C code that loops cannot
    be interrupted from Python. The worker is killed after `timeout` seconds and started again, and the crop
    comes back unchanged, as for audio Praat cannot resynthesise. A hang is a property of the input, so the
    outcome does not depend on the machine's speed unless a normal call takes `timeout` seconds."""

    def __init__(self, timeout: float = 20.0) -> None:
        self.timeout, self.hangs = timeout, 0
        self._proc = self._conn = None

    def _start(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_voice_change_worker, args=(child, os.getpid()), daemon=True)
        self._proc.start()
        child.close()

    def __call__(self, wav: np.ndarray, sample_rate: int, pitch: float, pitch_range: float, formant: float,
                 seed: int = 0) -> np.ndarray:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        header = {"sample_rate": sample_rate, "pitch": pitch, "pitch_range": pitch_range, "formant": formant,
                  "seed": int(seed)}
        try:  # raw bytes both ways: no pickle
            self._conn.send_bytes(json.dumps(header).encode())
            self._conn.send_bytes(np.ascontiguousarray(wav, dtype=np.float32).tobytes())
            if self._conn.poll(self.timeout):
                return np.frombuffer(self._conn.recv_bytes(), dtype=np.float32).copy()
            why = f"did not return within {self.timeout:g} s"
        except (EOFError, OSError) as e:  # the worker died (a crash inside Praat)
            why = f"stopped its worker ({e!r})"
        self.close()
        self.hangs += 1
        warnings.warn(f"Praat's Change gender {why} (pitch x{pitch:.3f}, range x{pitch_range:.3f}, formants "
                      f"x{formant:.3f}, {len(wav)} samples): the crop stays unchanged")
        return wav.astype(np.float32, copy=True)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
            self._conn.close()
        self._proc = self._conn = None


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux; elsewhere a no-op). A worker caught in
    a Praat call that never returns cannot notice its closed pipe, so a trainer stopped by SIGTERM or
    SIGKILL (which skip the multiprocessing clean-up of daemon children) would leave it spinning forever."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # `parent` died before the request took hold
        os._exit(0)


def _voice_change_worker(conn, parent: int) -> None:
    die_with_parent(parent)
    while True:
        try:
            args = json.loads(conn.recv_bytes())
            wav = np.frombuffer(conn.recv_bytes(), dtype=np.float32)
        except EOFError:
            return
        y = change_voice(wav, args["sample_rate"], args["pitch"], args["pitch_range"], args["formant"], args["seed"])
        conn.send_bytes(np.ascontiguousarray(y, dtype=np.float32).tobytes())


def random_eq(wav: torch.Tensor, sample_rate: int, rng: np.random.Generator, bands: int, gain_db: float) -> torch.Tensor:
    """`bands` random peaking filters (torchaudio biquads) on a 1-D waveform."""
    for _ in range(bands):
        centre = math.exp(rng.uniform(math.log(150.0), math.log(0.4 * sample_rate)))
        wav = AF.equalizer_biquad(wav, sample_rate, centre, float(rng.uniform(-gain_db, gain_db)),
                                  float(rng.uniform(1.0, 3.0)))
    return wav


def perturb(wav: np.ndarray, sample_rate: int, rng: np.random.Generator, cfg: PerturbationConfig,
            change_pitch: bool = True, voice_change=change_voice) -> np.ndarray:
    """One random draw of every change, applied to a 1-D float waveform; same length. Without
    `change_pitch` (the input is already a pitch twin) only the EQ and the level change. `voice_change`:
    `change_voice` or a stand-in with its signature (training uses `GuardedVoiceChange`)."""
    y = wav
    if change_pitch:
        y = voice_change(wav, sample_rate, _log_uniform(rng, cfg.pitch_ratio), _log_uniform(rng, cfg.pitch_range_ratio),
                         _log_uniform(rng, cfg.formant_ratio), seed=int(rng.integers(1, 2**31 - 1)))
    y = random_eq(torch.from_numpy(y), sample_rate, rng, cfg.eq_bands, cfg.eq_gain_db)
    return (y * 10.0 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20.0)).numpy().astype(np.float32)
