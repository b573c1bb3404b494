"""Train the full-duplex dialogue model, then export it as one dialogue checkpoint.

    torchrun --nproc_per_node=1 -m recipes.dialogue.train --config conf/train.yaml --out exp/dialogue \
        [--set trainer.max_steps=20 batch_size=2]

Resumes from the newest complete checkpoint in --out (the shared trainer's step-N/ directories);
when training is done rank 0 writes --out/model.safetensors (weights + tokenizer + G_sys + config +
codec id), which `python -m dialogue.demo --model` loads.
"""
from __future__ import annotations

import os

from ..cli_config import training_config, training_parser
from ..checkpoint import latest_checkpoint, load_checkpoint
from ..trainer import train
from .task import DialogueTask, DialogueTrainConfig, export


def main(argv=None) -> None:
    p = training_parser(__doc__.split("\n")[0])
    p.add_argument("--export-only", action="store_true",
                   help="skip training: export the newest checkpoint in --out (e.g. of a run still going)")
    args = p.parse_args(argv)
    cfg = training_config(DialogueTrainConfig, args)
    task = DialogueTask(cfg)
    if args.export_only:
        ckpt = latest_checkpoint(args.out)
        if ckpt is None:
            raise SystemExit(f"{args.out}: no checkpoint to export")
        model = task.build_model()
        steps = load_checkpoint(ckpt, model)["step"]
    else:
        model = train(task, cfg.trainer, args.out, progress=not args.no_progress)
        steps = cfg.trainer.max_steps
    if int(os.environ.get("RANK", "0")) == 0:
        export(task, model.cpu().eval(), args.out / "model.safetensors",
               f"{cfg.model.name}: {steps} of {cfg.trainer.max_steps} steps on {' + '.join([cfg.tokens, *cfg.more_tokens])}{task.lineage()}")
        print(f"{args.out / 'model.safetensors'}: exported ({steps} steps)")


if __name__ == "__main__":
    main()
