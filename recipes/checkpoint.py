"""Atomic, pickle-free training checkpoints: model weights and optimizer state in safetensors.

A checkpoint is a directory `step-<N>/` written as `step-<N>.partial/` and renamed into place, so
a run killed mid-write never leaves a directory that `latest_checkpoint` would pick. Optimizer state
is flattened to tensors; its non-tensor structure (param groups, scalar fields) goes to JSON.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, fields in state["state"].items():
        for key, value in fields.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}/{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, field = key.split("/", 1)
        state.setdefault(int(pid), {})[field] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(out_dir: Path, step: int, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                    extra: dict | None = None, keep: int = 2) -> Path:
    """Write step-<step>/ atomically: model.safetensors, optim-<name>.safetensors, trainer.json."""
    out_dir = Path(out_dir)
    final = out_dir / f"step-{step}"
    tmp = out_dir / f"step-{step}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    meta = {"step": step, "optimizers": {}, "extra": extra or {}}
    for name, opt in optimizers.items():
        tensors, structure = _flatten_optimizer(opt.state_dict())
        save_file(tensors, str(tmp / f"optim-{name}.safetensors"))
        meta["optimizers"][name] = structure
    (tmp / "trainer.json").write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (half-written `.partial` ones are ignored)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out_dir.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()
             and (p / "trainer.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = list_checkpoints(out_dir)
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    strict: bool = True, skip: tuple[str, ...] = ()) -> dict:
    """Restore weights (and optimizers) from a step directory; returns trainer.json's content. `skip`: name
    prefixes of tensors not to load (they keep the model's initial values)."""
    path = Path(path)
    meta = json.loads((path / "trainer.json").read_text())
    state = {k: v for k, v in load_file(str(path / "model.safetensors")).items() if not k.startswith(tuple(skip))}
    model.load_state_dict(state, strict=strict)
    for name, opt in (optimizers or {}).items():
        if name not in meta["optimizers"]:
            raise KeyError(f"{path}: checkpoint has no optimizer {name!r} (has {sorted(meta['optimizers'])})")
        tensors = load_file(str(path / f"optim-{name}.safetensors"))
        opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizers"][name]))
    return meta
