"""Dialogue checkpoints: one safetensors file with the weights, the tokenizer's bytes, the system
voice G_sys, and the config + codec identity in the metadata. No pickle.

The codec identity pins the token vocabulary: a dialogue model is only meaningful with the codec
whose tokens it was trained on, so loading checks it against the codec in use.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from codec import config_io
from codec.api import checkpoint_codec_id, read_checkpoint_metadata

from .config import DialogueConfig
from .model import DuplexModel
from .tokenizer import TextTokenizer

FORMAT = "duet-dialogue"


@dataclasses.dataclass
class DialogueBundle:
    """What a dialogue checkpoint holds."""

    model: DuplexModel
    tokenizer: TextTokenizer
    system_voice: torch.Tensor | None  # [voice_dim] G_sys the model was trained with
    codec_id: str
    description: str = ""
    trained: bool = True


def save_dialogue(path: str | Path, model: DuplexModel, tokenizer: TextTokenizer, codec_id: str,
                  system_voice: torch.Tensor | None = None, description: str = "", half: bool = False,
                  recipe: str = "") -> None:
    """Write atomically (temporary file, then rename). `recipe`: the recipe command that makes this file
    (a bundled asset names it; tests/test_assets.py checks that its scripts exist)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": (v.half() if half and v.is_floating_point() else v).detach().contiguous().cpu()
               for k, v in model.state_dict().items()}
    tensors["tokenizer"] = torch.frombuffer(bytearray(tokenizer.proto), dtype=torch.uint8).clone()
    if system_voice is not None:
        tensors["system_voice"] = system_voice.detach().float().reshape(-1).cpu()
    meta = {"format": FORMAT, "config": json.dumps(config_io.to_dict(model.cfg)), "codec_id": codec_id,
            "description": description} | ({"recipe": recipe} if recipe else {})
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def dialogue_description(path: str | Path) -> str:
    """A checkpoint's description (what it was trained on), read from its header without its weights."""
    return read_checkpoint_metadata(Path(path), FORMAT).get("description", "")


def dialogue_codec_id(path: str | Path) -> str:
    """The identity of the codec whose tokens a checkpoint was trained on, read from its header."""
    return read_checkpoint_metadata(Path(path), FORMAT).get("codec_id", "unknown")


PAIRED_CODEC = "codec.safetensors"


def paired_codec(path: str | Path, *fallbacks: Path) -> Path | None:
    """The codec a dialogue checkpoint was trained on, found by its identity rather than by its place:
    `codec.safetensors` beside the checkpoint (a bundle that ships its own codec), one folder up (a
    recipe's exp/, where stage 3 tokenised with it), then `fallbacks` (the general bundled codec).
    None when none of them has the checkpoint's codec id."""
    path = Path(path)
    wanted = dialogue_codec_id(path)
    for candidate in (path.parent / PAIRED_CODEC, path.parent.parent / PAIRED_CODEC, *fallbacks):
        if candidate.is_file() and checkpoint_codec_id(candidate) == wanted:
            return candidate
    return None


def load_dialogue(path: str | Path, device: str | torch.device = "cpu", codec_id: str | None = None) -> DialogueBundle:
    """Load a checkpoint; with `codec_id`, refuse one trained on another codec's tokens."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no dialogue checkpoint")
    meta = read_checkpoint_metadata(path, FORMAT)
    if codec_id is not None and meta.get("codec_id") not in (codec_id, "any"):
        raise ValueError(f"{path}: trained on codec {meta.get('codec_id')!r} tokens, but the codec in use is "
                         f"{codec_id!r}; pass the matching --codec")
    cfg = config_io.from_dict(DialogueConfig, json.loads(meta["config"]), where=str(path))
    tensors = load_file(str(path))
    tokenizer = TextTokenizer(tensors.pop("tokenizer").numpy().tobytes(), where=f"{path}:tokenizer")
    voice = tensors.pop("system_voice", None)
    model = DuplexModel(cfg)
    state = {k[len("model."):]: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match config {cfg.name}: missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]}")
    return DialogueBundle(model.to(device).eval(), tokenizer, voice, meta.get("codec_id", "unknown"),
                          meta.get("description", ""))
