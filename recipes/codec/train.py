"""Train one codec stage.

    torchrun --nproc_per_node=1 -m recipes.codec.train --config conf/stage1_autoencoder.yaml \
        --out exp/codec/stage1 [--set trainer.max_steps=200 batch_size=4]

Resumes from the newest complete checkpoint in --out; `init_from` in the config seeds a new stage
from the previous stage's checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from ..cli_config import load_configs, parse_overrides
from ..trainer import train
from .task import CodecTask, CodecTrainConfig


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, nargs="+", required=True,
                   help="base config, then optional delta files applied in order (e.g. conf/tiny.yaml)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cfg = load_configs(CodecTrainConfig, args.config, parse_overrides(args.set))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    train(CodecTask(cfg), cfg.trainer, args.out, init_from=Path(cfg.init_from) if cfg.init_from else None,
          progress=not args.no_progress)


if __name__ == "__main__":
    main()
