"""The dialogue corpus's splits: which users, phrasings and task instances a split may contain.

A dialogue figure means something only on conversations that hold out what a user brings (DESIGN.md, "Splits").
Three things are split here, each fixed in a committed file:

- user voices: TTS base voices by `recipes/speaker_splits.yaml` (`recipes.synth.speakers`), the system's own voice
  (flite slt and its festival twin) left out of the users; real readers by the same file (`recipes.real_speech`);
- task instances (arithmetic entries, count ranges, words to spell, questions outside the system's knowledge) and
  question templates, by `heldout.yaml` beside this module (anything it does not name is train).

Recordings: TTS engines are deterministic, so the same words in the same voice at the same factors are the same
waveform. Every split draws its pitch and rate factors (the user's and the system's) on a grid of its own: hundredths
whose remainder modulo 3 is the split's index (`grid_factor`), so no clip of one split is a clip of another.

    from recipes.dialogue.heldout import load_heldout
    held = load_heldout()
    held.instance_split("arithmetic", "three plus one")    # 'test'
"""
from __future__ import annotations

import dataclasses
import functools
import random
from pathlib import Path

import yaml

from ..splits import SPLITS, check_disjoint, load_splits
from .tasks import (ARITHMETIC_TABLE, COUNT_LENGTHS, NUMBERS, SPELL_WORDS, Exchange, draw_exchange, spelling_exchange,
                    unknown_exchange)

__all__ = ["HeldOut", "load_heldout", "HELDOUT_FILE", "instance_key", "grid_factor", "user_voices", "draw_held_exchange",
           "SYSTEM_VOICES"]

HELDOUT_FILE = Path(__file__).with_name("heldout.yaml")
TASKS_WITH_INSTANCES = ("arithmetic", "counting", "spelling", "facts", "unknown")
SYSTEM_VOICES = {("flite", "slt", ""), ("festival", "cmu_us_slt_arctic_hts", "")}  # the system's reader: no user


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Held-out instances and phrasings. instances: task → split → instance keys (`instance_key`); for
    arithmetic and counting only valid and test are listed (the rest of the table is train); phrasings: task →
    split → templates."""

    instances: dict[str, dict[str, tuple[str, ...]]]
    phrasings: dict[str, dict[str, tuple[str, ...]]]

    def __post_init__(self) -> None:
        for kind, table in (("instance", self.instances), ("phrasing", self.phrasings)):
            for task, splits in table.items():
                check_disjoint(splits, HELDOUT_FILE.name, kind, of=task)
        for e in self.instances["arithmetic"].get("valid", ()) + self.instances["arithmetic"].get("test", ()):
            if e not in _ARITHMETIC_KEYS:
                raise ValueError(f"{HELDOUT_FILE.name}: arithmetic {e!r} is not an entry of tasks.ARITHMETIC_TABLE")

    def instance_split(self, task: str, key: str) -> str:
        """The split an instance belongs to (train when the file does not name it)."""
        for split, names in self.instances.get(task, {}).items():
            if key in names:
                return split
        if task in ("spelling", "unknown"):
            if task == "spelling" and key in SPELL_WORDS:
                return "train"
            raise KeyError(f"{HELDOUT_FILE.name}: {task} instance {key!r} is in no split")
        return "train"

    def pool(self, task: str, split: str) -> tuple[str, ...]:
        """Every instance of a listed task (spelling, unknown) in `split`."""
        names = self.instances[task].get(split, ())
        return tuple(SPELL_WORDS) + names if task == "spelling" and split == "train" else names


_ARITHMETIC_KEYS = {f"{NUMBERS[a]} {op} {NUMBERS[b]}" for a, op, b in ARITHMETIC_TABLE}


@functools.lru_cache(maxsize=4)
def load_heldout(path: str | Path = HELDOUT_FILE) -> HeldOut:
    raw = yaml.safe_load(Path(path).read_text())
    instances = {task: {k: tuple(v) for k, v in raw[task].items()} for task in ("arithmetic", "counting", "spelling",
                                                                                  "unknown")}
    phrasings = {task: {k: tuple(v) for k, v in splits.items()} for task, splits in raw["phrasings"].items()}
    return HeldOut(instances, phrasings)


def instance_key(ex: Exchange) -> str:
    """What an exchange asks, as heldout.yaml names it: "three plus one", "four nine" (a count), "cat", a question."""
    slots = dict(ex.slots)
    if ex.task == "arithmetic":
        return slots["e"]
    if ex.task == "counting":
        return f"{slots['a']} {slots['b']}"
    return slots["w"] if ex.task == "spelling" else slots["q"]


def draw_held_exchange(task: str, rng: random.Random, held: HeldOut, instances: str, phrasings: str,
                       arithmetic_entries: str = "uniform", counting_reply: str = "sequence",
                       count_lengths=COUNT_LENGTHS) -> Exchange:
    """One exchange of `task` whose instance is of split `instances` and whose question is phrased with a template of
    split `phrasings` (both "train", "valid" or "test"). Arithmetic and counting are drawn as `tasks.draw_exchange`
    draws them until the instance is of the split; words to spell and unknown questions from the split's list."""
    if task == "spelling":
        ex = spelling_exchange(rng.choice(held.pool("spelling", instances)))
    elif task == "unknown":
        ex = unknown_exchange(rng.choice(held.pool("unknown", instances)))
    elif task == "facts":
        if instances != "train":
            raise ValueError(f"facts have no {instances} instances: a fact the system was never told is an unknown "
                             f"question (task 'unknown')")
        ex = draw_exchange(task, rng)
    else:
        for _ in range(10_000):
            ex = draw_exchange(task, rng, arithmetic_entries, counting_reply, count_lengths)
            if held.instance_split(task, instance_key(ex)) == instances:
                break
        else:
            raise ValueError(f"no {task} instance of split {instances} among the draws (count_lengths {count_lengths}?)")
    templates = held.phrasings["facts" if task == "unknown" else task][phrasings]
    return ex.asked(rng.choice(templates))


def grid_factor(rng: random.Random, lo: float, hi: float, split: str) -> float:
    """A factor drawn uniformly from [lo, hi] onto the split's grid: hundredths n with n % 3 == the split's index
    (train 0, valid 1, test 2), so two splits never draw the same factor."""
    k = SPLITS.index(split)
    grid = [n / 100 for n in range(round(lo * 100), round(hi * 100) + 1) if n % 3 == k]
    if not grid:
        raise ValueError(f"no factor of split {split} in [{lo}, {hi}]")
    return rng.choice(grid)


@functools.lru_cache(maxsize=4)
def user_voices(split: str) -> dict[str, tuple[tuple[str, str, str], ...]]:
    """engine → the installed base voices (engine, voice, variant) of `split` (speaker_splits.yaml), the system's
    voice left out. Every espeak-ng accent × variant is one base voice."""
    from ..synth.speakers import base_voices

    splits = load_splits()
    out: dict[str, list] = {}
    for base in base_voices(num_espeak=0):
        if base not in SYSTEM_VOICES and splits.synthetic_split(*base) == split:
            out.setdefault(base[0], []).append(base)
    if not out:
        raise ValueError(f"no installed TTS voice of split {split} (recipes/install_system_deps.sh)")
    return {engine: tuple(voices) for engine, voices in sorted(out.items())}
