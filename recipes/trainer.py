"""The one training loop every Duet recipe uses.

    torchrun --nproc_per_node=1 -m recipes.codec.train --config conf/stage1.yaml --out exp/codec/stage1
    # same command with --nproc_per_node=8 on a GPU node, or --nnodes for several

A recipe supplies a `TrainingTask` (model, optimizer groups, deterministic batches, losses); the
trainer owns everything else: DDP (gloo on CPU, NCCL on GPU), AMP (bf16 on CUDA), gradient clipping,
warm-up + cosine LR, atomic safetensors checkpoints with exact resume (RNG seeded per step, data
order a function of the step), TensorBoard scalars, a tqdm bar, and a record of the command.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


@dataclasses.dataclass
class TrainerConfig:
    max_steps: int = 1000
    # a phase resumed from another run's checkpoint at this step gets a schedule of its own (warm-up,
    # then cosine) over [schedule_start, max_steps]; 0: one schedule from the first step
    schedule_start: int = 0
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.8, 0.99)
    grad_clip: float = 1.0
    log_every: int = 10
    sample_every: int = 0  # 0 = never call task.log_samples
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 0
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    num_threads: int = 0  # 0 = leave torch's default


@dataclasses.dataclass
class LossTerm:
    """One optimizer update: which group's parameters, the loss, scalars to log."""
    group: str
    loss: torch.Tensor
    scalars: dict[str, float]


class TrainingTask(abc.ABC):
    """What a recipe stage defines; the trainer does the rest."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module: ...

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Optimizer groups by name (e.g. generator / discriminator). Default: one group."""
        return {"main": [p for p in model.parameters() if p.requires_grad]}

    def group_lr(self, group: str, base_lr: float) -> float:
        return base_lr

    @abc.abstractmethod
    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator[Any]:
        """Batches for steps start_step, start_step+1, …; the same step must give the same batch."""

    @abc.abstractmethod
    def losses(self, model: nn.Module, batch: Any, step: int) -> Iterator[LossTerm]:
        """Yield one LossTerm per optimizer update of this step (GANs yield D then G)."""

    def log_samples(self, model: nn.Module, writer, step: int) -> None:
        """Optional: audio / images to TensorBoard."""


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return rank, world, device


def lr_factor(step: int, cfg: TrainerConfig) -> float:
    step -= cfg.schedule_start
    if step < cfg.warmup_steps:
        return (max(0, step) + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.schedule_start - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(task: TrainingTask, cfg: TrainerConfig, out_dir: str | Path, init_from: Path | None = None,
          progress: bool = True) -> nn.Module:
    """Run (or resume) training to cfg.max_steps; returns the trained (unwrapped) model."""
    out_dir = Path(out_dir)
    rank, world, device = _setup_distributed()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    model = task.build_model().to(device)
    groups = task.parameter_groups(model)
    optimizers = {name: torch.optim.AdamW(params, lr=task.group_lr(name, cfg.lr), betas=tuple(cfg.betas),
                                          weight_decay=cfg.weight_decay) for name, params in groups.items()}
    base_lrs = {name: task.group_lr(name, cfg.lr) for name in groups}
    start_step = 0
    ckpt = latest_checkpoint(out_dir)
    if ckpt is not None:
        meta = load_checkpoint(ckpt, model, optimizers)
        start_step = meta["step"]
    elif init_from is not None:
        load_checkpoint(init_from, model, None, strict=False)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "cmd.txt", "a") as f:
            f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} start_step={start_step}\n"
                    f"{shlex.join([sys.executable] + sys.argv)}\n")
        (out_dir / "trainer_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    wrapped = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if device.type == "cuda" else "off")
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tensorboard"))
    bar = tqdm(total=cfg.max_steps, initial=start_step, desc=out_dir.name, disable=not progress or rank != 0,
               dynamic_ncols=True)
    running: dict[str, float] = {}
    batches = task.batches(start_step, rank, world)
    step = start_step
    wrapped.train()
    while step < cfg.max_steps:
        batch = _to_device(next(batches), device)
        torch.manual_seed(cfg.seed * 1_000_003 + step * 7919 + rank)  # exact resume: noise is a function of step
        for name, opt in optimizers.items():
            for g in opt.param_groups:
                g["lr"] = base_lrs[name] * lr_factor(step, cfg)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
        with autocast:
            terms = task.losses(wrapped, batch, step)
            for term in terms:
                opt = optimizers[term.group]
                opt.zero_grad(set_to_none=True)
                if not torch.isfinite(term.loss):
                    raise FloatingPointError(f"step {step}: {term.group} loss is {term.loss.item()} "
                                             f"(scalars {term.scalars}); last checkpoint: {latest_checkpoint(out_dir)}")
                term.loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(groups[term.group], cfg.grad_clip)
                opt.step()
                for k, v in {**term.scalars, f"grad_norm/{term.group}": float(norm)}.items():
                    running[k] = running.get(k, 0.0) + float(v)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            means = {k: v / cfg.log_every for k, v in running.items()}
            running.clear()
            if writer is not None:
                for k, v in means.items():
                    writer.add_scalar(k, v, step)
                writer.add_scalar("lr", base_lrs[next(iter(base_lrs))] * lr_factor(step, cfg), step)
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})
        if writer is not None and cfg.sample_every and step % cfg.sample_every == 0:
            wrapped.eval()
            task.log_samples(model, writer, step)
            wrapped.train()
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.max_steps):
            save_checkpoint(out_dir, step, model, optimizers, keep=cfg.keep_checkpoints)
        if world > 1:
            dist.barrier()
    bar.close()
    if writer is not None:
        writer.close()
    return model


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(batch, **{f.name: _to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch)})
    return batch
