"""Teacher-forced scores of a dialogue model on token files: per-stream cross-entropy and accuracy
with every previous token given, on held-out conversations next to (a sample of) the training ones.

    python -m recipes.dialogue.evaluate --model exp/dialogue/model.safetensors \
        --tokens exp/tokens/test.safetensors exp/tokens/train.safetensors --max-conversations 200

The gap between the two rows separates generalisation from memorisation; the free-running scores
(`recipes.dialogue.score`) add what sampling its own history costs. Word-piece accuracy is dominated
by pieces that follow from the previous ones ("is spelled" after "cake"), so the decision points are
scored apart, from the corpus metadata: the first reply's first piece (the style word: did it hear
how the user spoke? later replies could copy it from the history), the first piece of every
answer after it (did it hear what was asked?), and the first piece of every answer word (the sum,
the letters, the numbers counted, the fact: does it know the answer?), also per kind of task, and
the EPAD one step before each answer word and before the last one (does the reply go on: a count
that stops a number early misses that EPAD).
A model that reads its transcript of the user back (`user_text_input`) is given the reference
transcript here: an upper bound on what its own listening head gives it free-running.
`--swap-audio user` (or `system`, or both) adds a row with those audio columns
taken from the next conversation, text and transcript kept: which answers come from the words (the
system's echo of the question, its transcript of the user) and which from the audio?
`--predicted system` (and/or `transcript`) adds a row whose system audio (the transcript of the
user it reads back) is the model's own one-step prediction, system audio sampled at
`--predicted-temperature` (argmax at 0), the rest kept: how much of the gap to the free-running
scores comes from reading back its own imperfect voice and its own hearing instead of the corpus's?
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import torch

from dialogue import LossWeights, duplex_loss, load_dialogue, text_stream_words
from dialogue.layout import Columns, undelay_tokens
from dialogue.tokenizer import TextTokenizer

from ..ctm import group_by_utt, read_ctm

from .prepare import TokenSet
from .task import collate, sample_codes
from .tasks import answer_positions

AUDIO_STREAMS = ("user", "system")
PREDICTABLE = ("system", "transcript")  # what `own_predictions` can replace


@dataclasses.dataclass
class ReplySteps:
    """Decision steps of one reply on the undelayed text column."""

    style: int  # the reply's first word (the style word)
    onset: int  # the word after it: the answer's first word, often a copy of the question ("eight plus ...")
    task: str
    answer: list[int]  # every answer word (the sum, the letters, the numbers, the fact); empty if cut short


def reply_decision_steps(data: TokenSet, tokenizer: TextTokenizer, n: int) -> list[list[ReplySteps]]:
    """Per conversation, the decision steps of every reply, from the corpus metadata of the data dir
    the tokens were made from (the grid keeps the CTM's word order and count, so the i-th word of the
    column is the i-th word of system.ctm). Answer words are matched from the reply's end: in "two
    times one is two" the answer is the last "two"."""
    data_dir = Path(data.data_dir)
    ctm = group_by_utt(read_ctm(data_dir / "system.ctm"))
    out = []
    for i in range(n):
        utt = data.ids[i]
        meta = json.loads((data_dir / "meta" / f"{utt}.json").read_text())
        entries = ctm.get(utt, [])
        starts = [e.start for e in entries]
        words = text_stream_words(data.tokens[i][:, 0], data.streams.step_seconds, tokenizer)
        steps = [round(w.start / data.streams.step_seconds) for w in words]
        firsts = [min(range(len(starts)), key=lambda j: abs(starts[j] - t["reply_start"]), default=None)
                  for t in meta["turns"]]
        replies = []
        for k, (turn, j) in enumerate(zip(meta["turns"], firsts)):
            if j is None or j + 1 >= min(len(steps), len(starts)):
                continue
            end = next((f for f in firsts[k + 1:] if f is not None and f > j), len(entries))
            reply = [e.token for e in entries[j + 1:end]]
            answer = [] if turn["interrupted"] else answer_positions(reply, turn["answer"])
            replies.append(ReplySteps(steps[j], steps[j + 1], turn["task"],
                                      [steps[j + 1 + a] for a in answer if j + 1 + a < len(steps)]))
        out.append(replies)
    return out


@torch.inference_mode()
def teacher_forced(model, data: TokenSet, max_conversations: int = 0, batch_size: int = 8,
                   tokenizer: TextTokenizer | None = None) -> dict[str, float]:
    """Scalars of `duplex_loss` averaged over whole conversations (weighted by their real steps);
    with a tokenizer and the corpus metadata beside the tokens, also the text accuracy at the
    replies' decision points (acc/reply_style: first reply only, acc/reply_answer: the answer's
    first word, acc/reply_answer_words[/task]: every answer word, acc/reply_answer_epad/task and
    acc/reply_answer_last_epad/task: the EPAD before each / the last answer word) and their counts."""
    n = len(data) if max_conversations <= 0 else min(len(data), max_conversations)
    if n == 0:
        raise ValueError(f"{data.path}: no conversations")
    if data.streams != model.cfg.streams:
        raise ValueError(f"{data.path}: its streams {data.streams} are not the model's {model.cfg.streams}")
    has_meta = (Path(data.data_dir) / "meta").is_dir() and (Path(data.data_dir) / "system.ctm").is_file()
    decisions = reply_decision_steps(data, tokenizer, n) if tokenizer is not None and has_meta else None
    hits: dict[str, list[bool]] = {"style": [], "answer": [], "answer_words": []}
    totals: dict[str, float] = {}
    weight = 0
    for start in range(0, n, batch_size):
        picks = list(range(start, min(n, start + batch_size)))
        batch = collate(data, picks, model.cfg, crop_steps=10**9)
        logits = model(batch["tokens"], batch["user_voice"], batch["system_voice"], batch.get("user_text"))
        _, scalars = duplex_loss(model, logits, batch["tokens"], batch["mask"], LossWeights(), batch.get("user_text"))
        w = int(batch["mask"].sum())
        for k, v in scalars.items():
            totals[k] = totals.get(k, 0.0) + v * w
        weight += w
        if decisions is not None:
            guess, d = logits.text.argmax(-1), model.cfg.delays.text
            right = guess == batch["tokens"][..., 0]  # [B, S] on the delayed grid
            epad = batch["tokens"][..., 0] == TextTokenizer.EPAD
            for j, i in enumerate(picks):
                def hit(t: int, row: torch.Tensor = right[j]) -> bool:
                    return bool(row[t + d])

                def is_epad(t: int, row: torch.Tensor = epad[j]) -> bool:
                    return bool(row[t + d])

                for r, reply in enumerate(decisions[i]):
                    if r == 0:  # the style word only in the first reply: later ones can copy it from the history
                        hits["style"].append(hit(reply.style))
                    hits["answer"].append(hit(reply.onset))
                    words = [hit(t) for t in reply.answer]
                    hits["answer_words"] += words
                    hits.setdefault(f"answer_words/{reply.task}", []).extend(words)
                    # the EPAD a step before each answer word: does the reply go on (now)? and before the last
                    epads = [hit(t - 1) for t in reply.answer if is_epad(t - 1)]
                    hits.setdefault(f"answer_epad/{reply.task}", []).extend(epads)
                    if reply.answer and is_epad(reply.answer[-1] - 1):
                        hits.setdefault(f"answer_last_epad/{reply.task}", []).append(hit(reply.answer[-1] - 1))
    out = {k: v / weight for k, v in totals.items()} | {"conversations": n}
    return out | _hit_rates(hits, "reply_")


def swap_audio(data: TokenSet, streams: list[str] | tuple[str, ...], offset: int = 1) -> TokenSet:
    """A copy of `data` whose audio columns of `streams` ("user", "system") come from the conversation
    `offset` places on (wrapping round), cut or filled with silence to each one's length; the text column
    and the user transcript stay. Token files list a corpus grouped by style, so the next conversation
    mostly has the same style and an offset of about a third of the file mostly another style."""
    bad = [s for s in streams if s not in AUDIO_STREAMS]
    if bad or not streams:
        raise ValueError(f"swap_audio: streams {list(streams)}, expected some of {AUDIO_STREAMS}")
    if len(data) < 2 or offset % len(data) == 0:
        raise ValueError(f"{data.path}: swapping audio needs another conversation {offset} places on, "
                         f"the file has {len(data)}")
    cols = Columns(data.streams.frames_per_step)
    out = copy.copy(data)
    out.tokens = []
    for i, grid in enumerate(data.tokens):
        other, grid = data.tokens[(i + offset) % len(data)], grid.clone()
        m = min(len(grid), len(other))
        for name in streams:
            col = getattr(cols, name)
            grid[:m, col] = other[:m, col]
            grid[m:, col] = data.streams.silence_token
        out.tokens.append(grid)
    return out


@torch.inference_mode()
def own_predictions(model, data: TokenSet, what: list[str] | tuple[str, ...], max_conversations: int = 0,
                    temperature: float = 0.0, seed: int = 0, batch_size: int = 8) -> TokenSet:
    """A copy of the first `max_conversations` (0: all) of `data` where `what` is replaced by the
    model's teacher-forced prediction of it (every earlier token given): "system", its audio columns
    (sampled at `temperature` from a generator seeded `seed`, argmax at 0), "transcript", the user's
    text stream it reads back (the listening head's argmax). The text column and user audio stay."""
    bad = [w for w in what if w not in PREDICTABLE]
    if bad or not what:
        raise ValueError(f"own_predictions: {list(what)}, expected some of {PREDICTABLE}")
    if "transcript" in what and not model.cfg.user_text_input:
        raise ValueError(f"{model.cfg.name} does not read a transcript of the user back (user_text_input)")
    n = len(data) if max_conversations <= 0 else min(len(data), max_conversations)
    if n == 0:
        raise ValueError(f"{data.path}: no conversations")
    heard_delay = model.cfg.delays.user + (model.cfg.user_text_delay or 0)
    cols = Columns(data.streams.frames_per_step)
    delays = cols.delays(model.cfg.delays)
    g = torch.Generator().manual_seed(seed)
    out = copy.copy(data)
    out.tokens = []
    if "transcript" in what:
        out.user_text = list(data.user_text)
    for start in range(0, n, batch_size):
        picks = list(range(start, min(n, start + batch_size)))
        batch = collate(data, picks, model.cfg, crop_steps=10**9)
        logits = model(batch["tokens"], batch["user_voice"], batch["system_voice"], batch.get("user_text"))
        if "system" in what:  # sampled on the delayed grid, moved back to the token file's clock below
            predicted = batch["tokens"].clone()
            predicted[..., cols.system] = sample_codes(logits.system, temperature, g)
        for j, i in enumerate(picks):
            grid = data.tokens[i].clone()
            if "system" in what:
                grid[:, cols.system] = undelay_tokens(predicted[j], delays, len(grid))[:, cols.system]
            out.tokens.append(grid)
            if "transcript" in what:  # back from the head's clock (`user_text_targets`) to the user's
                heard = logits.user_text[j].argmax(-1)[heard_delay:heard_delay + len(grid)]
                out.user_text[i] = torch.cat([heard, data.user_text[i][len(heard):]]).to(data.user_text[i].dtype)
    out.ids = data.ids[:n]
    return out


def _hit_rates(hits: dict[str, list[bool]], prefix: str) -> dict[str, float]:
    """acc/<prefix><name> (share of hits) and count/<prefix><name> for every non-empty list of hits."""
    out = {}
    for name, h in sorted(hits.items()):
        if h:
            out[f"acc/{prefix}{name}"] = sum(h) / len(h)
            out[f"count/{prefix}{name}"] = len(h)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--tokens", type=Path, nargs="+", required=True, help="token files (recipes.dialogue.prepare)")
    p.add_argument("--max-conversations", type=int, default=0, help="first N of each file (0: all)")
    p.add_argument("--out", type=Path, default=None, help="also write the scores as JSON")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--swap-audio", nargs="+", choices=AUDIO_STREAMS, default=None,
                   help="also score each file with these audio columns from another conversation")
    p.add_argument("--swap-offset", type=int, default=1,
                   help="--swap-audio takes the audio of the conversation this many places on (default: the next)")
    p.add_argument("--predicted", nargs="+", choices=PREDICTABLE, default=None,
                   help="also score each file with these inputs replaced by the model's own predictions")
    p.add_argument("--predicted-temperature", type=float, default=0.0,
                   help="--predicted system: sample the audio at this temperature (0: argmax)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = load_dialogue(args.model)
    model = bundle.model.eval()
    rows = {}
    for path in args.tokens:
        data = TokenSet(path)
        if data.codec_id != bundle.codec_id:
            raise SystemExit(f"{path}: tokens of codec {data.codec_id}, {args.model} was trained on {bundle.codec_id}")
        rows[str(path)] = teacher_forced(model, data, args.max_conversations, tokenizer=bundle.tokenizer)
        if args.swap_audio:
            rows[f"{path}, {'+'.join(args.swap_audio)} audio swapped (+{args.swap_offset})"] = teacher_forced(
                model, swap_audio(data, args.swap_audio, args.swap_offset), args.max_conversations,
                tokenizer=bundle.tokenizer)
        if args.predicted:
            own = own_predictions(model, data, args.predicted, args.max_conversations, args.predicted_temperature)
            rows[f"{path}, own {'+'.join(args.predicted)} (temperature {args.predicted_temperature:g})"] = \
                teacher_forced(model, own, args.max_conversations, tokenizer=bundle.tokenizer)
    keys = ["loss/text", "acc/text", "acc/text_words", "acc/reply_style", "acc/reply_answer", "acc/reply_answer_words",
            "loss/system", "acc/system"]
    if model.cfg.user_text_delay is not None:
        keys += ["acc/user_text_words"]
    print("| tokens | conversations | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for path, r in rows.items():
        print(f"| {path} | {r['conversations']} | " + " | ".join(f"{r[k]:.3f}" if k in r else "–" for k in keys) + " |")
    for path, r in rows.items():
        for what in ("reply_answer_words", "reply_answer_epad", "reply_answer_last_epad"):
            per_task = [(k.split("/")[-1], r[k], r["count" + k[3:]]) for k in sorted(r)
                        if k.startswith(f"acc/{what}/")]
            if per_task:
                print(f"{what} per task, {Path(path).name}: " + ", ".join(f"{t} {a:.3f} ({c})" for t, a, c in per_task))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
