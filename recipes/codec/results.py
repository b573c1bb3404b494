"""Collect the scorer's per-set tables into the recipe's RESULTS.md, with the commands that made them.

    python -m recipes.codec.results --scores exp/score --out RESULTS.md --exp exp
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def collect(scores: Path, exp: Path, title: str = "egs/mini/codec1") -> str:
    parts = [f"# Results: {title}\n\nWritten {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
             f"the scoring stage. Every row was measured on the named data with the command shown.\n"]
    for table in sorted(scores.glob("*/RESULTS.md")):
        body = table.read_text().strip()
        parts.append(f"## {table.parent.name}\n\n{body}\n")
    runs = exp / "run_commands.txt"
    if runs.is_file():
        parts.append("## Recipe commands\n\n```\n" + runs.read_text().strip() + "\n```\n")
    for stage in ("autoencoder", "semantic", "vocoder", "finetune"):
        cmd = exp / stage / "cmd.txt"
        if cmd.is_file():
            parts.append(f"### {stage}\n\n```\n{cmd.read_text().strip()}\n```\n")
    return "\n".join(parts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scores", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--title", default="egs/mini/codec1", help="recipe named in the heading")
    args = p.parse_args(argv)
    args.out.write_text(collect(args.scores, args.exp, args.title))


if __name__ == "__main__":
    main()
