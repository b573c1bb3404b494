"""Data parallelism for the shared trainer: every rank starts from rank 0's weights, and after each
backward the gradients of the optimizer group being stepped are averaged over the ranks.

Why explicit averaging and not DistributedDataParallel: DDP reduces gradients only for a backward of
its own wrapper's forward. Duet's tasks call submodules (`m.codec.encoder(...)`), and the GAN stages
run two backwards per step, one per optimizer group, each touching only some parameters — through
`.module` DDP silently reduced nothing (issue 37), and through the wrapper it would need a forward per
phase plus `find_unused_parameters` on every step. Averaging the group's gradients after its backward
is correct whatever the task calls and however many groups it steps, is the same code on gloo and
NCCL, and costs one bucketed all-reduce per group per step (issued asynchronously, bucket by bucket).
What it gives up is DDP's overlap of the reduction with the backward pass; for models of this size the
reduction is a small part of a step. Buffers are broadcast once at start: no Duet model updates
buffers in training (no BatchNorm); one that did would need SyncBatchNorm.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

BUCKET_BYTES = 25 << 20


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; joins the process group when world > 1
    (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def broadcast_state(model: nn.Module) -> None:
    """Rank 0's parameters and buffers to every rank (each built its own, e.g. from another seed)."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], world: int, allow_unused: bool = False,
                      bucket_bytes: int = BUCKET_BYTES) -> None:
    """Replace each parameter's .grad by its mean over the `world` ranks, in place.

    Every parameter must have a gradient on every rank, unless `allow_unused`: then the ranks first
    agree which parameters got one anywhere (one small all-reduce read back on the host: a sync, so
    only tasks that need it ask for it); a rank without a gradient for such a parameter adds zeros,
    and a parameter no rank used keeps `grad = None` (the optimizer skips it, as in one process)."""
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    if allow_unused:
        used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
        dist.all_reduce(used)
        keep = used.tolist()
        for p, n in zip(params, keep):
            if n > 0 and p.grad is None:
                p.grad = torch.zeros_like(p)
        params = [p for p, n in zip(params, keep) if n > 0]
    else:
        missing = [p for p in params if p.grad is None]
        if missing:
            raise RuntimeError(f"average_gradients: {len(missing)} of {len(params)} parameters got no gradient "
                               f"this step (shapes {[tuple(p.shape) for p in missing[:4]]}...); a task whose steps "
                               "leave parameters out sets TrainingTask.unused_parameters = True")
    pending = []
    for bucket in _buckets([p.grad for p in params], bucket_bytes):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        pending.append((bucket, flat, dist.all_reduce(flat, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        flat.div_(world)
        for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(part.view_as(g))


def _buckets(grads: list[torch.Tensor], bucket_bytes: int) -> list[list[torch.Tensor]]:
    """Consecutive gradients of one device and dtype, about `bucket_bytes` per bucket."""
    out, size = [], 0
    for g in grads:
        if g.is_sparse:
            raise ValueError("average_gradients: sparse gradients are not supported")
        if not out or size + g.numel() * g.element_size() > bucket_bytes or \
                (out[-1][0].device, out[-1][0].dtype) != (g.device, g.dtype):
            out.append([])
            size = 0
        out[-1].append(g)
        size += g.numel() * g.element_size()
    return out
