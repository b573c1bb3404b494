"""Copy what `python -m dialogue.demo --bundled` uses into dialogue/assets/:

    python local/bundle.py EXP DATA_TEST ASSETS [--model PATH] [--no-model] [--recipe CMD]

dialogue.safetensors (the model, EXP/dialogue/model.safetensors unless --model, re-saved in float16); codec.safetensors
when the model was trained on another codec's tokens than the general bundled codec's (EXP/codec.safetensors, found by
its codec id: the demo then pairs them; removed when the general codec serves); tokenizer.model, and one
test conversation that has a pause, a backchannel or an interruption: its user channel
(conversation.flac, 16-bit FLAC) and its metadata (conversation.json). The model's metadata key `recipe`
names the commands that made it: --recipe, else the run.sh invocations recorded in EXP/cmd.txt.
"""
import argparse
import json
import shutil
from pathlib import Path

import soundfile as sf

from codec.api import checkpoint_codec_id, default_checkpoint
from dialogue import load_dialogue, save_dialogue
from dialogue.checkpoint import PAIRED_CODEC, paired_codec

p = argparse.ArgumentParser()
p.add_argument("exp", type=Path)
p.add_argument("data", type=Path)
p.add_argument("assets", type=Path)
p.add_argument("--model", type=Path, help="default: EXP/dialogue/model.safetensors")
p.add_argument("--no-model", action="store_true")
p.add_argument("--recipe", default=None, help="the command that makes the model (default: EXP/cmd.txt, one per line)")
args = p.parse_args()
args.assets.mkdir(parents=True, exist_ok=True)
if not args.no_model:
    source = args.model or args.exp / "dialogue" / "model.safetensors"
    b = load_dialogue(source)
    general = default_checkpoint()
    if general.is_file() and checkpoint_codec_id(general) == b.codec_id:
        (args.assets / PAIRED_CODEC).unlink(missing_ok=True)
    else:
        codec = paired_codec(source, args.exp / PAIRED_CODEC)
        if codec is None:
            raise SystemExit(f"{source}: trained on codec {b.codec_id} tokens, but neither the general bundled codec "
                             f"nor a codec.safetensors beside it or in {args.exp} has that id")
        shutil.copy(codec, args.assets / PAIRED_CODEC)
        print(f"{args.assets / PAIRED_CODEC}: the codec {b.codec_id} the model was trained on, from {codec}")
    recorded = args.exp / "cmd.txt"
    recipe = args.recipe or (recorded.read_text().strip() if recorded.is_file() else "")
    if not recipe:
        raise SystemExit(f"{recorded}: no recorded run.sh command; pass --recipe CMD (the command that made the model)")
    save_dialogue(args.assets / "dialogue.safetensors", b.model, b.tokenizer, b.codec_id, b.system_voice,
                  b.description, half=True, recipe=recipe)
shutil.copy(args.exp / "tokenizer.model", args.assets / "tokenizer.model")
metas = sorted(args.data.glob("meta/*.json"))
score = lambda m: sum(bool(v) for v in m["events"].values())  # noqa: E731
best = max(metas, key=lambda f: (score(json.loads(f.read_text())), -json.loads(f.read_text())["duration"]))
meta = json.loads(best.read_text())
wav, sr = sf.read(args.data / "wav" / f"{meta['id']}.wav", dtype="float32")
sf.write(args.assets / "conversation.flac", wav[:, 0], sr, subtype="PCM_16")
(args.assets / "conversation.json").write_text(json.dumps(meta, indent=1))
print(f"{args.assets}: bundled {meta['id']} ({meta['duration']:.1f} s){'' if args.no_model else ' and the model'}")
