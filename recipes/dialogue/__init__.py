"""The full-duplex dialogue recipe: synthetic two-channel corpus (`synth`, `tasks`), grids and
tokenizer (`prepare`), the training task (`task`, `train`) and the turn-taking scorer (`turns`,
`score`). Driven by egs/mini/dialogue1/run.sh."""
from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml

from codec.config_io import ConfigError, load, merge

T = TypeVar("T")


def load_configs(cls: type[T], paths: list[Path], overrides: dict | None = None) -> T:
    """The first file is the base config (or the dataclass defaults when `paths` is empty); each
    further file is a delta merged on top (DAC-style includes), then the `--set` overrides."""
    cfg = load(cls, paths[0]) if paths else cls()
    for path in paths[1:]:
        try:
            delta = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config delta ({e})") from e
        cfg = merge(cfg, delta)
    return merge(cfg, overrides or {})
