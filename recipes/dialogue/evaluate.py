"""Teacher-forced scores of a dialogue model on token files: per-stream cross-entropy and accuracy
with every previous token given, on held-out conversations next to (a sample of) the training ones.

    python -m recipes.dialogue.evaluate --model exp/dialogue/model.safetensors \
        --tokens exp/tokens/test.safetensors exp/tokens/train.safetensors --max-conversations 200

The gap between the two rows separates generalisation from memorisation; the free-running scores
(`recipes.dialogue.score`) add what sampling its own history costs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dialogue import LossWeights, duplex_loss, load_dialogue

from .prepare import TokenSet
from .task import collate


@torch.inference_mode()
def teacher_forced(model, data: TokenSet, max_conversations: int = 0, batch_size: int = 8) -> dict[str, float]:
    """Scalars of `duplex_loss` averaged over whole conversations (weighted by their real steps)."""
    n = len(data) if max_conversations <= 0 else min(len(data), max_conversations)
    if n == 0:
        raise ValueError(f"{data.path}: no conversations")
    if data.streams != model.cfg.streams:
        raise ValueError(f"{data.path}: its streams {data.streams} are not the model's {model.cfg.streams}")
    totals: dict[str, float] = {}
    weight = 0
    for start in range(0, n, batch_size):
        batch = collate(data, list(range(start, min(n, start + batch_size))), model.cfg, crop_steps=10**9)
        logits = model(batch["tokens"], batch["user_voice"], batch["system_voice"])
        _, scalars = duplex_loss(model, logits, batch["tokens"], batch["mask"], LossWeights(), batch.get("user_text"))
        w = int(batch["mask"].sum())
        for k, v in scalars.items():
            totals[k] = totals.get(k, 0.0) + v * w
        weight += w
    return {k: v / weight for k, v in totals.items()} | {"conversations": n}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--tokens", type=Path, nargs="+", required=True, help="token files (recipes.dialogue.prepare)")
    p.add_argument("--max-conversations", type=int, default=0, help="first N of each file (0: all)")
    p.add_argument("--out", type=Path, default=None, help="also write the scores as JSON")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = load_dialogue(args.model)
    model = bundle.model.eval()
    rows = {}
    for path in args.tokens:
        data = TokenSet(path)
        if data.codec_id != bundle.codec_id:
            raise SystemExit(f"{path}: tokens of codec {data.codec_id}, {args.model} was trained on {bundle.codec_id}")
        rows[str(path)] = teacher_forced(model, data, args.max_conversations)
    keys = ["loss/text", "acc/text", "acc/text_words", "loss/system", "acc/system"]
    if model.cfg.user_text_delay is not None:
        keys += ["acc/user_text_words"]
    print("| tokens | conversations | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for path, r in rows.items():
        print(f"| {path} | {r['conversations']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
