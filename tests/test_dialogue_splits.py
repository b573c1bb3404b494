"""The dialogue corpus's held-out splits (issue 34): what each split may hold, that no recording of the training
corpus is in a test corpus, and the scores that count every interruption, unknown question and reading."""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import pytest

from recipes.dialogue.heldout import SYSTEM_VOICES, grid_factor, load_heldout, user_voices
from recipes.dialogue.synth import CorpusConfig, build_conversation, synthesize_corpus
from recipes.dialogue.tasks import LETTERS, SPELL_WORDS
from recipes.dialogue.turns import aggregate, energy_vad, score_conversation
from recipes.splits import load_splits

HELD = dict(arithmetic_entries="uniform", count_lengths=[3, 10], p_formant=0.5, p_noise=0.5, user_gain_db=[-10, 6])
ROWS = {  # the rows of run.sh --splits true, for the test split
    "seen": dict(voices="train", instances="train", phrasings="train", recordings="test"),
    "unseen_voice": dict(voices="test", instances="train", phrasings="train", recordings="test"),
    "unseen_phrasing": dict(voices="test", instances="train", phrasings="test", recordings="test"),
    "unseen_instance": dict(voices="test", instances="test", phrasings="train", recordings="test",
                            tasks=["arithmetic", "counting", "spelling"]),
    "unknown": dict(voices="test", instances="test", phrasings="train", recordings="test", p_unknown=1.0),
}


def test_heldout_file_names_each_instance_and_phrasing_once():
    held = load_heldout()
    for task, splits in held.instances.items():
        names = [n for v in splits.values() for n in v]
        assert len(names) == len(set(names)), task
    assert not set(held.pool("spelling", "test")) & set(held.pool("spelling", "train"))
    assert "house" in held.pool("spelling", "test") and "what is the capital of spain" in held.pool("unknown", "test")
    for split in ("train", "valid", "test"):
        assert all(set(w) <= set(LETTERS) for w in held.pool("spelling", split))  # every letter can be spoken
        for task, templates in held.phrasings.items():
            assert templates[split], (task, split)
    for task, splits in held.phrasings.items():  # the original template is a train one
        assert splits["train"][0] in ("what is {e}", "count from {a} to {b}", "how do you spell {w}", "{q}"), task
    assert held.instance_split("arithmetic", "three plus one") == "test"
    assert held.instance_split("arithmetic", "two plus two") == "train"
    assert held.instance_split("spelling", SPELL_WORDS[0]) == "train"
    with pytest.raises(KeyError, match="in no split"):
        held.instance_split("spelling", "zebra")


def test_every_split_draws_its_factors_on_its_own_grid():
    import random

    rng = random.Random(0)
    drawn = {s: {grid_factor(rng, 0.8, 1.25, s) for _ in range(300)} for s in ("train", "valid", "test")}
    assert all(len(v) > 5 for v in drawn.values())
    assert not drawn["train"] & drawn["test"] and not drawn["train"] & drawn["valid"] and not drawn["valid"] & drawn["test"]


@pytest.mark.needs("flite")
@pytest.mark.needs("espeak-ng")
def test_user_voices_follow_the_speaker_splits_and_leave_out_the_system():
    splits = load_splits()
    seen = {}
    for split in ("train", "valid", "test"):
        for voices in user_voices(split).values():
            for base in voices:
                assert splits.synthetic_split(*base) == split and base not in SYSTEM_VOICES
                assert seen.setdefault(base, split) == split
    assert len(user_voices("train")) >= 2  # more than one engine of users


@pytest.mark.needs("flite")
def test_held_out_rows_draw_what_they_name():
    held = load_heldout()
    for row, settings in ROWS.items():
        cfg = CorpusConfig(**(HELD | settings))
        cfg.check()
        for seed in range(3):
            _, meta, _ = build_conversation(cfg, 1000 + seed)
            assert meta["split"]["voices"] == settings["voices"]
            for turn in meta["turns"]:
                assert turn["instance_split"] == settings["instances"]
                if turn["task"] in ("arithmetic", "counting", "spelling", "unknown"):
                    task = turn["task"]
                    key = _key_of(turn)
                    assert held.instance_split(task, key) == settings["instances"], (row, turn["question"])
                if row == "unknown":
                    assert turn["task"] == "unknown" and turn["answer"] == ["i", "do", "not", "know"]
    with pytest.raises(ValueError, match="facts"):
        CorpusConfig(**(HELD | ROWS["unseen_instance"]) | {"tasks": ["facts"]}).check()
    with pytest.raises(ValueError, match="voices, instances, phrasings, recordings"):
        CorpusConfig(voices="test").check()
    with pytest.raises(ValueError, match="real_data"):
        CorpusConfig(p_reading=0.5).check()


def _key_of(turn: dict) -> str:
    """The instance a turn asked, from its reply (the question's phrasing varies)."""
    from recipes.dialogue.tasks import NUMBERS

    reply = turn["reply"].split()[1:]  # the style word first
    if turn["task"] == "arithmetic":
        return " ".join(reply[:3])
    if turn["task"] == "counting":
        nums = [w for w in reply if w in NUMBERS]
        return f"{nums[0]} {nums[-1]}"
    if turn["task"] == "spelling":
        return reply[0]
    return next(q for q in load_heldout().pool("unknown", "test") + load_heldout().pool("unknown", "train")
                + load_heldout().pool("unknown", "valid") if turn["question"].endswith(q))


def fake_real_speech(root: Path, split: str, speakers: list[str], seed: int) -> Path:
    """A real-speech split dir of the shape recipes.real_speech writes: one reader per speaker, a few prompts."""
    import soundfile as sf

    from recipes.datadir import DataDir

    rng = np.random.default_rng(seed)
    out = root / split
    (out / "wav").mkdir(parents=True, exist_ok=True)
    wav_scp, utt2spk, text = {}, {}, {}
    for spk in speakers:
        for k in range(3):
            utt = f"{spk}-{k}"
            t = np.arange(int(0.5 * 16000)) / 16000
            audio = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) * np.hanning(len(t))
            sf.write(out / "wav" / f"{utt}.wav", audio.astype(np.float32), 16000)
            wav_scp[utt], utt2spk[utt], text[utt] = str(out / "wav" / f"{utt}.wav"), spk, "a"
    DataDir(wav_scp=wav_scp, utt2spk=utt2spk, text=text, path=out).save(out)
    return out


def recordings(data: Path) -> dict[str, set[str]]:
    """channel → the recording hashes of a corpus's clips."""
    out = collections.defaultdict(set)
    for path in (data / "meta").glob("*.json"):
        for r in json.loads(path.read_text())["recordings"]:
            out[r["channel"]].add(r["hash"])
    return out


@pytest.mark.needs("flite")
@pytest.mark.needs("espeak-ng")
def test_no_user_or_system_recording_is_in_training_and_test(tmp_path):
    """A tiny held-out corpus: no clip of a test row (user or system; TTS or a real reader) is a recording of the
    training corpus. The same check finds the shared clips of the corpora made before the splits (a fixed user voice):
    it can fail."""
    real = tmp_path / "real"
    train = synthesize_corpus(CorpusConfig(**HELD, num_conversations=6, seed=21, voices="train", instances="train",
                                           phrasings="train", recordings="train", p_unknown=0.3, p_reading=0.3,
                                           real_data=str(fake_real_speech(real, "train", ["r-train"], 0))),
                              tmp_path / "train")
    trained = recordings(train.path)
    assert len(trained["user"]) >= 6 and len(trained["system"]) >= 6
    metas = [json.loads(p.read_text()) for p in (train.path / "meta").glob("*.json")]
    for meta in metas:  # every clip is hashed: a reply per turn, a question (or its halves) per turn
        by_channel = collections.Counter(r["channel"] for r in meta["recordings"])
        assert by_channel["system"] == len(meta["turns"]) and by_channel["user"] >= len(meta["turns"])
    rows = dict(ROWS, real=dict(p_reading=1.0, real_data=str(fake_real_speech(real, "test", ["r-test"], 1))))
    for k, (row, settings) in enumerate(rows.items()):
        d = synthesize_corpus(CorpusConfig(**(HELD | settings), num_conversations=4, seed=200 + k, p_pause=0.7,
                                           p_backchannel=0.6, p_interruption=0.5), tmp_path / f"test_{row}")
        test = recordings(d.path)
        assert test["user"], row
        for channel in ("user", "system"):
            assert not trained[channel] & test[channel], (row, channel)
    # the control: one fixed user voice (the corpora before the splits) shares recordings between train and test
    before = [recordings(synthesize_corpus(CorpusConfig(num_conversations=6, seed=s), tmp_path / f"before{s}").path)
              for s in (1, 2)]
    assert before[0]["user"] & before[1]["user"] or before[0]["system"] & before[1]["system"]


def _meta(**events) -> dict:
    base = {"pauses": [], "backchannels": [], "interruptions": [], "overlaps": []}
    return {"turns": [], "events": base | events, "duration": 10.0}


def test_every_interruption_is_in_the_yield_denominator():
    meta = _meta(interruptions=[{"user_start": 2.0, "system_stop": 2.1}, {"user_start": 6.0, "system_stop": 6.1}])
    speech = [(1.0, 2.2)]  # talking at the first (stops 0.2 s later), silent at the second
    agg = aggregate([score_conversation(meta, speech, [])])
    assert agg["yield_rate"] == (0.5, 2) and agg["silent_at_interruption"] == (0.5, 2)
    assert agg["yield_rate_when_talking"] == (1.0, 1)


def test_unknown_questions_and_readings_have_their_own_scores():
    turn = {"task": "unknown", "question": "what is the capital of spain", "answer": ["i", "do", "not", "know"],
            "style_word": "sure", "question_start": 0.5, "question_end": 2.0, "interrupted": False}
    meta = _meta() | {"turns": [turn]}
    right = score_conversation(meta, [(2.3, 3.5)], [("sure", 2.3), ("i", 2.6), ("do", 2.8), ("not", 3.0), ("know", 3.2)])
    wrong = score_conversation(meta, [(2.3, 3.5)], [("sure", 2.3), ("the", 2.6), ("capital", 2.8), ("rome", 3.2)])
    agg = aggregate([right, wrong])
    assert agg["unknown_said_so"] == (0.5, 2) and agg["unknown_wrong"] == (0.5, 2)
    assert agg["task_accuracy"] == (None, 0)  # not a task the system can solve: not in task accuracy
    reading = _meta(readings=[{"start": 0.5, "end": 5.0, "reader": "x"}], pauses=[{"start": 2.0, "end": 3.0}])
    quiet, spoke = (score_conversation(reading, s, []) for s in ([], [(5.2, 6.0)]))
    agg = aggregate([quiet, spoke])
    assert agg["spoke_in_reading"] == (0.5, 2) and agg["takeover_rate"] == (0.0, 2)


def test_the_relative_vad_does_not_move_with_the_level():
    rng = np.random.default_rng(0)
    sr = 16000
    wav = np.zeros(3 * sr, dtype=np.float32)
    wav[sr // 2:sr] = 0.1 * rng.standard_normal(sr // 2)
    wav[2 * sr:int(2.6 * sr)] = 0.1 * rng.standard_normal(int(0.6 * sr))
    loud = energy_vad(wav, sr, threshold_db=-30, relative=True)
    assert len(loud) == 2 and energy_vad(wav * 0.01, sr, threshold_db=-30, relative=True) == loud
    assert energy_vad(wav * 0.01, sr) != energy_vad(wav, sr)  # the fixed dBFS threshold does move


def test_the_scorers_sample_as_the_demo_ships():
    from dialogue import SamplingConfig
    from recipes.dialogue.score import add_sampling_options

    p = argparse.ArgumentParser()
    add_sampling_options(p)
    args = p.parse_args([])
    assert SamplingConfig(args.text_temperature, args.text_top_k, args.audio_temperature, args.audio_top_k) == \
        SamplingConfig()
