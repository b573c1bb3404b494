"""Export trained stages as one codec file for `load_codec`, and assemble stage checkpoints.

    python -m recipes.codec.export --checkpoint exp/finetune/step-500 --config exp/finetune/config.yaml \
        --out exp/codec.safetensors [--vocoder exp/vocoder/step-4000]
    python -m recipes.codec.assemble --semantic exp/semantic/step-4000 --vocoder exp/vocoder/step-4000 \
        --out exp/assembled/step-0
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from codec.config_io import load

from .task import CodecTrainConfig, export_codec


def assemble(semantic: Path, vocoder: Path, out: Path) -> Path:
    """A checkpoint dir whose codec weights come from `semantic`, except the vocoder's from `vocoder`."""
    state = load_file(str(Path(semantic) / "model.safetensors"))
    voc = load_file(str(Path(vocoder) / "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.startswith("codec.vocoder.")}
    state.update({k: v for k, v in voc.items() if k.startswith("codec.vocoder.")})
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    (out / "trainer.json").write_text(json.dumps({"step": 0, "optimizers": {}, "extra": {
        "assembled_from": [str(semantic), str(vocoder)]}}))
    return out


def main_export(argv=None) -> None:
    p = argparse.ArgumentParser(description="export a codec from stage checkpoints")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--config", type=Path, required=True, help="the stage's config.yaml (codec preset + overrides)")
    p.add_argument("--vocoder", type=Path, help="take the vocoder's weights from this checkpoint")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--description", default="")
    args = p.parse_args(argv)
    cfg = load(CodecTrainConfig, args.config)
    desc = args.description or f"trained by egs/mini/codec1 ({args.checkpoint})"
    codec_id = export_codec(args.checkpoint, args.out, cfg, args.vocoder, desc)
    print(f"{args.out}: codec {cfg.codec_config().name} id {codec_id}")


def main_assemble(argv=None) -> None:
    p = argparse.ArgumentParser(description="assemble semantic + vocoder checkpoints")
    p.add_argument("--semantic", type=Path, required=True)
    p.add_argument("--vocoder", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    print(assemble(args.semantic, args.vocoder, args.out))


if __name__ == "__main__":
    main_export()
