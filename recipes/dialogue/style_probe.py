"""Where is the user's speaking style: in the codec's semantic tokens or in its voice vector?

    python -m recipes.dialogue.style_probe --tokens exp/tokens/train.safetensors --codec exp/codec.safetensors \
        [--max-conversations 1200] [--out exp/style_probe.json]

The corpus makes the right reply depend on the user's style, and the model's style ablation
(`model.user_voice=false`) can only fall to chance if the tokens do not carry it. This fits the
codec scorer's linear probe (`recipes.score.tokens.probe_accuracy`: one half of the conversations
per style to train, the other to test) on (a) the user channel's tokens pooled over its speech
frames and (b) the user's running voice vector at the end of the conversation, with the style as
the label. Tokens near chance and voice high would mean a clean split of what from how.

    python -m recipes.dialogue.style_probe --data data/test --gains 1 0.25 [--codec PATH] [--out ...]

asks the same of a manner the corpus does not vary: loudness. The user channels are encoded again, each
at one of the gains in turn, and the gain is the label: would a loud/quiet style leave the tokens?
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import soundfile as sf
import torch

from codec import Codec, load_codec
from dialogue import Columns
from dialogue.features import silence_token

from ..datadir import DataDir
from ..score.tokens import pooled_token_features, probe_accuracy, probe_levels
from .prepare import TokenSet


def speech_only(tokens, silence: int):
    """A token sequence (array or tensor) without its silence tokens; the whole of it if nothing else is left."""
    speech = tokens[tokens != silence]
    return speech if len(speech) else tokens


def conversation_styles(data: TokenSet) -> list[str]:
    """Each conversation's style, from the corpus metadata of the data dir the token file was made from."""
    meta_dir = Path(data.data_dir) / "meta"
    if not meta_dir.is_dir():
        raise ValueError(f"{data.path}: its data dir {data.data_dir} has no meta/ (the corpus metadata with "
                         f"each conversation's style)")
    return [json.loads((meta_dir / f"{cid}.json").read_text())["style"] for cid in data.ids]


def style_probe(data: TokenSet, levels: list[int] | None, max_conversations: int = 0) -> dict:
    """{"tokens": probe result, "voice": probe result, "conversations": n} (probe results as
    `probe_accuracy` returns them: acc, chance, num_classes, num_test). With a maximum, the
    conversations are taken evenly spread over the file (its ids are grouped by style)."""
    n = len(data) if max_conversations <= 0 else min(len(data), max_conversations)
    picks = np.linspace(0, len(data) - 1, n).round().astype(int).tolist() if n else []
    if n == 0:
        raise ValueError(f"{data.path}: no conversations")
    all_styles = conversation_styles(data)
    cols = Columns(data.streams.frames_per_step)
    styles, token_feats, voices = [], [], []
    for i in picks:
        styles.append(all_styles[i])
        speech = speech_only(data.tokens[i][:, cols.user].reshape(-1).numpy(), data.streams.silence_token)
        token_feats.append(pooled_token_features(speech, data.streams.codebook_size, levels))
        voices.append(data.user_voice[i][-1].numpy())
    return _probes(token_feats, voices, styles, [data.ids[i] for i in picks], levels)


def _probes(token_feats: list[np.ndarray], voices: list[np.ndarray], labels: list[str], ids: list[str],
            levels: list[int] | None) -> dict:
    """The linear probe on the pooled tokens and on the voice vectors, for the same labels."""
    return {"tokens": probe_accuracy(np.stack(token_feats), labels, ids),
            "voice": probe_accuracy(np.stack(voices), labels, ids), "conversations": len(ids),
            "token_feature": "fsq_digits" if levels else "token_histogram"}


def gain_probe(codec: Codec, data_dir: Path, gains: list[float], max_conversations: int = 0) -> dict:
    """`style_probe`'s two probes with the loudness as the style: conversation k's user channel (the
    left one) scaled by gains[k % len(gains)], encoded, then pooled speech tokens / last voice vector."""
    if len(gains) < 2 or min(gains) <= 0:
        raise ValueError(f"gains must be two or more positive factors, got {gains}")
    d = DataDir.load(data_dir)
    utts = d.utts[:max_conversations] if max_conversations > 0 else d.utts
    if not utts:
        raise ValueError(f"{data_dir}: no conversations to encode")
    levels = probe_levels(codec.config)
    silence = silence_token(codec)
    token_feats, voices, labels = [], [], []
    for k, utt in enumerate(utts):
        audio, sr = sf.read(d.wav_path(utt), dtype="float32", always_2d=True)
        gain = gains[k % len(gains)]
        enc = codec.encode(torch.from_numpy(audio[:, 0] * gain).clamp(-1, 1), sr)
        speech = speech_only(enc.codes.reshape(-1).numpy(), silence)
        token_feats.append(pooled_token_features(speech, codec.config.codebook_size, levels))
        voices.append(enc.voice[0].numpy())
        labels.append(f"gain {gain:g}")
    return {**_probes(token_feats, voices, labels, utts, levels), "gains": gains}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=Path, help="a token file (recipes.dialogue.prepare tokens): probe its styles")
    p.add_argument("--data", type=Path, help="with --gains: a data dir whose user channels are encoded again")
    p.add_argument("--gains", type=float, nargs="+", help="loudness factors, one per conversation in turn (the label)")
    p.add_argument("--codec", type=Path, default=None, help="the codec the tokens came from (for its FSQ levels)")
    p.add_argument("--max-conversations", type=int, default=1200)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if (args.tokens is None) == (args.gains is None) or (args.gains is not None and args.data is None):
        p.error("give --tokens (the corpus's styles) or --data with --gains (loudness as the style)")
    codec = load_codec(args.codec)
    if args.gains is not None:
        r = gain_probe(codec, args.data, args.gains, args.max_conversations)
        what = f"{len(args.gains)} gains"
    else:
        r = _token_file_probe(codec, args.tokens, args.max_conversations)
        what = f"{r['tokens']['num_classes']} styles"
    print(f"style probe on {r['conversations']} conversations ({r['tokens']['num_test']} held out, "
          f"{what}, chance {r['tokens']['chance']:.0%}): "
          f"from pooled user tokens {r['tokens']['acc']:.0%}, from the user's voice vector {r['voice']['acc']:.0%}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(r, indent=1))


def _token_file_probe(codec: Codec, tokens: Path, max_conversations: int) -> dict:
    data = TokenSet(tokens)
    if codec.codec_id != data.codec_id:
        raise SystemExit(f"{tokens}: tokens of codec {data.codec_id}, --codec is {codec.codec_id}")
    return style_probe(data, probe_levels(codec.config), max_conversations)


if __name__ == "__main__":
    main()
