"""Learning curve of a codec training stage on the validation speakers, so anyone can see whether more compute
would still pay.

    python -m recipes.codec.curve --train-dir exp/vocoder --data data/real_valid --path vocoder --every 2000 [--watch]
    python -m recipes.codec.curve --train-dir exp/semantic --data data/real_valid --path codec --vocoder exp/vocoder/step-N

Every checkpoint `step-N/` of the training dir whose N is a multiple of `--every` (and not scored yet) is loaded
into a codec and scored by the one scorer (`recipes.score`) on `--data`: `--path vocoder` scores the vocoder on
the true mel, `autoencoder` the mel autoencoder, `codec` the whole codec (the semantic stage's with `--vocoder`, a
trained vocoder's checkpoint: its own is untrained). A row
(step, PESQ-WB/NB, STOI, mel distance, WER) is appended to `<train-dir>/curve_<data>.jsonl` and its PNG is redrawn.
With `--watch` it polls for new checkpoints until the stage's `.done` appears (the trainer keeps only the
newest checkpoints, so a watcher beside a long run catches each one).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from codec.api import Codec
from codec.config_io import from_dict
from codec.model import SpeechCodec

from ..score import score_codec
from ..score.stages import STAGES, CodecStage
from .task import stage_codec_state
from .train_config import CodecTrainConfig

__all__ = ["checkpoint_codec", "score_checkpoints"]

FIELDS = ("pesq_wb", "pesq_nb", "stoi", "mel_dist", "wer", "wer_ref", "num_utts")


def checkpoint_codec(train_dir: Path, step_dir: Path, vocoder: Path | None = None) -> Codec:
    """A training checkpoint (CodecTrainingModel weights) → a Codec, its vocoder from `vocoder` when given; what
    the stage did not train stays as the stage left it (random for parts it never saw)."""
    import yaml

    cfg = from_dict(CodecTrainConfig, yaml.safe_load((train_dir / "config.yaml").read_text()))
    model = SpeechCodec(cfg.codec_config())
    missing, unexpected = model.load_state_dict(stage_codec_state(step_dir, vocoder), strict=False)
    if unexpected or len(missing) == len(model.state_dict()):
        raise ValueError(f"{step_dir}: not a codec training checkpoint (unexpected {unexpected[:3]}, "
                         f"{len(missing)} missing)")
    return Codec(model.eval(), codec_id=f"{train_dir.name}-{step_dir.name}")


def _scored(curve: Path) -> set[int]:
    return {json.loads(line)["step"] for line in curve.read_text().splitlines()} if curve.is_file() else set()


def _plot(curve: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((json.loads(line) for line in curve.read_text().splitlines()), key=lambda r: r["step"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key in zip(axes, ("pesq_wb", "stoi", "wer")):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{curve.parent.name}: {rows[0]['path']} on {rows[0]['data']}" if rows else curve.parent.name)
    fig.tight_layout()
    fig.savefig(curve.with_suffix(".png"), dpi=100)
    plt.close(fig)


def score_checkpoints(train_dir: Path, data: Path, path: str, every: int, max_utts: int | None = None,
                      vocoder: Path | None = None) -> list[dict]:
    curve = train_dir / f"curve_{Path(data).name}.jsonl"
    done, rows = _scored(curve), []
    steps = sorted((int(d.name.split("-")[1]), d) for d in train_dir.glob("step-*")
                   if d.name.split("-")[1].isdigit() and (d / "model.safetensors").is_file())
    for step, step_dir in steps:
        if step in done or step % every:
            continue
        codec = checkpoint_codec(train_dir, step_dir, vocoder)
        system = codec if path == "codec" else CodecStage(codec, path)
        with torch.inference_mode():
            (row,) = score_codec(data, codec=system, out_dir=None, baselines=(), max_utts=max_utts, probe=False,
                                 progress=False)
        out = {"step": step, "path": path, "data": str(data), **{k: row.get(k) for k in FIELDS}}
        with open(curve, "a") as f:
            f.write(json.dumps(out) + "\n")
        rows.append(out)
        print(json.dumps(out), flush=True)
    if rows:
        _plot(curve)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-dir", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="validation speakers (a Kaldi dir)")
    p.add_argument("--path", choices=STAGES + ("codec",), default="vocoder")
    p.add_argument("--every", type=int, default=2000)
    p.add_argument("--max-utts", type=int, default=None)
    p.add_argument("--vocoder", type=Path, default=None, help="a vocoder checkpoint (step-N/) the codec takes")
    p.add_argument("--watch", action="store_true", help="poll until <train-dir>/.done exists")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    while True:
        score_checkpoints(args.train_dir, args.data, args.path, args.every, args.max_utts, args.vocoder)
        if not args.watch or (args.train_dir / ".done").is_file():
            return 0
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(main())
