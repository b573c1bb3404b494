"""Export trained stages as one codec file for `load_codec`, and assemble stage checkpoints.

    python -m recipes.codec.export --checkpoint exp/finetune/step-500 --config exp/finetune/config.yaml \
        --out exp/codec.safetensors [--vocoder exp/vocoder/step-4000]
    python -m recipes.codec.assemble --semantic exp/semantic/step-4000 --vocoder exp/vocoder/step-4000 \
        --out exp/assembled/step-0
    python -m recipes.codec.assemble --from-codec codec/assets/default_codec.safetensors --out exp/init_codec/step-0 \
        [--phone-classifier classifier.safetensors]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from codec.config_io import load

from .task import CodecTrainConfig, export_codec


PHONE_CLASSIFIER_PARTS = ("inp.", "transformer.", "classify.")  # PhoneInput's frame classifier, not its conv


def assemble(semantic: Path, vocoder: Path, out: Path, phone_classifier: Path | None = None) -> Path:
    """A checkpoint dir whose codec weights come from `semantic`, except the vocoder's from `vocoder`."""
    state = load_file(str(Path(semantic) / "model.safetensors"))
    voc = load_file(str(Path(vocoder) / "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.startswith("codec.vocoder.")}
    state.update({k: v for k, v in voc.items() if k.startswith("codec.vocoder.")})
    return _write_step0(state, out, {"assembled_from": [str(semantic), str(vocoder)]}, phone_classifier)


def _write_step0(state: dict, out: Path, extra: dict, phone_classifier: Path | None = None) -> Path:
    """`phone_classifier`: a separately trained frame phone classifier (a `codec.model.PhoneInput` state dict,
    e.g. from egs/mini/dialogue1/local/aligned_phones.py) put in place of the phones input's, for a semantic
    stage with `freeze_phone_classifier: true`. The branch's conv over its decisions is left to that stage."""
    if phone_classifier is not None:
        weights = load_file(str(phone_classifier))
        parts = {k: v for k, v in weights.items() if k.startswith(PHONE_CLASSIFIER_PARTS)}
        if "classify.weight" not in parts:
            raise ValueError(f"{phone_classifier}: not a PhoneInput state dict "
                             f"(no classify.weight among {sorted(weights)[:5]}...)")
        state = {k: v for k, v in state.items() if not k.startswith("codec.semantic.phones.")}
        state.update({f"codec.semantic.phones.{k}": v.contiguous() for k, v in parts.items()})
        extra = {**extra, "phone_classifier": str(phone_classifier),
                 "phone_classes": int(parts["classify.weight"].shape[0])}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    (out / "trainer.json").write_text(json.dumps({"step": 0, "optimizers": {}, "extra": extra}))
    return out


def checkpoint_from_codec(codec_path: Path, out: Path, phone_classifier: Path | None = None) -> Path:
    """A checkpoint dir holding an exported codec's weights (float32), to start stages from a trained
    codec instead of from stage 1 (`init_codec` in the recipes' codec stages)."""
    from codec.api import load_codec

    codec = load_codec(codec_path)
    state = {f"codec.{k}": v.contiguous() for k, v in codec.model.state_dict().items()}
    return _write_step0(state, out, {"from_codec": str(codec_path), "codec_id": codec.codec_id}, phone_classifier)


def main_export(argv=None) -> None:
    p = argparse.ArgumentParser(description="export a codec from stage checkpoints")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--config", type=Path, required=True, help="the stage's config.yaml (codec preset + overrides)")
    p.add_argument("--vocoder", type=Path, help="take the vocoder's weights from this checkpoint")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--description", default="")
    p.add_argument("--recipe", default="", help="the recipe command that rebuilds this file (kept in its metadata)")
    args = p.parse_args(argv)
    cfg = load(CodecTrainConfig, args.config)
    desc = args.description or f"trained by egs/mini/codec1 ({args.checkpoint})"
    codec_id = export_codec(args.checkpoint, args.out, cfg, args.vocoder, desc, recipe=args.recipe)
    print(f"{args.out}: codec {cfg.codec_config().name} id {codec_id}")


def main_assemble(argv=None) -> None:
    p = argparse.ArgumentParser(description="assemble semantic + vocoder checkpoints, or a checkpoint from a codec")
    p.add_argument("--semantic", type=Path)
    p.add_argument("--vocoder", type=Path)
    p.add_argument("--from-codec", type=Path, help="an exported codec file (instead of --semantic/--vocoder)")
    p.add_argument("--phone-classifier", type=Path,
                   help="also a trained frame phone classifier (PhoneInput state dict) for a phones semantic input")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.from_codec is not None:
        if args.semantic or args.vocoder:
            p.error("--from-codec replaces --semantic and --vocoder")
        print(checkpoint_from_codec(args.from_codec, args.out, args.phone_classifier))
    elif args.semantic is None or args.vocoder is None:
        p.error("--semantic and --vocoder are both needed (or --from-codec)")
    else:
        print(assemble(args.semantic, args.vocoder, args.out, args.phone_classifier))


if __name__ == "__main__":
    main_export()
