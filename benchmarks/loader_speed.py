"""Is the codec loader off the training step's path? Loader ms per batch against step ms, per stage,
and the step's achieved FLOP rate (MFU) on a GPU.

Builds a synthetic shard (tones + noise, random lengths, 16 kHz) in a temporary directory, then per stage:
  loader ms   one batch cut synchronously (`CodecTask.batches`): what a step would wait for inline
  step ms     losses + backward + AdamW on a batch already on the device (bf16 autocast on CUDA)
  MFU         the step's FLOPs (torch's FlopCounterMode: matmuls and convolutions) per second over the
              device's dense bf16 peak (known GPUs only)
  syncs       host syncs in one step, counted by torch.cuda.set_sync_debug_mode (CUDA only)
  train ms    wall time per step of `recipes.trainer.train` over its last log interval (loader,
              logging and all), and the part of it the loop waited for a batch (`time/loader_wait_ms`)

    OMP_NUM_THREADS=1 python benchmarks/loader_speed.py [--batch 32] [--frames 96] [--steps 8] [--minutes 30]
        [--stages autoencoder semantic vocoder finetune]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.codec.shards import build_shard  # noqa: E402
from recipes.codec.task import CodecTask, CodecTrainConfig  # noqa: E402
from recipes.trainer import TrainerConfig, _to_device, train  # noqa: E402

# dense bf16 tensor-core peaks, TFLOP/s, by a substring of the device name
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
SR, HOP = 16000, 256


def synthetic_shard(path: Path, minutes: float, longest: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    utts, total = [], 0
    while total < minutes * 60 * SR:
        n = int(rng.uniform(2, longest) * SR)
        t = np.arange(n) / SR
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(90, 300) * t) + 0.02 * rng.standard_normal(n)
        labels = rng.integers(0, 5, n // HOP)
        utts.append((f"u{len(utts):05d}", f"s{len(utts) % 20}", wav.astype(np.float32), labels))
        total += n
    build_shard(utts, ["sil", "a", "b", "c", "d"], SR, HOP).save(path)


def mean_ms(fn, n: int, device: torch.device) -> float:
    fn()  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return 1000 * (time.perf_counter() - t) / n


def peak_flops(device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_BF16_TFLOPS.items() if k in name), float("nan"))


def last_scalars(run: Path, tags: list[str]) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted((run / "tensorboard").glob("events.*"))
    if not events:
        return {}
    acc = EventAccumulator(str(events[-1]))
    acc.Reload()
    return {t: acc.Scalars(t)[-1].value for t in tags if t in acc.Tags()["scalars"]}


def bench_stage(shard: Path, out: Path, stage: str, args, device: torch.device) -> dict:
    cfg = CodecTrainConfig(stage=stage, shard=str(shard), batch_size=args.batch, segment_frames=args.frames,
                           ref_frames=args.frames, adversarial_start=0,
                           trainer=TrainerConfig(max_steps=args.steps, warmup_steps=1, log_every=max(1, args.steps // 2),
                                                 checkpoint_every=10**9))
    task = CodecTask(cfg)
    it = task.batches(0, 0, 1)
    loader = mean_ms(lambda: next(it), 20, torch.device("cpu"))
    model = task.build_model().to(device)
    groups = task.parameter_groups(model)
    opts = {k: torch.optim.AdamW(v, lr=1e-4) for k, v in groups.items()}
    batch = _to_device(next(task.batches(0, 0, 1)), device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext

    def step():
        with autocast():
            for term in task.losses(model, batch, 0):
                opts[term.group].zero_grad(set_to_none=True)
                term.loss.backward()
                opts[term.group].step()

    step_ms = mean_ms(step, max(2, args.steps // 2), device)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    syncs = float("nan")
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
        torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    train(task, cfg.trainer, out / stage, progress=False)
    t = last_scalars(out / stage, ["time/step_ms", "time/loader_wait_ms"])
    return {"stage": stage, "loader": loader, "step": step_ms, "gflop": flops / 1e9,
            "mfu": flops / (step_ms / 1000) / peak_flops(device), "train": t.get("time/step_ms", float("nan")),
            "wait": t.get("time/loader_wait_ms", float("nan")), "syncs": syncs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--minutes", type=float, default=30.0, help="audio in the synthetic shard")
    p.add_argument("--longest", type=float, default=20.0, help="longest utterance, seconds (from 2 s, uniform)")
    p.add_argument("--stages", nargs="+", default=["autoencoder", "semantic"])
    args = p.parse_args()
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "train.safetensors"
        synthetic_shard(shard, args.minutes, args.longest)
        where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"shard: {args.minutes:g} min of 16 kHz audio in 2–{args.longest:g} s utterances, "
              f"{shard.stat().st_size / 1e6:.1f} MB; batch {args.batch} × {args.frames} frames; {where}")
        print(f"{'stage':12s} {'loader ms':>10s} {'step ms':>9s} {'loader/step':>12s} {'GFLOP/step':>11s} {'MFU':>7s} "
              f"{'syncs':>6s} {'train ms/step':>14s} {'waited ms/step':>15s} {'loader share':>13s}")
        for stage in args.stages:
            r = bench_stage(shard, Path(tmp), stage, args, device)
            na = lambda v, fmt: "n/a" if np.isnan(v) else format(v, fmt)
            print(f"{r['stage']:12s} {r['loader']:10.1f} {r['step']:9.1f} {r['loader'] / r['step']:11.0%} "
                  f"{r['gflop']:11.1f} {na(r['mfu'], '.2%'):>7s} {na(r['syncs'], '.0f'):>6s} {r['train']:14.1f} "
                  f"{r['wait']:15.1f} {r['wait'] / r['train']:12.1%}")


if __name__ == "__main__":
    main()
