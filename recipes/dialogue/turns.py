"""Turn-taking metrics in the Full-Duplex-Bench manner, from a VAD on the system channel.

All times are seconds on the user's clock. `score_conversation` takes the corpus metadata (pauses,
ends of turn, interruptions, backchannels, task answers), the system channel's speech segments and
the system's words (inner monologue, or any transcript with times), and returns per-event
outcomes; `aggregate` turns many into rates and means.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

Segments = list[tuple[float, float]]


@dataclasses.dataclass
class TurnTakingConfig:
    takeover_min_speech: float = 0.2  # seconds of system speech inside a user pause that count as taking over
    response_window: tuple[float, float] = (-0.3, 3.0)  # system onsets counted after a user's end of turn
    stop_silence: float = 0.2  # the system has stopped once silent this long
    yield_within: float = 0.4  # an interruption is yielded to when the system stops within this
    backchannel_tail: float = 0.5  # seconds after a backchannel that the system should still be talking
    backchannel_cover: float = 0.5  # fraction of (backchannel + tail) the system must cover to "keep talking"


def energy_vad(wav: np.ndarray, sr: int, frame: float = 0.02, threshold_db: float = -38.0,
               min_speech: float = 0.06, merge_gap: float = 0.25, relative: bool = False) -> Segments:
    """Speech segments of a mono signal: frames whose RMS exceeds `threshold_db` dBFS (with `relative`: dB under the
    channel's loud frames, its 95th percentile, so the channel's overall level moves nothing), short gaps merged,
    short blips dropped."""
    n = int(frame * sr)
    frames = len(wav) // n
    if frames == 0:
        return []
    rms = np.sqrt(np.mean(wav[:frames * n].reshape(frames, n).astype(np.float64) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    if relative:
        db = db - max(float(np.percentile(db, 95)), -60.0)  # a silent channel stays silent
    return segments_from_frames(db > threshold_db, frame, 0.0, min_speech, merge_gap)


RELATIVE_VAD_DB = -30.0  # the relative energy VAD's threshold: dB under the channel's loud frames


def segments_from_frames(active: np.ndarray, frame: float, offset: float = 0.0, min_speech: float = 0.06,
                         merge_gap: float = 0.25) -> Segments:
    """Per-frame speech flags → segments in seconds (frame i starts at offset + i·frame), gaps
    shorter than `merge_gap` merged, segments shorter than `min_speech` dropped."""
    segs: Segments = []
    start = None
    for i, a in enumerate(np.append(np.asarray(active, dtype=bool), False)):
        if a and start is None:
            start = i
        elif not a and start is not None:
            segs.append((offset + start * frame, offset + i * frame))
            start = None
    merged: Segments = []
    for s, e in segs:
        if merged and s - merged[-1][1] < merge_gap:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return [(s, e) for s, e in merged if e - s >= min_speech]


class TokenVad:
    """VAD in token space, for any codec (trained or not): P(speech | codec token) counted on the
    training corpus, where the system channel's word spans say which frames are speech. A frame
    is speech when that probability exceeds one half (unseen tokens count as speech)."""

    def __init__(self, speech_prob: np.ndarray) -> None:
        self.speech_prob = speech_prob

    @classmethod
    def fit(cls, tokens: list, speech: list, codebook_size: int) -> "TokenVad":
        hits = np.zeros(codebook_size)
        total = np.zeros(codebook_size)
        for t, s in zip(tokens, speech):
            t, s = np.asarray(t).reshape(-1), np.asarray(s).reshape(-1)
            np.add.at(total, t, 1)
            np.add.at(hits, t, s.astype(np.float64))
        return cls((hits + 1) / (total + 2))

    def segments(self, tokens, frame: float, offset: float = 0.0) -> Segments:
        """System tokens [S, K] (or [F]) → speech segments (frame = 1 / codec frame rate)."""
        return segments_from_frames(self.speech_prob[np.asarray(tokens).reshape(-1)] > 0.5, frame, offset)


def silero_vad(wav: np.ndarray, sr: int) -> Segments:
    """Speech segments from silero-vad (its ONNX model ships inside the wheel; nothing is downloaded)."""
    import torch
    from silero_vad import get_speech_timestamps

    model = _silero_model()
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    if sr != 16000:
        import torchaudio

        x, sr = torchaudio.functional.resample(x, sr, 16000), 16000
    return [(t["start"], t["end"]) for t in get_speech_timestamps(x, model, sampling_rate=sr, return_seconds=True)]


@functools.lru_cache(maxsize=1)
def _silero_model():
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)


def overlap(segs: Segments, start: float, end: float) -> float:
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in segs)


def score_conversation(meta: dict, speech: Segments, words: list[tuple[str, float]],
                       cfg: TurnTakingConfig = TurnTakingConfig(), rows: list[dict] | None = None) -> dict:
    """meta: the corpus JSON; speech: system VAD segments; words: (word, start) of the system;
    rows: its task_rows when the caller has them already (picked from `words` when None)."""
    ev = meta["events"]
    out = {"takeover": [], "response_latency": [], "responded": [], "stop_latency": [], "yielded": [],
           "yielded_when_talking": [], "silent_at_interruption": [], "talking_when_interrupted": [],
           "backchannel_kept_talking": [], "task_correct": [], "task_kind": [], "style_correct": [],
           "unknown_said_so": [], "unknown_wrong": [], "spoke_in_reading": []}
    for p in ev["pauses"]:
        out["takeover"].append(overlap(speech, p["start"], p["end"]) >= cfg.takeover_min_speech)
    for r in ev.get("readings", []):  # nobody asked anything: any reply is one nobody asked for
        out["spoke_in_reading"].append(overlap(speech, r["start"], r["end"] + READING_TAIL_S) >= cfg.takeover_min_speech)
    for turn in meta["turns"]:
        q_end = turn["question_end"]
        lo, hi = q_end + cfg.response_window[0], q_end + cfg.response_window[1]
        onsets = [s for s, e in speech if lo <= s <= hi]
        out["responded"].append(bool(onsets))
        if onsets:
            out["response_latency"].append(onsets[0] - q_end)
    for row in task_rows(meta, words, None, cfg) if rows is None else rows:
        if row["task"] == "unknown":  # a question outside what it knows: saying so is right, any other answer wrong
            out["unknown_said_so"].append(row["correct"])
            out["unknown_wrong"].append(row["outcome"] in ("wrong", "cut short"))
            continue
        out["task_correct"].append(row["correct"])
        out["task_kind"].append(row["task"])
        out["style_correct"].append(row["style_correct"])
    for _, latency in interruption_outcomes(meta, speech, cfg):
        # every interruption counts: one the system was silent at is not yielded to, and is counted apart
        out["talking_when_interrupted"].append(latency is not None)
        out["silent_at_interruption"].append(latency is None)
        out["yielded"].append(latency is not None and latency <= cfg.yield_within)
        if latency is not None:
            out["stop_latency"].append(latency)
            out["yielded_when_talking"].append(latency <= cfg.yield_within)
    for bc in ev["backchannels"]:
        span = bc["end"] + cfg.backchannel_tail - bc["start"]
        out["backchannel_kept_talking"].append(
            overlap(speech, bc["start"], bc["end"] + cfg.backchannel_tail) >= cfg.backchannel_cover * span)
    return out


def interruption_outcomes(meta: dict, speech: Segments,
                          cfg: TurnTakingConfig = TurnTakingConfig()) -> list[tuple[float, float | None]]:
    """(user onset, seconds until the system stopped) per interruption; None when the system was not
    talking at the onset (nothing to yield)."""
    out = []
    for it in meta["events"]["interruptions"]:
        u = it["user_start"]
        talking = any(s <= u + cfg.stop_silence and e > u for s, e in speech)
        out.append((u, max(0.0, _stop_time(speech, u, cfg.stop_silence) - u) if talking else None))
    return out


def turn_windows(meta: dict, lo: float = -0.3) -> list[tuple[dict, float, float]]:
    """(turn, start, end) of every answered (not interrupted) turn: from just before the user's end
    of turn to the start of the user's next question (or the end of the conversation)."""
    turns = meta["turns"]
    out = []
    for i, turn in enumerate(turns):
        if not turn["interrupted"]:
            end = turns[i + 1]["question_start"] if i + 1 < len(turns) else meta["duration"]
            out.append((turn, turn["question_end"] + lo, end))
    return out


def asr_task_correct(meta: dict, system: np.ndarray, sr: int, recognizer) -> list[bool]:
    """Task accuracy from the system's *audio*: each answered turn's window transcribed by
    `recognizer.transcribe(audio) -> text` (pocketsphinx), answer words looked for in order (questions outside
    its knowledge left out: `asr_turns` has them)."""
    return [r["correct"] for r in asr_turns(meta, system, sr, recognizer) if r["task"] != "unknown"]


def asr_turns(meta: dict, system: np.ndarray, sr: int, recognizer,
              words: list[tuple[str, float]] | None = None) -> list[dict]:
    """Per answered turn, what ASR hears in the system's audio of its window: the task, the transcript, whether the
    answer words are in it in order, and with `words` (the monologue: (word, start)) the monologue's words of the
    window and the ASR's word errors against them (the system channel's intelligibility)."""
    from ..score.asr import normalise_words, word_errors

    out = []
    for turn, start, end in turn_windows(meta):
        heard = normalise_words(recognizer.transcribe(system[max(0, int(start * sr)):int(end * sr)]))
        row = {"task": turn["task"], "heard": heard, "correct": _is_subsequence(turn["answer"], heard)}
        if words is not None:
            said = [w for w, t in words if start <= t < end]
            row |= {"said": said, "errors": word_errors(said, heard), "window": (start, end)}
        out.append(row)
    return out


def _stop_time(speech: Segments, t: float, silence: float) -> float:
    """End of the system speech that is running at t (gaps shorter than `silence` bridged)."""
    end = t
    for s, e in sorted(speech):
        if e <= t:
            continue
        if s > end + silence:
            break
        end = max(end, e)
    return end


def reply_words(turns: list[dict], i: int, words: list[tuple[str, float]],
                cfg: TurnTakingConfig = TurnTakingConfig()) -> list[str]:
    """The system's words that answer turn i: from the start of the response window after the
    question to the next question (the words a task and its style word are scored on)."""
    lo = turns[i]["question_end"] + cfg.response_window[0]
    until = turns[i + 1]["question_start"] if i + 1 < len(turns) else math.inf
    return [w for w, t in words if lo <= t < until]


READING_TAIL_S = 1.0  # a reply to a reading counts up to this long after its end
HEARD_AFTER_S = 0.6  # the listening head's words are looked for up to this long past a question (it lags)


def task_rows(meta: dict, words: list[tuple[str, float]], heard: list[tuple[str, float]] | None,
              cfg: TurnTakingConfig = TurnTakingConfig(), heard_after: float = HEARD_AFTER_S) -> list[dict]:
    """One row per answered (not interrupted) turn: the task, the question, what the listening head
    heard from its start to `heard_after` s past its end (the head lags), whether every question word
    is in that in order, the answer and what the system said (and whether it opened with the style's
    word): mishearing apart from not knowing."""
    rows, turns = [], meta["turns"]
    for i, turn in enumerate(turns):
        if turn["interrupted"]:
            continue
        said = reply_words(turns, i, words, cfg)
        near = None if heard is None else [w for w, t in heard
                                           if turn["question_start"] - 0.1 <= t <= turn["question_end"] + heard_after]
        outcome = answer_outcome(turn["answer"], said)
        rows.append({"task": turn["task"], "question": turn["question"], "heard": near,
                     "heard_question": None if near is None else _is_subsequence(turn["question"].split(), near),
                     "answer": turn["answer"], "said": said, "correct": outcome == "right", "outcome": outcome,
                     "style_correct": bool(said) and said[0] == turn["style_word"]})
    return rows


OUTCOMES = ("right", "cut short", "wrong", "silent")


def answer_outcome(answer: list[str], said: list[str]) -> str:
    """How a reply relates to its answer: "right" (every answer word, in order), "cut short" (it
    stopped right after a correct start of the answer: "four five six" for four..eight), "silent"
    (no word), "wrong" (anything else). Cut short is an end-of-reply decision, not a wrong fact."""
    if _is_subsequence(answer, said):
        return "right"
    if not said:
        return "silent"
    k = max(n for n in range(len(answer)) if _is_subsequence(answer[:n], said))
    return "cut short" if k > 0 and said[-1] == answer[k - 1] else "wrong"


def _is_subsequence(needle: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(any(w == h for h in it) for w in needle)


def aggregate(results: list[dict]) -> dict:
    """Rates (fractions) and mean/median latencies (seconds) over conversations; None where no event."""
    pooled: dict[str, list] = {}
    for r in results:
        for k, v in r.items():
            pooled.setdefault(k, []).extend(v)

    def rate(k):
        v = pooled.get(k, [])
        return (float(np.mean(v)) if v else None, len(v))

    def stats(k):
        v = pooled.get(k, [])
        return (float(np.mean(v)) if v else None, float(np.median(v)) if v else None, len(v))

    return {"takeover_rate": rate("takeover"), "response_rate": rate("responded"),
            "response_latency": stats("response_latency"), "talking_when_interrupted": rate("talking_when_interrupted"),
            "stop_latency": stats("stop_latency"), "yield_rate": rate("yielded"),
            "yield_rate_when_talking": rate("yielded_when_talking"),
            "silent_at_interruption": rate("silent_at_interruption"),
            "backchannel_kept_talking": rate("backchannel_kept_talking"),
            "task_accuracy": rate("task_correct"), "style_accuracy": rate("style_correct"),
            "task_accuracy_asr": rate("task_correct_asr"),
            "unknown_said_so": rate("unknown_said_so"), "unknown_wrong": rate("unknown_wrong"),
            "unknown_said_so_asr": rate("unknown_said_so_asr"), "spoke_in_reading": rate("spoke_in_reading"),
            "task_accuracy_per_task": _per_task(pooled.get("task_kind", []), pooled.get("task_correct", []))}


def _per_task(kinds: list[str], correct: list[bool]) -> dict[str, tuple[float, int]]:
    """Task accuracy of each kind of task (arithmetic, spelling, ...): (rate, count)."""
    by_kind: dict[str, list[bool]] = {}
    for kind, ok in zip(kinds, correct, strict=True):
        by_kind.setdefault(kind, []).append(ok)
    return {kind: (float(np.mean(v)), len(v)) for kind, v in sorted(by_kind.items())}
