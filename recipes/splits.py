"""The committed speaker splits (`speaker_splits.yaml`): which real readers and synthetic voices are train,
validation and test, for the codec and the dialogue alike (DESIGN.md, "Splits").

    from recipes.splits import load_splits
    splits = load_splits()
    splits.real_split("klettres-en")            # 'test'
    splits.synthetic_split("espeak", "en-us", "m5")   # 'test'

A speaker absent from the file is an error for real speech (a new source must be placed by hand) and train
for synthetic voices (the engines' long tail of variants).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

__all__ = ["SPLITS", "SpeakerSplits", "load_splits", "SPLITS_FILE", "check_disjoint"]

SPLITS = ("train", "valid", "test")
SPLITS_FILE = Path(__file__).with_name("speaker_splits.yaml")


def check_disjoint(table: dict[str, tuple[str, ...]], where: str, kind: str, of: str = "") -> None:
    """A {split: names} table names known splits only and no name twice; errors say `where`, what `kind` of name
    it is and, with `of`, whose (e.g. a task's)."""
    seen: dict[str, str] = {}
    owner = f" of {of}" if of else ""
    for split, names in table.items():
        if split not in SPLITS:
            raise ValueError(f"{where}: unknown {kind} split {split!r}{owner}, expected {SPLITS}")
        for name in names:
            if name in seen:
                raise ValueError(f"{where}: {kind} {name!r}{owner} is in both {seen[name]} and {split}")
            seen[name] = split


@dataclasses.dataclass(frozen=True)
class SpeakerSplits:
    real: dict[str, tuple[str, ...]]
    reserved: tuple[str, ...]
    synthetic: dict[str, tuple[str, ...]]  # split → base voices "engine:voice[+variant]" (valid, test)
    espeak_variants: dict[str, tuple[str, ...]]  # split → espeak-ng variants (valid, test)

    def __post_init__(self) -> None:
        for kind, table in (("real", self.real), ("synthetic", self.synthetic),
                            ("espeak variant", self.espeak_variants)):
            check_disjoint(table, "speaker splits", kind)
        clash = set(self.reserved) & {n for names in self.real.values() for n in names}
        if clash:
            raise ValueError(f"speaker splits: reserved sources {sorted(clash)} are assigned to a split")

    def real_split(self, speaker: str) -> str:
        for split, names in self.real.items():
            if speaker in names:
                return split
        raise KeyError(f"real speaker {speaker!r} is in no split of {SPLITS_FILE.name}; place it there by hand")

    def synthetic_split(self, engine: str, voice: str, variant: str = "") -> str:
        base = f"{engine}:{voice}" + (f"+{variant}" if variant else "")
        for split, names in self.synthetic.items():
            if base in names:
                return split
        if engine == "espeak":
            for split, variants in self.espeak_variants.items():
                if variant in variants:
                    return split
        return "train"


def load_splits(path: str | Path = SPLITS_FILE) -> SpeakerSplits:
    raw = yaml.safe_load(Path(path).read_text())
    syn = raw.get("synthetic", {})
    return SpeakerSplits(
        real={k: tuple(raw["real"].get(k, ())) for k in SPLITS},
        reserved=tuple(raw.get("reserved", ())),
        synthetic={k: tuple(syn.get(k, ())) for k in ("valid", "test")},
        espeak_variants={"valid": tuple(syn.get("espeak_valid_variants", ())),
                         "test": tuple(syn.get("espeak_test_variants", ()))})
