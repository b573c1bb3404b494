"""One streaming protocol for every stateful module in Duet.

A module that keeps state between chunks subclasses `StreamingModule` and implements
`init_state(batch_size, device) -> a StreamingState dataclass`. `module.streaming(batch_size)` enters
streaming on the whole module tree at once (every StreamingModule child gets its own fresh state) and
leaves it on exit; `reset(mask)` clears state per batch item; `get_state()` / `set_state()` snapshot
and restore the whole tree (strict about unknown or missing keys) so a demo can rewind and a test
can replay. Stepping a streaming-only path outside the context raises a clear error. Objects that hold
streaming state without being a module (`codec.api.CodecStream`, `dialogue.session.DuplexSession`)
implement `named_states()` on `StateHolder` and get the same reset / get_state / set_state.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import torch
from torch import nn


class StreamingError(RuntimeError):
    """A streaming module was used outside its protocol (not streaming, batch mismatch, bad state)."""


@dataclasses.dataclass
class StreamingState:
    """Base of every per-module state: tensors with a leading batch dimension.

    `reset(mask)` zeroes the items where mask is True; subclasses override `reset_value` for fields
    whose empty value is not zero (e.g. ring-cache positions, which are -1 when empty).
    """

    def reset_value(self, name: str) -> float:
        return 0

    def reset(self, mask: torch.Tensor | None = None) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, torch.Tensor):
                continue
            fill = self.reset_value(f.name)
            if mask is None:
                value.fill_(fill)
            else:
                m = mask.to(value.device).view(-1, *([1] * (value.dim() - 1)))
                value.masked_fill_(m, fill)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}


class StateHolder:
    """reset(mask) / get_state() / set_state() over `named_states()`: the one implementation of the
    protocol, shared by modules and by the stream objects built on them."""

    def named_states(self) -> Iterator[tuple[str, StreamingState]]:
        raise NotImplementedError

    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Clear every state; with a bool mask [B], only those batch items (the others go on untouched)."""
        for _, state in self.named_states():
            state.reset(mask)

    def get_state(self) -> dict[str, torch.Tensor]:
        """Snapshot (cloned tensors) of every state, keyed 'path/field'."""
        return {key: value.clone() for key, value in self._state_tensors().items()}

    def set_state(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Restore a snapshot from `get_state`; unknown or missing keys, or a shape that differs, are an error."""
        expected = self._state_tensors()
        unknown = sorted(set(snapshot) - set(expected))
        missing = sorted(set(expected) - set(snapshot))
        if unknown or missing:
            raise StreamingError(f"{type(self).__name__}.set_state: unknown keys {unknown[:5]}, missing keys "
                                 f"{missing[:5]} (a snapshot restores into the object that made it)")
        for key, value in expected.items():
            if snapshot[key].shape != value.shape:
                raise StreamingError(f"{type(self).__name__}.set_state: {key} has shape "
                                     f"{tuple(snapshot[key].shape)}, expected {tuple(value.shape)}")
        for key, value in expected.items():
            value.copy_(snapshot[key])

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}/{field}": value for name, state in self.named_states()
                for field, value in state.tensors().items()}


class StreamingModule(nn.Module, StateHolder):
    """Base of every stateful module; `self.state` is None outside `streaming(...)`."""

    def __init__(self) -> None:
        super().__init__()
        self._state: StreamingState | None = None

    # --- to implement -------------------------------------------------------------------------
    def init_state(self, batch_size: int, device: torch.device) -> StreamingState | None:
        """Fresh state for `batch_size` independent streams (None for stateless containers)."""
        return None

    # --- protocol -----------------------------------------------------------------------------
    @property
    def is_streaming(self) -> bool:
        return self._state is not None

    @property
    def state(self) -> StreamingState:
        if self._state is None:
            raise StreamingError(f"{type(self).__name__} is not streaming: wrap the calls in "
                                 f"`with module.streaming(batch_size):`")
        return self._state

    def _streaming_modules(self) -> Iterator[tuple[str, "StreamingModule"]]:
        for name, module in self.named_modules():
            if isinstance(module, StreamingModule):
                yield name, module

    @contextlib.contextmanager
    def streaming(self, batch_size: int):
        """Enter streaming on this module and every StreamingModule below it."""
        if batch_size < 1:
            raise ValueError(f"streaming batch_size must be >= 1, got {batch_size}")
        device = _module_device(self)
        with contextlib.ExitStack() as stack:
            for _, module in self._streaming_modules():
                stack.enter_context(module._enter(batch_size, device))
            yield self

    @contextlib.contextmanager
    def _enter(self, batch_size: int, device: torch.device):
        if self._state is not None:
            raise StreamingError(f"{type(self).__name__} is already streaming")
        state = self.init_state(batch_size, device)
        self._state = state if state is not None else _EmptyState()
        try:
            yield
        finally:
            self._state = None

    def named_states(self) -> Iterator[tuple[str, StreamingState]]:
        """(module path, state) of this module and every StreamingModule below it (streaming only)."""
        for name, module in self._streaming_modules():
            yield name, module.state


@dataclasses.dataclass
class _EmptyState(StreamingState):
    pass


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def check_batch(module: StreamingModule, x: torch.Tensor, batch_size: int) -> None:
    if x.shape[0] != batch_size:
        raise StreamingError(f"{type(module).__name__}: chunk has batch {x.shape[0]}, the stream was "
                             f"opened with batch_size={batch_size}")

