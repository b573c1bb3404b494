"""Train one codec stage.

    torchrun --nproc_per_node=1 -m recipes.codec.train --config conf/stage1_autoencoder.yaml \
        --out exp/codec/stage1 [--set trainer.max_steps=200 batch_size=4]

Resumes from the newest complete checkpoint in --out; `init_from` in the config seeds a new stage
from the previous stage's checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from ..cli_config import training_config, training_parser
from ..trainer import train
from .task import CodecTask, CodecTrainConfig


def main(argv=None) -> None:
    p = training_parser(__doc__.split("\n")[0])
    args = p.parse_args(argv)
    cfg = training_config(CodecTrainConfig, args)
    train(CodecTask(cfg), cfg.trainer, args.out, init_from=Path(cfg.init_from) if cfg.init_from else None,
          progress=not args.no_progress)


if __name__ == "__main__":
    main()
