"""How sure the model was where its replies stopped, from a `score.py --text-trace` directory.

    python -m recipes.dialogue.trace_stops --score exp/dialogue/score --data data/test [--task counting]

For every answered turn of the first pass (tasks.tsv, run 0) whose reply is scored right or cut
short, it finds the reply's last word among the words of that pass (monologue.ctm: the words said,
in order, from the question's start on) and reads text_trace.tsv at the step after it: the model's
p(PAD) and p(EPAD) there. A cut-short reply stopped with p(PAD) near 1 is a decision the model is
sure of, which no sampling setting can repair; one near 0.5 is a coin the sampler lost.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ..ctm import group_by_utt, read_ctm
from .score import TEXT_TRACE_HEADER, read_task_rows


def read_trace(path: Path) -> dict[str, list[tuple[float, float, float]]]:
    """conversation -> [(time, p_pad, p_epad)] per step, in step order (time: when the step's token was
    emitted, the end of the step)."""
    lines = path.read_text().splitlines()
    if not lines or lines[0] != TEXT_TRACE_HEADER:
        raise ValueError(f"{path}: not a text_trace.tsv (score.py --text-trace)")
    trace: dict[str, list] = {}
    for line in lines[1:]:
        conv, _, time_s, _, _, p_pad, p_epad = line.split("\t")
        trace.setdefault(conv, []).append((float(time_s), float(p_pad), float(p_epad)))
    return trace


def group_rows(rows) -> dict[str, list[dict[str, str]]]:
    """tasks.tsv rows by conversation, in their order."""
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row["conversation"], []).append(row)
    return out


def stop_probabilities(score: Path, data: Path, task: str = "counting") -> dict[str, list[dict]]:
    """outcome ("right" / "cut short") -> one dict per reply: conversation, answer, said, p_pad, p_epad."""
    trace = read_trace(score / "text_trace.tsv")
    # the first pass's words, as text_stream_words made them (start: first piece emitted; end: the end
    # of the step after the last piece, which is when that step's token is emitted)
    monologue = group_by_utt(read_ctm(score / "monologue.ctm"))
    first_pass = group_rows(r for r in read_task_rows(score / "tasks.tsv") if r["run"] == "0")
    found: dict[str, list[dict]] = {"right": [], "cut short": []}
    for conv, rows in first_pass.items():
        steps = trace.get(conv)
        if steps is None:
            continue
        step_seconds = steps[0][0]  # the first step is emitted at its end
        answered = [t for t in json.loads((data / "meta" / f"{conv}.json").read_text())["turns"]
                    if not t["interrupted"]]  # tasks.tsv has a row per answered turn, in order
        for turn, row in zip(answered, rows):
            if row["task"] != task or row["outcome"] not in found:
                continue
            said, end, i = row["said"].split(), None, 0
            for word in monologue.get(conv, []):
                if word.start >= turn["question_start"] and i < len(said) and word.token == said[i]:
                    i, end = i + 1, word.start + word.dur
                    if i == len(said):
                        break
            after = round(end / step_seconds) - 1 if i == len(said) else len(steps)  # the step emitted at `end`
            if after < len(steps):
                found[row["outcome"]].append({"conversation": conv, "answer": row["answer"], "said": row["said"],
                                              "p_pad": steps[after][1], "p_epad": steps[after][2]})
    return found


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--score", type=Path, required=True, help="a score.py --out directory made with --text-trace")
    p.add_argument("--data", type=Path, required=True, help="the data dir it scored (for the turns' times)")
    p.add_argument("--task", default="counting")
    args = p.parse_args(argv)
    for outcome, replies in stop_probabilities(args.score, args.data, args.task).items():
        if not replies:
            print(f"{outcome}: none")
            continue
        pads = [r["p_pad"] for r in replies]
        print(f"{outcome}: {len(replies)} replies, p(PAD) after the last word: median {statistics.median(pads):.3f}, "
              f"> 0.9 in {sum(x > 0.9 for x in pads)}; mean p(EPAD) {statistics.mean(r['p_epad'] for r in replies):.3f}")
        if outcome == "cut short":
            for r in replies:
                print(f"  p(PAD) {r['p_pad']:.3f}  answer [{r['answer']}]  said [{r['said']}]")


if __name__ == "__main__":
    main()
