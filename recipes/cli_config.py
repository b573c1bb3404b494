"""Config loading shared by every recipe entry point: a base YAML, delta files merged in order
(DAC-style includes), then `--set key.sub=value` overrides, all validated by the dataclass."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TypeVar

import yaml

from codec.config_io import ConfigError, load, merge

T = TypeVar("T")


def parse_overrides(items: list[str]) -> dict:
    """["trainer.max_steps=200", "stage=semantic"] → nested dict (values parsed as YAML scalars)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def load_configs(cls: type[T], paths: list[Path], overrides: dict | None = None) -> T:
    """The first file is the base config (or the dataclass defaults when `paths` is empty); each
    further file is a delta merged on top, then the `--set` overrides."""
    cfg = load(cls, paths[0]) if paths else cls()
    for path in paths[1:]:
        try:
            delta = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config delta ({e})") from e
        cfg = merge(cfg, delta)
    return merge(cfg, overrides or {})


def training_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every `recipes.*.train` entry point takes: --config (base, then deltas), --out,
    --set overrides, --no-progress. Entry points add their own on top."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", type=Path, nargs="+", required=True, help="base config, then deltas applied in order")
    p.add_argument("--out", type=Path, required=True, help="training directory (checkpoints, TensorBoard, export)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    return p


def training_config(cls: type[T], args: argparse.Namespace) -> T:
    """Load the run's config from `training_parser` arguments and record it as --out/config.yaml."""
    cfg = load_configs(cls, args.config, parse_overrides(args.set))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    return cfg
