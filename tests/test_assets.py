"""Every bundled model file names the recipe command that makes it, and that command's scripts exist in
the repo (issue 35: every shipped asset from a recipe stage). The `.safetensors` files under codec/assets/
and dialogue/assets/ carry a `recipe` metadata key; audio, JSON and the tokenizer are data, not models.
"""
import shlex
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
ASSETS = sorted(p.relative_to(ROOT).as_posix() for d in ("codec/assets", "dialogue/assets")
                for p in (ROOT / d).glob("*.safetensors"))
# Bundled before exports wrote a `recipe` key. Strict: once an asset is re-exported with one, its xfail
# fails, and the entry must go.
KNOWN_MISSING: dict[str, str] = {}


def recipe_scripts(recipe: str) -> list[Path]:
    """The repo files a recipe command runs: each `*.sh`/`*.py` word (relative to the repo root, or to the
    folder a preceding `cd DIR` entered) and each `-m module`. Several commands may be joined by newlines,
    `;` or `&&`."""
    found, cwd = [], ROOT
    for line in recipe.replace("&&", "\n").replace(";", "\n").splitlines():
        words = shlex.split(line)
        if words[:1] == ["cd"] and len(words) > 1:
            cwd = ROOT / words[1]
            continue
        for i, w in enumerate(words):
            if w.endswith((".sh", ".py")) and not w.startswith("-"):
                found.append((cwd / w) if not (ROOT / w).exists() else ROOT / w)
            elif w == "-m" and i + 1 < len(words):
                module = ROOT / words[i + 1].replace(".", "/")
                found.append(module.with_suffix(".py") if module.with_suffix(".py").exists() else module / "__main__.py")
    return found


@pytest.mark.parametrize("asset", [pytest.param(a, marks=pytest.mark.xfail(reason=KNOWN_MISSING[a], strict=True))
                                   if a in KNOWN_MISSING else a for a in ASSETS])
def test_every_bundled_model_names_a_recipe_command_that_exists(asset):
    with safe_open(str(ROOT / asset), framework="pt") as f:
        meta = f.metadata() or {}
    recipe = meta.get("recipe", "")
    assert recipe, f"{asset}: no `recipe` metadata (the command that makes it); found keys {sorted(meta)}"
    scripts = recipe_scripts(recipe)
    assert scripts, f"{asset}: recipe {recipe!r} names no script of the repo"
    missing = [str(s.relative_to(ROOT)) for s in scripts if not s.is_file()]
    assert not missing, f"{asset}: recipe {recipe!r} runs {missing}, which are not in the repo"


def test_assets_are_found_and_no_known_missing_entry_is_stale():
    assert "codec/assets/default_codec.safetensors" in ASSETS
    assert set(KNOWN_MISSING) <= set(ASSETS), set(KNOWN_MISSING) - set(ASSETS)


def test_recipe_scripts_reads_run_sh_cd_and_modules():
    assert recipe_scripts("egs/mini/dialogue1/run.sh --tiny true\negs/mini/dialogue1/run.sh --stage 7") == [
        ROOT / "egs/mini/dialogue1/run.sh"] * 2
    assert recipe_scripts("cd egs/mini/codec1 && ./run.sh --export_to x") == [ROOT / "egs/mini/codec1/run.sh"]
    assert recipe_scripts("python -m recipes.dialogue.train --config c.yaml") == [ROOT / "recipes/dialogue/train.py"]
    assert recipe_scripts("python -m recipes.score --data d") == [ROOT / "recipes/score/__main__.py"]
    assert not (ROOT / "egs/mini/dialogue1/nothing.sh").exists()
    assert recipe_scripts("egs/mini/dialogue1/nothing.sh") == [ROOT / "egs/mini/dialogue1/nothing.sh"]


def test_a_saved_dialogue_model_carries_its_recipe(tmp_path):
    from dialogue import DialogueConfig, save_dialogue
    from dialogue.config import StreamConfig
    from dialogue.model import DuplexModel
    from dialogue.tokenizer import train_tokenizer

    tok = train_tokenizer(["what is two plus two", "spell cat"] * 5, 30)
    streams = StreamConfig(frames_per_step=2, codec_frame_rate=25.0, codebook_size=16, voice_dim=4, silence_token=0,
                           text_vocab_size=tok.vocab_size, codec_latency_ms=10.0)
    cfg = DialogueConfig(streams=streams)
    save_dialogue(tmp_path / "m.safetensors", DuplexModel(cfg), tok, "abc", torch.zeros(4),
                  recipe="egs/mini/dialogue1/run.sh --tiny true")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        assert f.metadata()["recipe"] == "egs/mini/dialogue1/run.sh --tiny true"
