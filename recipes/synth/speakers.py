"""Pseudo-speakers: (engine, voice, variant, pitch, rate) tuples with stable ids.

A "base voice" is what an engine can actually sound like (a flite voice, a festival voice, an
espeak-ng accent + variant); pitch and rate factors multiply it into many pseudo-speakers.
`make_speakers` holds out whole base voices (every pitch/rate copy of them) so the held-out set
measures generalisation to unseen voices, not to unseen pitch settings of seen ones. Engines
that cannot move a voice's pitch (festival HTS, flite rms) get rate variants only.
"""
from __future__ import annotations

import dataclasses
import random

from . import espeak, festival, flite

__all__ = ["Speaker", "SpeakerSplit", "make_speakers", "split_speakers", "available_engines", "base_voices"]

ENGINES = ("flite", "festival", "espeak")


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One pseudo-speaker. pitch, rate: factors on the voice's default F0 and speaking rate."""

    engine: str
    voice: str
    pitch: float = 1.0
    rate: float = 1.0
    variant: str = ""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}, expected one of {ENGINES}")
        if not (0.5 <= self.pitch <= 2.0 and 0.5 <= self.rate <= 2.0):
            raise ValueError(f"pitch/rate factors must lie in [0.5, 2], got {self.pitch}, {self.rate}")

    @property
    def id(self) -> str:
        """Stable Kaldi speaker id, e.g. `espeak_en-us+m3_p110_r095` (fixed-width factors, so no
        id is a prefix of another)."""
        voice = f"{self.voice}+{self.variant}" if self.variant else self.voice
        return f"{self.engine}_{voice}_p{round(self.pitch * 100):03d}_r{round(self.rate * 100):03d}"

    @property
    def base_voice(self) -> str:
        return f"{self.engine}:{self.voice}" + (f"+{self.variant}" if self.variant else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"id": self.id}

    @classmethod
    def from_id(cls, spk_id: str) -> "Speaker":
        head, p, r = spk_id.rsplit("_", 2)
        engine, voice = head.split("_", 1)
        variant = ""
        if "+" in voice:
            voice, variant = voice.split("+", 1)
        return cls(engine, voice, int(p[1:]) / 100, int(r[1:]) / 100, variant)


@dataclasses.dataclass
class SpeakerSplit:
    train: list[Speaker]
    heldout: list[Speaker]

    @property
    def all(self) -> list[Speaker]:
        return self.train + self.heldout


def available_engines() -> dict[str, tuple[bool, str]]:
    """engine → (usable, how / why not)."""
    return {"flite": flite.available(), "festival": festival.available(), "espeak": espeak.available()}


def base_voices(engines=None, num_espeak: int = 24, seed: int = 0) -> list[tuple[str, str, str]]:
    """(engine, voice, variant) of every base voice to use; espeak's accent × variant grid is
    sampled down to `num_espeak` pairs (deterministic in `seed`; 0: all of them)."""
    engines = [e for e in ENGINES if e in set(engines)] if engines is not None else \
        [e for e, (ok, _) in available_engines().items() if ok]
    out: list[tuple[str, str, str]] = []
    if "flite" in engines:
        out += [("flite", v, "") for v in flite.VOICES]
    if "festival" in engines:
        out += [("festival", v, "") for v in festival.installed_voices()]
    if "espeak" in engines:
        grid = [("espeak", a, v) for a in espeak.ACCENTS for v in espeak.list_variants()]
        out += grid if num_espeak <= 0 else sorted(random.Random(f"espeak-{seed}").sample(grid, min(num_espeak, len(grid))))
    return out


def _pitch_controllable(engine: str, voice: str) -> bool:
    if engine == "flite":
        return flite.PITCH_CONTROL[voice]
    if engine == "festival":
        return festival.PITCH_CONTROL[voice]
    return True


def make_speakers(seed: int = 0, variants_per_voice: int = 3, num_espeak: int = 24,
                  heldout_fraction: float = 0.25, engines=None,
                  pitch_range: tuple[float, float] = (0.8, 1.25),
                  rate_range: tuple[float, float] = (0.85, 1.2)) -> SpeakerSplit:
    """Many pseudo-speakers, split into train and held-out *voices*.

    Every base voice gets `variants_per_voice` speakers: the first at its own pitch and rate
    (1.0, 1.0), the others with factors drawn from the ranges (pitch fixed at 1.0 where the
    engine cannot change it). Held out: flite awb, festival ked_diphone and a `heldout_fraction`
    of the espeak base voices (at least one each time an engine contributes ≥ 2 voices).
    Deterministic in `seed` and the set of installed engines/voices.
    """
    rng = random.Random(seed)
    voices = base_voices(engines, num_espeak, seed)
    fixed_heldout = {("flite", "awb", ""), ("festival", "ked_diphone", "")}
    esp = [v for v in voices if v[0] == "espeak"]
    n_esp = max(1, round(heldout_fraction * len(esp))) if len(esp) >= 2 else 0
    heldout_voices = fixed_heldout | set(random.Random(f"heldout-{seed}").sample(esp, n_esp))
    train, heldout = [], []
    for base in voices:
        (heldout if base in heldout_voices else train).extend(
            _pseudo_speakers(base, rng, variants_per_voice, pitch_range, rate_range))
    return SpeakerSplit(train, heldout)


def _pseudo_speakers(base: tuple[str, str, str], rng: random.Random, count: int, pitch_range, rate_range) -> list[Speaker]:
    """`count` speakers of one base voice: the first at its own pitch and rate, the others drawn from the ranges."""
    engine, voice, variant = base
    can_pitch = _pitch_controllable(engine, voice)
    out: list[Speaker] = []
    for k in range(count):
        for _ in range(20):  # redraw on an id collision (rounding to whole percent)
            pitch = 1.0 if k == 0 or not can_pitch else rng.uniform(*pitch_range)
            rate = 1.0 if k == 0 else rng.uniform(*rate_range)
            spk = Speaker(engine, voice, round(pitch, 2), round(rate, 2), variant)
            if spk.id not in {o.id for o in out}:
                break
        out.append(spk)
    return out


def split_speakers(splits, seed: int = 0, variants_per_voice: int = 2, engines=None,
                   pitch_range: tuple[float, float] = (0.8, 1.25),
                   rate_range: tuple[float, float] = (0.85, 1.2)) -> dict[str, list[Speaker]]:
    """Every installed base voice (every espeak-ng accent × variant) as pseudo-speakers, grouped by the split
    that `splits` (recipes.splits.SpeakerSplits) gives its base voice: train, valid, test."""
    rng = random.Random(seed)
    out: dict[str, list[Speaker]] = {"train": [], "valid": [], "test": []}
    for base in base_voices(engines, num_espeak=0, seed=seed):
        out[splits.synthetic_split(*base)].extend(
            _pseudo_speakers(base, rng, variants_per_voice, pitch_range, rate_range))
    return out
