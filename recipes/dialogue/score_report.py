"""What the dialogue scorer writes: RESULTS.md's table and the rows of tasks.tsv, interruptions.tsv and text_trace.tsv.

Kept apart from `recipes.dialogue.score`, which streams the test conversations and measures them, so that each file's
format (and the summaries of tasks.tsv that RESULTS.md prints) is defined in one place, next to its reader.
"""
from __future__ import annotations

from pathlib import Path

from .turns import HEARD_AFTER_S, OUTCOMES, TurnTakingConfig, interruption_outcomes

COLUMNS = (("takeover_rate", "takeover in pauses ↓", "rate"), ("response_latency", "response latency s", "mean"),
           ("response_rate", "responded", "rate"), ("stop_latency", "stop latency s", "mean"),
           ("yield_rate", "yielded ≤ 0.4 s (all interruptions)", "rate"),
           ("silent_at_interruption", "silent at interruption", "rate"),
           ("backchannel_kept_talking", "kept talking over backchannel", "rate"),
           ("task_accuracy", "task acc (monologue)", "rate"), ("style_accuracy", "style-word acc", "rate"),
           ("task_accuracy_asr", "task acc (ASR of audio)", "rate"))
RUN_SPREAD = ("takeover_rate", "yield_rate", "backchannel_kept_talking", "task_accuracy", "style_accuracy")


TEXT_TRACE_HEADER = "conversation\tstep\ttime\ttoken\tp_token\tp_pad\tp_epad"


def text_trace_rows(utt: str, run, b: int, seconds: float, tokenizer) -> list[str]:
    """text_trace.tsv lines of conversation b of a traced run, up to `seconds`; a step's time is when
    its token was emitted (the end of the step, as the monologue's word times)."""
    rows = []
    for step, (token, probs) in enumerate(zip(run.text_tokens[b].tolist(), run.text_probs[b].tolist())):
        time_s = (step + 1) * run.step_seconds
        if time_s > seconds:
            break
        rows.append("\t".join([utt, str(step), f"{time_s:.2f}", tokenizer.piece(token)] + [f"{p:.3f}" for p in probs]))
    return rows


TASK_COLUMNS = ("conversation", "run", "task", "question", "heard", "heard_question", "answer", "said", "correct",
                "outcome", "style_correct")


def write_task_rows(path: Path, rows: list[dict]) -> None:
    """tasks.tsv: one line per answered turn and pass; word lists space-joined, "-" when empty or unknown."""
    def cell(v) -> str:
        if v is None or v == []:
            return "-"
        return " ".join(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v)
    path.write_text("\n".join(["\t".join(TASK_COLUMNS)] + ["\t".join(cell(r[c]) for c in TASK_COLUMNS)
                                                          for r in rows]) + "\n")


def read_task_rows(path: Path) -> list[dict[str, str]]:
    """tasks.tsv back as one dict of its cells (strings, as written) per line."""
    lines = Path(path).read_text().splitlines()
    if not lines or tuple(lines[0].split("\t")) != TASK_COLUMNS:
        raise ValueError(f"{path}: not a tasks.tsv of this scorer (expected the columns {TASK_COLUMNS})")
    return [dict(zip(TASK_COLUMNS, line.split("\t"))) for line in lines[1:]]


def task_by_hearing(rows: list[dict]) -> dict:
    """Per task: [answered right, turns] when the listening head heard the whole question and when
    it did not (empty without a listening head)."""
    out: dict[str, dict[str, list[int]]] = {}
    for r in rows:
        if r["heard_question"] is None:
            continue
        counts = out.setdefault(r["task"], {"heard": [0, 0], "misheard": [0, 0]})
        c = counts["heard" if r["heard_question"] else "misheard"]
        c[0] += int(r["correct"])
        c[1] += 1
    return dict(sorted(out.items()))


def misses_by_outcome(rows: list[dict]) -> dict:
    """Per task: how many answers were cut short, wrong or silent (turns.answer_outcome)."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = out.setdefault(r["task"], {k: 0 for k in OUTCOMES if k != "right"})
        if r["outcome"] != "right":
            counts[r["outcome"]] += 1
    return dict(sorted(out.items()))


def interruption_rows(utt: str, meta: dict, speech, heard, run_index: int = 0,
                      window: tuple[float, float] = (-0.1, 1.0)) -> list[str]:
    """One TSV row per interruption: onset, stop latency, yielded, and what the listening head heard
    around the onset (where a model's yield goes wrong: it did not hear the user, or heard and stopped late)."""
    cfg, rows = TurnTakingConfig(), []
    for onset, latency in interruption_outcomes(meta, speech, cfg):
        near = " ".join(w.word for w in heard or [] if onset + window[0] <= w.start <= onset + window[1])
        lat = "-" if latency is None else f"{latency:.2f}"
        yielded = "-" if latency is None else str(latency <= cfg.yield_within).lower()
        rows.append(f"{utt}\t{run_index}\t{onset:.2f}\t{lat}\t{yielded}\t{near or '-'}")
    return rows



def fmt(value, kind):
    v = value[0]
    if v is None:
        return "–"
    return f"{100 * v:.0f}% ({value[-1]})" if kind == "rate" else f"{v:.2f} ({value[-1]})"


def write_results(path: Path, rows: dict, speed: dict | None, data: Path, args_line: str,
                  vad_name: str = "energy VAD") -> None:
    head = "| system | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = ["# Dialogue turn-taking and task scores", "",
             f"Data: `{data}` ({rows.pop('_conversations')} synthetic conversations). Speech of the system "
             f"from a VAD on its audio, or (token VAD) from its codec tokens with P(speech | token) counted on "
             f"the training corpus. Counts of events in parentheses.", "", head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, agg in rows.items():
        lines.append(f"| {name} | " + " | ".join(fmt(agg[key], kind) for key, _, kind in COLUMNS) + " |")
    for name, agg in rows.items():
        if name.startswith("model") and agg["task_accuracy_per_task"]:
            per_task = ", ".join(f"{task} {fmt(value, 'rate')}"
                                 for task, value in agg["task_accuracy_per_task"].items())
            lines += ["", f"Task accuracy (monologue) per task, {name}: {per_task}."]
    if speed is not None and len(speed.get("runs", [])) > 1:
        spread = []
        for key, title, _ in COLUMNS:
            values = [r[key][0] for r in speed["runs"] if key in RUN_SPREAD and key in r and r[key][0] is not None]
            if values:
                spread.append(f"{title} {100 * min(values):.0f}–{100 * max(values):.0f} %")
        lines += ["", f"Model rows pool {len(speed['runs'])} free-running passes over the test set (other sampling "
                      f"seeds each); lowest–highest of the single passes ({vad_name}): " + ", ".join(spread) + "."]
    if speed is not None:
        lines += ["", f"Streaming speed (CPU, batch {speed['batch']}): {speed['step_ms_mean']:.1f} ms per 80 ms step "
                      f"(p95 {speed['step_ms_p95']:.1f}), RTF {speed['rtf']:.3f}; theoretical latency "
                      f"{speed['theoretical_latency_ms']:.0f} ms. Model: {speed['trained']}. Each conversation "
                      f"is streamed with {speed['tail_s']:g} s of user silence after its audio (--tail)."]
        if speed.get("listening_wer") is not None:
            lines += ["", f"Listening head (the model's streaming transcript of the user, heard.ctm): WER "
                          f"{100 * speed['listening_wer']:.1f} % over {speed['listening_words']} user words ("
                          + ", ".join(f"{style} {100 * w:.1f} % of {n}" for style, (w, n)
                                      in speed["listening_wer_per_style"].items() if w is not None) + ")."]
        if speed.get("task_by_hearing"):
            def pct(c: list[int]) -> str:
                return f"{100 * c[0] / c[1]:.0f} % of {c[1]}" if c[1] else "none"
            lines += ["", "Task accuracy by what the listening head heard (tasks.tsv; heard: every question word, "
                          f"in order, from the question's start to {HEARD_AFTER_S} s after its end): " + ", ".join(
                              f"{task} {pct(c['heard'])} heard, {pct(c['misheard'])} misheard"
                              for task, c in speed["task_by_hearing"].items()) + "."]
    if speed.get("misses_by_outcome"):
        lines += ["", "Missed answers (tasks.tsv outcome; cut short: stopped right after a correct start of the "
                      "answer): " + ", ".join(f"{task} " + " / ".join(f"{n} {k}" for k, n in c.items())
                                             for task, c in speed["misses_by_outcome"].items()) + "."]
    lines += ["", "Command:", "", "```", args_line, "```", ""]
    path.write_text("\n".join(lines))

