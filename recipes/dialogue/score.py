"""Score the dialogue model's turn-taking and task accuracy on test conversations.

    python -m recipes.dialogue.score --data data/test --model exp/dialogue/model.safetensors \
        --codec exp/codec/codec.safetensors --out exp/dialogue/score [--vad silero|relative|energy] [--batch 4]

Streams every test conversation's user channel through the full-duplex pipeline (the same code as
`python -m dialogue.demo`, B conversations at a time), writes each stereo output and the inner
monologue, then measures on the system channel (VAD) and the monologue: takeover rate in user
pauses, response latency after the user's end of turn, stop latency after an interruption,
whether the system keeps talking through a backchannel, and task / style accuracy. The corpus's own
system channel is scored the same way (`reference` row) as the ceiling. A model with a listening
head also gets the WER of its streaming transcript of the user against the user CTM (heard.ctm),
overall and per speaking style. Sampling makes one pass over a small test set noisy: `--runs N`
pools N passes with other seeds (default 3) and reports the lowest and highest single pass beside the pooled rates.
Scored as it ships: the demo's sampling (`dialogue.SamplingConfig`'s defaults) and Silero VAD (or `relative`: an
energy threshold under the channel's own loud frames), so a codec's loudness moves no figure; every interruption
is in the yield rate's denominator, those the system was silent at counted apart. The held-out splits' table is
`recipes.dialogue.score_splits`, which runs this scorer per split.
Writes scores.json, RESULTS.md (with task accuracy per kind of task and the command) and
interruptions.tsv (per interruption: stop latency and what the listening head heard around its onset)
and tasks.tsv (per answered turn and pass: the question, what the listening head heard of it, the
answer, what the system said): with a listening head, RESULTS.md splits task accuracy into turns whose
question was heard whole and the others. With --text-trace, text_trace.tsv holds every step of the
first pass: the text token chosen and the model's probability of it, of PAD and of EPAD. Those files' formats and
RESULTS.md's table are `recipes.dialogue.score_report`.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from codec import load_codec
from codec.audio import load_audio, to_mono_batch
from dialogue import Columns, SamplingConfig, load_dialogue
from dialogue.pipeline import run_duplex

from ..ctm import CtmEntry, group_by_utt, read_ctm, write_ctm
from ..datadir import DataDir
from ..score.asr import word_errors
from .prepare import TokenSet
from .score_report import (TEXT_TRACE_HEADER, interruption_rows, misses_by_outcome, task_by_hearing, text_trace_rows,
                           write_results, write_task_rows)
from .turns import (TokenVad, aggregate, asr_task_correct, energy_vad, score_conversation, silero_vad, task_rows,
                    asr_turns, RELATIVE_VAD_DB)

VADS = ("silero", "relative", "energy")
RUN_SEED_STRIDE = 1_000_003  # run r samples conversation i with seed + r * stride + i


def vad(wav: np.ndarray, sr: int, kind: str):
    """System speech segments: Silero VAD, an energy threshold relative to the channel's level, or the fixed
    -38 dBFS one of the scores before the held-out splits (`energy`: it moves with the codec's loudness)."""
    if kind == "silero":
        return silero_vad(wav, sr)
    if kind == "relative":
        return energy_vad(wav, sr, threshold_db=RELATIVE_VAD_DB, relative=True)
    return energy_vad(wav, sr)


def recognizer(enabled: bool):
    if not enabled:
        return None
    from ..score.asr import Recognizer  # pocketsphinx's bundled en-us model

    return Recognizer()


def score_reference(d: DataDir, metas: dict, kind: str, token_vad: TokenVad | None, codec, asr,
                    latency: float | None = None) -> dict:
    """The corpus's own system channel and transcript, scored like a model's output. With `latency`
    (seconds: a model's theoretical latency) also the same channel played that much later ("delayed"):
    what a model that imitates the corpus perfectly scores through the streaming pipeline."""
    ctm = group_by_utt(read_ctm(d.path / "system.ctm"))
    results: dict[str, list] = {kind: [], "tokens": [], "delayed": []}
    for utt in d.utts:
        wav, sr = sf.read(d.wav_path(utt), dtype="float32")
        words = [(e.token, e.start) for e in ctm.get(utt, [])]
        speech = vad(wav[:, 1], sr, kind)
        results[kind].append(score_conversation(metas[utt], speech, words))
        if latency is not None:
            results["delayed"].append(score_conversation(metas[utt], [(a + latency, b + latency) for a, b in speech],
                                                         [(w, t + latency) for w, t in words]))
        if asr is not None:
            results[kind][-1]["task_correct_asr"] = asr_task_correct(metas[utt], wav[:, 1], sr, asr)
        if token_vad is not None:
            x = to_mono_batch(torch.from_numpy(wav[:, 1].copy())[None], sr, codec.sample_rate)
            codes = codec.encode_frames(x, codec.sample_rate)[0][0]
            results["tokens"].append(score_conversation(metas[utt], token_vad.segments(codes, 1 / codec.frame_rate),
                                                        words))
    return {k: aggregate(v) for k, v in results.items() if v}


def score_model(d: DataDir, metas: dict, args, codec, bundle, token_vad: TokenVad | None, asr) -> tuple[dict, dict]:
    """Every test conversation run `args.runs` times (sampling seeds differ per run); scores pooled
    over runs, plus each run's own figures (scores.json "runs") to show the sampling spread. The
    audio, monologue and heard transcript written are those of the first run."""
    sampling = SamplingConfig.from_args(args)
    results: dict[str, list] = {args.vad: [], "tokens": []}
    per_run: list[dict] = []
    times, steps = [], 0
    (args.out / "wav").mkdir(parents=True, exist_ok=True)
    ctm, heard_ctm, events, tasks, trace = [], [], [], [], []
    user_ctm = group_by_utt(read_ctm(d.path / "user.ctm")) if bundle.model.cfg.user_text_delay is not None else {}
    heard_by_style: dict[str, list[int]] = {}  # style -> [word errors, reference words]
    utts = d.utts[:args.max_conversations] if args.max_conversations else d.utts
    voice = bundle.system_voice if bundle.model.cfg.system_voice else None
    run_results: list[list[dict]] = [[] for _ in range(args.runs)]
    system_wer = [[0, 0] for _ in range(args.runs)]  # per run: ASR word errors on the system audio, monologue words
    asr_said: list[list[str]] = []  # run 0: the monologue's words of every answered turn's window (codec-alone WER)
    tail = round(args.tail * codec.sample_rate)
    for i in range(0, len(utts), args.batch):
        batch = utts[i:i + args.batch]  # the user audio is read and resampled once for all runs
        users = [to_mono_batch(*_user_channel(d.wav_path(u)), codec.sample_rate)[0] for u in batch]
        n = max(len(x) for x in users) + tail
        user = torch.stack([torch.nn.functional.pad(x, (0, n - len(x))) for x in users])
        for run_index in range(args.runs):
            base = args.seed + RUN_SEED_STRIDE * run_index
            run = run_duplex(codec, bundle.model, user, voice, sampling, seeds=[base + i + j for j in range(len(batch))],
                             trace_text=args.text_trace and run_index == 0)
            times += run.step_times
            steps += len(run.step_times)
            for j, utt in enumerate(batch):
                length = len(users[j]) + tail  # the same for every conversation, whatever its batch mates
                stereo = run.stereo(j)[:length].numpy()
                words = _before(run.words(j, bundle.tokenizer), length / codec.sample_rate)
                said = [(w.word, w.start) for w in words]
                heard = (_before(run.heard_words(j, bundle.tokenizer), length / codec.sample_rate)
                         if run.heard_tokens is not None else None)
                if run_index == 0:
                    sf.write(args.out / "wav" / f"{utt}.wav", stereo, run.sample_rate, subtype="PCM_16")
                    ctm += [CtmEntry(utt, "2", w.start, w.end - w.start, w.word) for w in words]
                    heard_ctm += [CtmEntry(utt, "1", w.start, w.end - w.start, w.word) for w in heard or []]
                    if run.text_probs is not None:
                        trace += text_trace_rows(utt, run, j, length / codec.sample_rate, bundle.tokenizer)
                if heard is not None:
                    ref = [e.token for e in user_ctm.get(utt, [])]
                    counts = heard_by_style.setdefault(metas[utt]["style"], [0, 0])
                    counts[0] += word_errors(ref, [w.word for w in heard])
                    counts[1] += len(ref)
                speech = vad(stereo[:, 1], run.sample_rate, args.vad)
                heard_at = None if heard is None else [(w.word, w.start) for w in heard]
                rows = task_rows(metas[utt], said, heard_at)
                scored = score_conversation(metas[utt], speech, said, rows=rows)
                run_results[run_index].append(scored)
                events += interruption_rows(utt, metas[utt], speech, heard, run_index)
                tasks += [{"conversation": utt, "run": run_index} | row for row in rows]
                if asr is not None:
                    heard_turns = asr_turns(metas[utt], stereo[:, 1], run.sample_rate, asr, said)
                    scored["task_correct_asr"] = [r["correct"] for r in heard_turns if r["task"] != "unknown"]
                    scored["unknown_said_so_asr"] = [r["correct"] for r in heard_turns if r["task"] == "unknown"]
                    for r in heard_turns:
                        system_wer[run_index][0] += r["errors"]
                        system_wer[run_index][1] += len(r["said"])
                        if run_index == 0:
                            asr_said.append(r["said"])
                if token_vad is not None:
                    frames = -(-length // codec.config.samples_per_token)
                    segs = token_vad.segments(run.system_tokens[j].flatten()[:frames], 1 / codec.frame_rate,
                                              run.output_offset)
                    results["tokens"].append(score_conversation(metas[utt], segs, said, rows=rows))
    for scored_run, (errors, words) in zip(run_results, system_wer):
        results[args.vad] += scored_run
        per_run.append(aggregate(scored_run) | {"system_wer": (errors / words if words else None, words)})
    write_ctm(args.out / "monologue.ctm", ctm)
    (args.out / "interruptions.tsv").write_text(
        "\n".join(["conversation\trun\tuser_onset\tstop_latency\tyielded\theard"] + events) + "\n")
    if heard_ctm:
        write_ctm(args.out / "heard.ctm", heard_ctm)
    write_task_rows(args.out / "tasks.tsv", tasks)
    if args.text_trace:
        (args.out / "text_trace.tsv").write_text("\n".join([TEXT_TRACE_HEADER] + trace) + "\n")
    t = np.array(times) * 1000
    cfg = bundle.model.cfg
    heard_errors, heard_ref = (sum(c[i] for c in heard_by_style.values()) for i in (0, 1))
    wer_per_style = {style: (e / n if n else None, n) for style, (e, n) in sorted(heard_by_style.items())}
    speed = {"step_ms_mean": float(t.mean()), "step_ms_p95": float(np.percentile(t, 95)), "batch": args.batch,
             "rtf": float(t.sum() / 1000 / (steps * cfg.streams.step_seconds)),
             "theoretical_latency_ms": cfg.theoretical_latency_ms, "trained": bundle.description,
             "listening_wer": heard_errors / heard_ref if heard_ref else None, "listening_words": heard_ref,
             "listening_wer_per_style": wer_per_style, "runs": per_run, "tail_s": args.tail,
             "task_by_hearing": task_by_hearing(tasks), "misses_by_outcome": misses_by_outcome(tasks),
             "asr_said": asr_said if asr is not None else None}
    return {k: aggregate(v) for k, v in results.items() if v}, speed


def _before(words: list, seconds: float) -> list:
    """The words that start before `seconds`: a conversation's words end with its own audio and tail,
    not with the longest conversation of its batch."""
    return [w for w in words if w.start < seconds]



def _user_channel(path: Path) -> tuple[torch.Tensor, int]:
    wav, sr = load_audio(path)
    return wav[:1], sr



def add_sampling_options(p: argparse.ArgumentParser) -> None:
    """The sampling options, defaulting to the demo's (dialogue.SamplingConfig): scored as it ships."""
    SamplingConfig.add_arguments(p)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="dialogue checkpoint (omit: reference only)")
    p.add_argument("--codec", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--vad", choices=VADS, default="silero",
                   help="VAD on the system's audio (relative: energy under the channel's loud frames; energy: fixed dBFS)")
    p.add_argument("--token-vad", type=Path, default=None,
                   help="training token file (prepare tokens): also score with a VAD on the system's codec tokens")
    p.add_argument("--asr", action="store_true", help="also task accuracy from the system audio (pocketsphinx)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-conversations", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=3,
                   help="free-running passes over the test set, each with other sampling seeds (scores pooled)")
    add_sampling_options(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--text-trace", action="store_true",
                   help="write text_trace.tsv: per step of the first pass, the text token chosen and the model's "
                        "probability of it, of PAD and of EPAD (why a reply stopped, or started late)")
    p.add_argument("--tail", type=float, default=2.0,
                   help="seconds of user silence streamed after each conversation's audio, so the system can end "
                        "its last reply (the corpus leaves 0.6-1 s; the model answers ~0.25 s later than it)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs must be at least 1, got {args.runs}")
    if args.tail < 0:
        p.error(f"--tail must be at least 0 seconds, got {args.tail}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    d = DataDir.load(args.data)
    metas = {u: json.loads((args.data / "meta" / f"{u}.json").read_text()) for u in d.utts}
    codec = load_codec(args.codec)
    token_vad = None
    if args.token_vad is not None:
        train = TokenSet(args.token_vad)
        cols = Columns(train.streams.frames_per_step)
        token_vad = TokenVad.fit([t[:, cols.system] for t in train.tokens], train.system_speech,
                                 train.streams.codebook_size)
    rows = {"_conversations": len(d.utts)}
    label = {args.vad: f"{args.vad} VAD", "tokens": "token VAD"}
    asr = recognizer(args.asr)
    latency = bundle = None
    if args.model is not None:
        bundle = load_dialogue(args.model, codec_id=codec.codec_id)
        latency = bundle.model.cfg.theoretical_latency_ms / 1000
        label["delayed"] = f"{args.vad} VAD, played {1000 * latency:.0f} ms late (the model's latency)"
    for kind, agg in score_reference(d, metas, args.vad, token_vad, codec, asr, latency).items():
        rows[f"reference (corpus), {label[kind]}"] = agg
    speed = None
    if args.model is not None:
        start = time.time()
        scored, speed = score_model(d, metas, args, codec, bundle, token_vad, asr)
        for kind, agg in scored.items():
            rows[f"model, {label[kind]}"] = agg
        speed["wall_s"] = time.time() - start
    scores = {k: v for k, v in rows.items() if not k.startswith("_")}
    (args.out / "scores.json").write_text(json.dumps({"scores": scores, "speed": speed, "vad": args.vad}, indent=1))
    write_results(args.out / "RESULTS.md", rows, speed, args.data,
                  shlex.join([sys.executable, "-m", "recipes.dialogue.score"] + sys.argv[1:]), label[args.vad])
    print((args.out / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
