"""Train the CTC forced aligner on Kaldi data dirs with transcripts.

    torchrun --nproc_per_node=1 -m recipes.align.train --config conf/aligner.yaml --out exp/aligner \
        [--set data=[data/train] trainer.max_steps=200]

Resumes from the newest checkpoint in --out. When training ends, rank 0 writes the self-contained
`--out/aligner.safetensors` (weights + AlignerConfig) that `python -m recipes.align.align --model`
takes.
"""
from __future__ import annotations

import os

from ..cli_config import training_config, training_parser
from ..trainer import train
from .model import save_aligner
from .task import AlignerTask, AlignerTrainConfig


def main(argv=None) -> None:
    p = training_parser(__doc__.split("\n")[0])
    args = p.parse_args(argv)
    cfg = training_config(AlignerTrainConfig, args)
    model = train(AlignerTask(cfg), cfg.trainer, args.out, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        path = save_aligner(model, args.out / "aligner.safetensors", extra={"steps": cfg.trainer.max_steps,
                                                                             "data": cfg.data})
        print(f"{path}: aligner ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
              f"{1 / cfg.model.frame_seconds:.0f} frames/s)")


if __name__ == "__main__":
    main()
