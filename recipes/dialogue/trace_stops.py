"""How sure the model was where its replies stopped, from a `score.py --text-trace` directory.

    python -m recipes.dialogue.trace_stops --score exp/dialogue/score --data data/test [--task counting]

For every answered turn of the first pass (tasks.tsv, run 0) whose reply is scored right or cut
short, it finds the reply's last word in text_trace.tsv (the words said, in order, from the
question's start on) and reads the step after it: the model's p(PAD) and p(EPAD) there. A cut-short
reply stopped with p(PAD) near 1 is a decision the model is sure of, which no sampling setting can
repair; one near 0.5 is a coin the sampler lost.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

WORD_START = "\u2581"  # sentencepiece's mark of a word's first piece


def read_trace(path: Path) -> dict[str, list[tuple[int, float, str, float, float]]]:
    """conversation -> [(step, time, token, p_pad, p_epad)] in step order (time: when the token was emitted)."""
    lines = path.read_text().splitlines()
    if not lines or lines[0].split("\t")[:4] != ["conversation", "step", "time", "token"]:
        raise ValueError(f"{path}: not a text_trace.tsv (score.py --text-trace)")
    trace: dict[str, list] = {}
    for line in lines[1:]:
        conv, step, time_s, token, _, p_pad, p_epad = line.split("\t")
        trace.setdefault(conv, []).append((int(step), float(time_s), token, float(p_pad), float(p_epad)))
    return trace


def trace_words(steps: list[tuple[int, float, str, float, float]]) -> list[tuple[str, float, int]]:
    """The words of a traced monologue: (word, time of its first piece, step of its last piece), timed
    as the monologue's words are (monologue.ctm, tasks.tsv's reply windows)."""
    words: list[list] = []
    for step, time_s, token, _, _ in steps:
        if token.startswith("<"):  # PAD, EPAD, BOS, ...
            continue
        if token.startswith(WORD_START) or not words:
            words.append([token.lstrip(WORD_START), time_s, step])
        else:
            words[-1][0] += token
            words[-1][2] = step
    return [tuple(w) for w in words]


def stop_probabilities(score: Path, data: Path, task: str = "counting") -> dict[str, list[dict]]:
    """outcome ("right" / "cut short") -> one dict per reply: conversation, answer, said, p_pad, p_epad."""
    trace = read_trace(score / "text_trace.tsv")
    lines = (score / "tasks.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    found: dict[str, list[dict]] = {"right": [], "cut short": []}
    turn_index: dict[str, int] = {}
    for line in lines[1:]:
        row = dict(zip(head, line.split("\t")))
        if row["run"] != "0":
            continue
        conv = row["conversation"]
        answered = [t for t in json.loads((data / "meta" / f"{conv}.json").read_text())["turns"]
                    if not t["interrupted"]]  # tasks.tsv has a row per answered turn, in order
        turn = answered[turn_index.get(conv, 0)]
        turn_index[conv] = turn_index.get(conv, 0) + 1
        if row["task"] != task or row["outcome"] not in found or conv not in trace:
            continue
        said, last, i = row["said"].split(), None, 0
        for word, start, end_step in trace_words(trace[conv]):
            if start >= turn["question_start"] and i < len(said) and word == said[i]:
                i, last = i + 1, end_step
                if i == len(said):
                    break
        after = next((s for s in trace[conv] if s[0] == last + 1), None) if i == len(said) else None
        if after is not None:
            found[row["outcome"]].append({"conversation": conv, "answer": row["answer"], "said": row["said"],
                                          "p_pad": after[3], "p_epad": after[4]})
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
