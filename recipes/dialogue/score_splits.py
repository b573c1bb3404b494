"""The held-out splits' table: each split scored as the model ships, one row per split, into one RESULTS.md.

    python -m recipes.dialogue.score_splits --model exp/dialogue/model.safetensors --codec exp/codec.safetensors \
        --split seen=data/test_seen --split unseen_voice=data/test_unseen_voice --split real=data/test_real \
        --split unseen_instance=data/test_unseen_instance --split unknown=data/test_unknown \
        --out exp/dialogue/score_test --results exp/RESULTS.md [--runs 3] [--asr]

Every split (a corpus of `recipes.dialogue.synth` with its `voices` / `instances` / `phrasings` / `recordings` split,
or the real readers' readings) is streamed through the duplex pipeline by `recipes.dialogue.score`'s scorer with
the demo's sampling over `--runs` seeds (default 3; each figure is the mean over the runs with the lowest and highest
run beside it) and Silero VAD on the system channel. A row gives task accuracy from the system's audio (pocketsphinx)
beside the monologue's; for questions outside its knowledge the share answered "i do not know" and the share answered
with anything else (a confident wrong answer); turn-taking (takeover in pauses, replies to a reading nobody asked
about, yielding within 0.4 s over every interruption with those the system was silent at apart, keeping the turn
over a backchannel, median response latency); and the system channel's intelligibility: the WER of ASR on the
system's audio against its own monologue, next to the WER of the same words spoken by the system voice (flite slt)
through the codec alone (encoded, decoded with the model's G_sys). Per split, `<out>/<split>/` holds the scorer's
files (wav, monologue.ctm, tasks.tsv, scores.json). Each row carries the command that scores that split alone.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from codec import load_codec
from dialogue import load_dialogue

from ..datadir import DataDir
from ..score.asr import normalise_words, word_errors
from .score import VADS, add_sampling_options, recognizer, score_model
from .synth import corpus_config

ROW_LABELS = {  # split name → what the row measures
    "seen": "seen voices and instances (new recordings; labelled seen)",
    "unseen_voice": "seen instance / unseen voice",
    "real": "real speakers never trained on (readings: nobody asks)",
    "unseen_phrasing": "unseen phrasing (held-out question templates)",
    "unseen_instance": "unseen instance (held-out arithmetic, counts, words)",
    "unknown": "out of knowledge (held-out questions)",
}
# (key in the aggregates, column title, kind): rate in %, seconds (median), or WER in %
COLUMNS = (("task_accuracy_asr", "task acc, audio (ASR)", "rate"), ("task_accuracy", "task acc, monologue", "rate"),
           ("unknown_said_so", "\"i do not know\"", "rate"), ("unknown_wrong", "confident wrong ↓", "rate"),
           ("takeover_rate", "takeover in pauses ↓", "rate"), ("spoke_in_reading", "replied to a reading ↓", "rate"),
           ("yield_rate", "yielded ≤ 0.4 s (all interruptions)", "rate"),
           ("silent_at_interruption", "of them silent", "rate"),
           ("backchannel_kept_talking", "kept turn over backchannel", "rate"),
           ("response_latency", "response latency (median)", "median"),
           ("system_wer", "system WER vs monologue ↓", "rate"))


def parse_split(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--split takes NAME=DATA_DIR, got {text!r}")
    return name, Path(path)


def held_out(data: Path) -> str:
    """What a split's corpus holds out, from the settings it was made with."""
    cfg = corpus_config(data)
    if cfg.p_reading >= 1:
        return f"readers of {Path(cfg.real_data).name}"
    if not cfg.held:
        return "voice kal16, every instance (made before the splits)"
    parts = [f"voices {cfg.voices}", f"instances {cfg.instances}", f"phrasings {cfg.phrasings}",
             f"recordings {cfg.recordings}"]
    if cfg.p_unknown:
        parts.append(f"unknown questions {100 * cfg.p_unknown:.0f} %")
    return ", ".join(parts)


def codec_alone_wer(codec, said: list[list[str]], g_sys: torch.Tensor | None, asr,
                    voice: str = "slt") -> tuple[float | None, int]:
    """WER of ASR on the monologue's words spoken by the system's TTS voice and passed through the codec alone
    (encode, decode with G_sys): the intelligibility the model's audio is measured against. (wer, words)."""
    from ..synth.flite import synthesize

    errors = words = 0
    for ws in said:
        if not ws:
            continue
        syn = synthesize(" ".join(ws), voice)
        tokens = codec.encode(torch.from_numpy(syn.audio)[None], syn.sample_rate)
        wav = codec.decode(tokens, g_sys)[0, 0].float().cpu().numpy()
        if codec.sample_rate != asr.sample_rate:
            import torchaudio.functional as AF

            wav = AF.resample(torch.from_numpy(wav), codec.sample_rate, asr.sample_rate).numpy()
        errors += word_errors(ws, normalise_words(asr.transcribe(wav)))
        words += len(ws)
    return (errors / words if words else None), words


def run_spread(runs: list[dict], key: str, kind: str) -> tuple[float | None, float | None, float | None, int]:
    """(mean, lowest, highest, events per run) of one figure over the runs; None where no run had the event."""
    values, counts = [], []
    for r in runs:
        v = r.get(key)
        if v is None or v[0] is None:
            continue
        values.append(v[1] if kind == "median" else v[0])
        counts.append(v[-1])
    if not values:
        return None, None, None, 0
    return float(np.mean(values)), float(min(values)), float(max(values)), int(round(np.mean(counts)))


def cell(spread: tuple, kind: str) -> str:
    mean, lo, hi, n = spread
    if mean is None:
        return "–"
    if kind == "median":
        return f"{mean:.2f} s [{lo:.2f}–{hi:.2f}]"
    return f"{100 * mean:.0f} % [{100 * lo:.0f}–{100 * hi:.0f}] ({n})"


def score_split(name: str, data: Path, args, codec, bundle, asr) -> dict:
    """One split through `recipes.dialogue.score`'s scorer: its runs' figures, the codec-alone WER, the command."""
    d = DataDir.load(data)
    metas = {u: json.loads((data / "meta" / f"{u}.json").read_text()) for u in d.utts}
    split_args = argparse.Namespace(**vars(args))
    split_args.out = args.out / name
    split_args.out.mkdir(parents=True, exist_ok=True)
    split_args.text_trace = False
    scored, speed = score_model(d, metas, split_args, codec, bundle, None, asr)
    alone = (None, 0)
    if asr is not None:
        alone = codec_alone_wer(codec, speed.pop("asr_said") or [], bundle.system_voice, asr)
    runs = speed["runs"]
    n = len(d.utts[:args.max_conversations] if args.max_conversations else d.utts)
    row = {"split": name, "data": str(data), "held_out": held_out(data), "conversations": n, "runs": runs,
           "codec_alone_wer": alone, "pooled": scored[args.vad],
           "figures": {key: run_spread(runs, key, kind) for key, _, kind in COLUMNS},
           "command": shlex.join(command_for(args, [f"{name}={data}"]))}
    (split_args.out / "scores.json").write_text(json.dumps(row | {"speed": speed}, indent=1, default=str))
    return row


def command_for(args, splits: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "recipes.dialogue.score_splits", "--model", str(args.model), "--codec", str(args.codec),
           "--out", str(args.out), "--runs", str(args.runs), "--vad", args.vad]
    for s in splits:
        cmd += ["--split", s]
    if args.asr:
        cmd.append("--asr")
    if args.max_conversations:
        cmd += ["--max-conversations", str(args.max_conversations)]
    return cmd


def write_table(path: Path, rows: list[dict], args, description: str, full_command: str) -> None:
    head = ["split", "held out", "conv."] + [c[1] for c in COLUMNS] + ["same words, codec alone", "command"]
    lines = [f"# Dialogue on held-out splits ({args.title})", "",
             f"Model: `{args.model}` ({description}); codec `{args.codec}`. Sampled as the demo ships "
             f"(text temperature {args.text_temperature:g} top-k {args.text_top_k}, audio {args.audio_temperature:g} "
             f"top-k {args.audio_top_k}), {args.runs} runs with other seeds: each figure is the mean over the runs "
             f"[lowest–highest run] (events per run). System speech by {args.vad} VAD. Task accuracy leaves out the "
             f"questions outside its knowledge (their own columns). Yielding counts every interruption; \"of them "
             f"silent\": the system was not talking when the user cut in. System WER: ASR of the system's audio "
             f"against its own monologue (per answered turn), beside the same words spoken by flite slt through the "
             f"codec alone.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        wer, words = r["codec_alone_wer"]
        alone = "–" if wer is None else f"{100 * wer:.0f} % ({words} words)"
        cells = [f"{ROW_LABELS.get(r['split'], r['split'])} (`{Path(r['data']).name}`)", r["held_out"],
                 str(r["conversations"])] + [cell(r["figures"][key], kind) for key, _, kind in COLUMNS]
        lines.append("| " + " | ".join(cells + [alone, f"`{r['command']}`"]) + " |")
    lines += ["", "All rows:", "", "```", full_command, "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--codec", type=Path, default=None)
    p.add_argument("--split", type=parse_split, action="append", required=True, metavar="NAME=DATA_DIR",
                   help=f"a split to score, one row each (names with a label: {', '.join(ROW_LABELS)})")
    p.add_argument("--out", type=Path, required=True, help="per split: <out>/<name>/ (the scorer's files)")
    p.add_argument("--results", type=Path, default=None, help="the table (default <out>/RESULTS.md)")
    p.add_argument("--title", default="test split", help="the table's heading, e.g. 'validation split'")
    p.add_argument("--vad", choices=VADS, default="silero")
    p.add_argument("--asr", action="store_true", help="task accuracy from the audio and the system WER (pocketsphinx)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-conversations", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tail", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    add_sampling_options(p)
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs must be at least 1, got {args.runs}")
    names = [n for n, _ in args.split]
    if len(set(names)) != len(names):
        p.error(f"--split names must differ, got {names}")
    torch.set_num_threads(args.threads)
    codec = load_codec(args.codec)
    bundle = load_dialogue(args.model, codec_id=codec.codec_id)
    asr = recognizer(args.asr)
    rows = [score_split(name, data, args, codec, bundle, asr) for name, data in args.split]
    results = args.results or args.out / "RESULTS.md"
    full = shlex.join(command_for(args, [f"{n}={d}" for n, d in args.split]) +
                      (["--results", str(results)] if args.results else []))
    write_table(results, rows, args, bundle.description, full)
    (args.out / "scores.json").write_text(json.dumps(rows, indent=1, default=str))
    print(results.read_text())


if __name__ == "__main__":
    main()
