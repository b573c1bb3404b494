"""Golden outputs of the bundled models, so a silent numerical change shows up as a failing test:

    python -m tests.golden            # compare with tests/golden/bundled.json (what tests/test_golden.py does)
    python -m tests.golden --update   # write it anew, after replacing a bundled codec or model on purpose

For every bundled codec (codec/assets/default_codec.safetensors, dialogue/assets/codec.safetensors): its id,
the tokens of the first 2 s of codec/assets/sample_en.wav and a checksum of the voice vector. For the bundled
dialogue model: the greedy inner monologue (text and audio temperature 0) and what its listening head heard,
on the bundled conversation with the codec the model was trained on.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "bundled.json"
CODECS = ("codec/assets/default_codec.safetensors", "dialogue/assets/codec.safetensors")
SAMPLE, SAMPLE_SECONDS = "codec/assets/sample_en.wav", 2.0


def codec_golden(path: Path) -> dict:
    from codec import load_codec
    from codec.audio import load_audio

    codec = load_codec(path)
    wav, sr = load_audio(ROOT / SAMPLE)
    with torch.inference_mode():
        tokens = codec.encode(wav[..., :int(SAMPLE_SECONDS * sr)], sr)
    return {"codec_id": codec.codec_id, "input": f"{SAMPLE}, first {SAMPLE_SECONDS:g} s",
            "codes": tokens.codes[0].tolist(), "voice_sum": round(float(tokens.voice.float().sum()), 3)}


def dialogue_golden() -> dict:
    from dialogue.demo import BUNDLED_CONVERSATION, BUNDLED_MODEL, asset, load_bundle, load_demo_codec, load_user
    from dialogue.pipeline import run_duplex
    from dialogue.session import SamplingConfig

    codec = load_demo_codec(None, asset(BUNDLED_MODEL))
    bundle = load_bundle(argparse.Namespace(model=None, codec=None), codec)
    voice = bundle.system_voice if bundle.model.cfg.system_voice else None
    greedy = SamplingConfig(text_temperature=0.0, text_top_k=0, audio_temperature=0.0, audio_top_k=0)
    with torch.inference_mode():
        run = run_duplex(codec, bundle.model, load_user(asset(BUNDLED_CONVERSATION), codec), voice, greedy)
    return {"codec_id": codec.codec_id, "conversation": f"dialogue/assets/{BUNDLED_CONVERSATION}",
            "sampling": "greedy (text and audio temperature 0)",
            "monologue": " ".join(w.word for w in run.words(0, bundle.tokenizer)),
            "heard": " ".join(w.word for w in run.heard_words(0, bundle.tokenizer)) if run.heard_tokens is not None else None}


def compute() -> dict:
    torch.set_num_threads(1)
    codecs = {p: codec_golden(ROOT / p) for p in CODECS if (ROOT / p).is_file()}
    return {"regenerate": "python -m tests.golden --update", "codecs": codecs, "dialogue": dialogue_golden()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--update", action="store_true", help=f"write {GOLDEN.relative_to(ROOT)}")
    args = p.parse_args(argv)
    got = compute()
    if args.update:
        text = json.dumps(got, indent=1)
        text = re.sub(r"\[([\d,\s]+)\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
                      text)  # a list of codes on one line
        GOLDEN.write_text(text + "\n")
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
        return 0
    want = json.loads(GOLDEN.read_text())
    if got == want:
        print("the bundled models give their golden outputs")
        return 0
    print(f"the bundled models' outputs differ from {GOLDEN.relative_to(ROOT)}; run with --update if that is intended")
    return 1


if __name__ == "__main__":
    sys.exit(main())
