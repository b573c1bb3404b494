"""The one training loop every Duet recipe uses.

    torchrun --nproc_per_node=1 -m recipes.codec.train --config conf/stage1.yaml --out exp/codec/stage1
    # same command with --nproc_per_node=8 on a GPU node, or --nnodes for several

A recipe supplies a `TrainingTask` (model, optimizer groups, deterministic batches, losses); the
trainer owns everything else: data parallelism (recipes/distributed.py: rank 0's weights everywhere,
each group's gradients averaged over the ranks after its backward; gloo on CPU, NCCL on GPU), batches
prepared ahead in a thread, AMP (bf16 on CUDA), gradient clipping, warm-up + cosine LR, atomic
safetensors checkpoints with exact resume (RNG seeded per step, data order a function of the step),
TensorBoard scalars, a tqdm bar, and a record of the command.

The step path does not wait on the host: scalars and the non-finite check accumulate on the device
and are read once per `log_every` steps (and before a checkpoint, so non-finite weights are never
saved); there is no per-step barrier.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import math
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
from .distributed import average_gradients, broadcast_state, setup_distributed
from .parallel import Prefetcher


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
    prefetch: int = 2  # batches prepared ahead in a thread; 0 = in the step loop


@dataclasses.dataclass
class LossTerm:
    """One optimizer update: which group's parameters, the loss, scalars to log (detached 0-d tensors,
    which stay on the device until the trainer logs them, or floats)."""
    group: str
    loss: torch.Tensor
    scalars: dict[str, torch.Tensor | float]


class TrainingTask(abc.ABC):
    """What a recipe stage defines; the trainer does the rest."""

    # whether a step may leave some of a group's parameters without a gradient (then the ranks agree on
    # which got one, a host sync per step: the cost of DDP's find_unused_parameters)
    unused_parameters: bool = False
    # tensors of an `init_from` checkpoint a warm start leaves out, by name prefix (e.g. a previous stage's
    # discriminator, whose shape follows that stage's config): they start fresh
    init_skip: tuple[str, ...] = ()

    @abc.abstractmethod
    def build_model(self) -> nn.Module: ...

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Optimizer groups by name (e.g. generator / discriminator). Default: one group."""
        return {"main": [p for p in model.parameters() if p.requires_grad]}

    def group_lr(self, group: str, base_lr: float) -> float:
        return base_lr

    @abc.abstractmethod
    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator[Any]:
        """Batches for steps start_step, start_step+1, …; the same step must give the same batch. Runs in
        the trainer's prefetch thread: it must not draw from the global RNGs."""

    @abc.abstractmethod
    def losses(self, model: nn.Module, batch: Any, step: int) -> Iterator[LossTerm]:
        """Yield one LossTerm per optimizer update of this step (GANs yield D then G); `model` is the
        task's own model (no wrapper), on the trainer's device."""

    def log_samples(self, model: nn.Module, writer, step: int) -> None:
        """Optional: audio / images to TensorBoard."""


def lr_factor(step: int, cfg: TrainerConfig) -> float:
    step -= cfg.schedule_start
    if step < cfg.warmup_steps:
        return (max(0, step) + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.schedule_start - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(task: TrainingTask, cfg: TrainerConfig, out_dir: str | Path, init_from: Path | None = None,
          progress: bool = True) -> nn.Module:
    """Run (or resume) training to cfg.max_steps; returns the trained model."""
    out_dir = Path(out_dir)
    rank, world, device = setup_distributed()
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
        load_checkpoint(init_from, model, None, strict=False, skip=task.init_skip)
    if world > 1:
        broadcast_state(model)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "cmd.txt", "a") as f:
            f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} start_step={start_step} world_size={world}\n"
                    f"{shlex.join([sys.executable] + sys.argv)}\n")
        (out_dir / "trainer_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if device.type == "cuda" else "off")
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tensorboard"))
    bar = tqdm(total=cfg.max_steps, initial=start_step, desc=out_dir.name, disable=not progress or rank != 0,
               dynamic_ncols=True)
    batches = task.batches(start_step, rank, world)
    if cfg.prefetch > 0:
        batches = Prefetcher(batches, cfg.prefetch, _pin if device.type == "cuda" else None)
    log = _RunningLog(groups, device, start_step)
    step = start_step
    model.train()
    try:
        while step < cfg.max_steps:
            waited = time.perf_counter()
            batch = next(batches)
            log.waited += time.perf_counter() - waited
            batch = _to_device(batch, device)
            torch.manual_seed(cfg.seed * 1_000_003 + step * 7919 + rank)  # exact resume: noise is a function of step
            for name, opt in optimizers.items():
                for g in opt.param_groups:
                    g["lr"] = base_lrs[name] * lr_factor(step, cfg)
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
            with autocast:
                for term in task.losses(model, batch, step):
                    opt = optimizers[term.group]
                    opt.zero_grad(set_to_none=True)
                    term.loss.backward()
                    if world > 1:
                        average_gradients(groups[term.group], world, task.unused_parameters)
                    norm = torch.nn.utils.clip_grad_norm_(groups[term.group], cfg.grad_clip)
                    opt.step()
                    log.add(term, norm)
            step += 1
            bar.update(1)
            logging = step % cfg.log_every == 0 or step == cfg.max_steps
            saving = rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.max_steps)
            if logging:  # every rank reads (and checks), so all raise together
                means = log.read(step, world, out_dir)
                if writer is not None:
                    for k, v in means.items():
                        writer.add_scalar(k, v, step)
                    writer.add_scalar("lr", base_lrs[next(iter(base_lrs))] * lr_factor(step, cfg), step)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})
            elif step % cfg.checkpoint_every == 0:
                log.check(step, world, out_dir)  # never save non-finite weights
            if writer is not None and cfg.sample_every and step % cfg.sample_every == 0:
                model.eval()
                task.log_samples(model, writer, step)
                model.train()
            if saving:
                save_checkpoint(out_dir, step, model, optimizers, keep=cfg.keep_checkpoints)
    finally:
        if isinstance(batches, Prefetcher):
            batches.close()
    if world > 1:
        dist.barrier()  # once: the final checkpoint is written before any rank returns
    bar.close()
    if writer is not None:
        writer.close()
    return model


class _RunningLog:
    """Sums of the logged scalars, gradient norms and a non-finite count per group, on the device; `read`
    brings them to the host in one transfer (the only host sync of the step loop), with the wall time
    per step and the time the loop waited for batches."""

    def __init__(self, groups: dict, device: torch.device, start_step: int) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.counts: dict[str, int] = {}
        self.nonfinite = {name: torch.zeros((), device=device) for name in groups}
        self.waited, self.started, self.last_step = 0.0, time.perf_counter(), start_step
        self.checked_step = start_step  # the last step known finite

    def add(self, term: LossTerm, norm: torch.Tensor) -> None:
        for k, v in {**term.scalars, f"grad_norm/{term.group}": norm}.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.nonfinite[term.group] += (~torch.isfinite(term.loss.detach())).float() + (~torch.isfinite(norm)).float()

    def check(self, step: int, world: int, out_dir: Path, scalars: list[torch.Tensor] = ()) -> list[float]:
        """Raise FloatingPointError, on every rank alike, if a loss or gradient was non-finite since the last
        read; returns `scalars` read in the same transfer."""
        flags = torch.stack(list(self.nonfinite.values()))
        if world > 1:
            dist.all_reduce(flags)
        values = torch.cat([flags, torch.stack(scalars).to(flags.device)]).tolist() if scalars else flags.tolist()
        bad = [name for name, f in zip(self.nonfinite, values) if f > 0]
        if bad:
            raise FloatingPointError(f"non-finite loss or gradient in group(s) {bad} between step {self.checked_step} "
                                     f"and step {step} (on some rank); weights since then are not saved; last "
                                     f"checkpoint: {latest_checkpoint(out_dir)}")
        self.checked_step = step
        return values[len(flags):]

    def read(self, step: int, world: int, out_dir: Path) -> dict[str, float]:
        """The means since the last read (after `check`), then starts a new interval."""
        keys = [k for k, v in self.sums.items() if isinstance(v, torch.Tensor)]
        sums = {k: v for k, v in self.sums.items() if k not in keys}
        sums.update(zip(keys, self.check(step, world, out_dir, [self.sums[k] for k in keys])))
        means = {k: sums[k] / self.counts[k] for k in self.sums}
        elapsed, steps = time.perf_counter() - self.started, max(1, step - self.last_step)
        means |= {"time/step_ms": 1000 * elapsed / steps, "time/loader_wait_ms": 1000 * self.waited / steps,
                  "time/loader_share": self.waited / max(elapsed, 1e-9)}
        self.sums.clear()
        self.counts.clear()
        for f in self.nonfinite.values():
            f.zero_()
        self.waited, self.started, self.last_step = 0.0, time.perf_counter(), step
        return means


def _pin(batch):
    """Page-locked host copies of a batch's tensors (so the host-to-GPU copy can be asynchronous)."""
    return _map_tensors(batch, lambda t: t.pin_memory())


def _to_device(batch, device):
    return _map_tensors(batch, lambda t: t.to(device, non_blocking=True))


def _map_tensors(batch, fn):
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_map_tensors(v, fn) for v in batch)
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(batch, **{f.name: _map_tensors(getattr(batch, f.name), fn)
                                             for f in dataclasses.fields(batch)})
    return batch
