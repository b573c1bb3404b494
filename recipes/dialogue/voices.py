"""Who the user of a synthetic conversation is: a TTS voice at its own pitch and rate (`Voice`, drawn from a split's
voices by `draw_user_voice`), the microphone it is heard through (level, light noise), or a real reader of a
`recipes.real_speech` split dir; and the hash that names a recording (`recording_hash`), so a test can show that no
recording is in two splits (recipes/dialogue/heldout.py).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import random

import numpy as np

from ..datadir import DataDir
from ..synth.flite import synthesize
from .heldout import grid_factor, user_voices

__all__ = ["Voice", "recording_hash", "synthesize_voice", "resample", "draw_user_voice", "user_channel_conditions",
           "real_readers"]


@dataclasses.dataclass(frozen=True)
class Voice:
    """A TTS voice as a conversation speaks it: engine, voice, variant and this conversation's pitch and rate
    factors (a style's factors multiply them)."""

    engine: str = "flite"
    name: str = "kal16"
    variant: str = ""
    pitch: float = 1.0
    rate: float = 1.0

    @property
    def id(self) -> str:
        from ..synth.speakers import Speaker

        return Speaker(self.engine, self.name, self.pitch, self.rate, self.variant).id


def recording_hash(audio: np.ndarray) -> str:
    """A recording's identity: the hash of its samples as float32 (the same TTS words, voice and factors, or the same
    real prompt, give the same hash)."""
    return hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()[:20]


def synthesize_voice(text: str, voice: Voice, rate: float, pitch: float):
    if voice.engine == "flite":
        return synthesize(text, voice.name, rate=rate, pitch=pitch)
    from ..synth.corpus import synthesize as synthesize_speaker
    from ..synth.speakers import Speaker

    clamp = lambda x: min(2.0, max(0.5, x))  # noqa: E731
    return synthesize_speaker(Speaker(voice.engine, voice.name, clamp(pitch), clamp(rate), voice.variant), text)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), sr_in, sr_out).numpy()


def draw_user_voice(cfg, rng: random.Random) -> Voice:
    """A user of the corpus's `voices` split: an engine (uniformly, so flite and festival are not drowned by
    espeak-ng's hundreds of accent × variant voices), one of its base voices, and pitch and rate factors on the
    `recordings` split's grid (pitch 1 where the engine cannot move it)."""
    from ..synth.speakers import _pitch_controllable

    voices = user_voices(cfg.voices)
    engine, name, variant = rng.choice(voices[rng.choice(sorted(voices))])
    pitch = grid_factor(rng, *cfg.voice_pitch, cfg.recordings)
    return Voice(engine, name, variant, pitch if _pitch_controllable(engine, name) else 1.0,
                 grid_factor(rng, *cfg.voice_rate, cfg.recordings))


def user_channel_conditions(cfg, rng: random.Random, audio: np.ndarray) -> dict:
    """The user's microphone, in place on `audio`'s row 0: a level (`user_gain_db`) and, with probability `p_noise`,
    white noise at an SNR from `noise_snr_db` (relative to the channel's speech). Returns what was drawn."""
    gain_db = rng.uniform(*cfg.user_gain_db)
    audio[0] *= 10 ** (gain_db / 20)
    snr = None
    if rng.random() < cfg.p_noise:
        snr = rng.uniform(*cfg.noise_snr_db)
        speech = audio[0][np.abs(audio[0]) > 1e-4]
        level = float(np.sqrt(np.mean(speech ** 2))) if len(speech) else cfg.rms
        noise = np.random.default_rng(rng.randrange(2**32)).standard_normal(audio.shape[1]).astype(np.float32)
        audio[0] += noise * level * 10 ** (-snr / 20)
    np.clip(audio, -1, 1, out=audio)
    return {"user_gain_db": gain_db, "noise_snr_db": snr}


@functools.lru_cache(maxsize=4)
def real_readers(real_data: str) -> dict[str, list[tuple[str, str, list[str]]]]:
    """speaker → [(utterance, wav path, transcript words)] of a real-speech split dir."""
    d = DataDir.load(real_data)
    out: dict[str, list] = {}
    for utt in d.utts:
        words = (d.text or {}).get(utt, "").split()
        out.setdefault(d.utt2spk[utt], []).append((utt, str(d.wav_path(utt)), words))
    if not out:
        raise ValueError(f"{real_data}: no real readers (python -m recipes.real_speech --out ...)")
    return out
