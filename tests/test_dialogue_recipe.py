"""The dialogue recipe: corpus synthesis is consistent with its own metadata, the turn-taking
scorer gives the corpus a perfect score, and egs/mini/dialogue1/run.sh --tiny runs end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from codec import load_codec
from dialogue import DialogueConfig, TextTokenizer, Word, load_dialogue, text_stream_words
from dialogue.demo import untrained_codec
from recipes.ctm import group_by_utt, read_ctm
from recipes.dialogue.prepare import TokenSet
from recipes.dialogue.synth import CorpusConfig, build_conversation, corpus_config, is_complete, synthesize_corpus
from recipes.dialogue.score import interruption_rows
from recipes.dialogue.turns import (aggregate, answer_outcome, energy_vad, interruption_outcomes, score_conversation,
                                    task_rows)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.needs("flite")
def test_conversation_events_match_the_audio_and_words():
    cfg = CorpusConfig(p_pause=1.0, p_backchannel=1.0, p_interruption=1.0, max_turns=3, min_turns=3)
    for seed in range(3):
        audio, meta, words = build_conversation(cfg, seed)
        sr = cfg.sample_rate
        assert audio.shape == (2, int(round(meta["duration"] * sr)))
        user, system = words["1"], words["2"]
        speech = energy_vad(audio[1], sr)
        for row, channel in enumerate(("1", "2")):  # not a sample of a channel's audio before its first word
            assert not audio[row, :int(words[channel][0][1] * sr)].any()
        for p in meta["events"]["pauses"]:  # the user is silent and the system does not take over
            assert not [w for w in user if w[1] < p["end"] - 1e-6 and w[2] > p["start"] + 1e-6]
            assert not [w for w in system if p["start"] < w[1] < p["end"]]
        for it in meta["events"]["interruptions"]:  # the system yields shortly after the user starts
            assert 0 < it["system_stop"] - it["user_start"] <= cfg.yield_after[1] + 1e-6
            assert not [w for w in system if it["system_stop"] < w[1] < it["system_stop"] + 0.3]
        for turn in meta["turns"]:
            said = [w[0] for w in system if turn["reply_start"] - 1e-6 <= w[1] <= turn["reply_end"]]
            assert said[0] == turn["style_word"]
            if not turn["interrupted"]:
                assert said[1:] == turn["reply"].split()[1:]
        result = score_conversation(meta, speech, [(w[0], w[1]) for w in system])
        assert not any(result["takeover"]) and all(result["task_correct"]) and all(result["style_correct"])
        assert all(result["backchannel_kept_talking"]) and all(result["yielded"])
        # tasks.tsv's rows: the corpus heard by a perfect listening head (its words, on time) answers every turn
        rows = task_rows(meta, [(w[0], w[1]) for w in system], [(w[0], w[1]) for w in user])
        assert [r["correct"] for r in rows] == result["task_correct"] and all(r["heard_question"] for r in rows)
        assert [r["task"] for r in rows] == result["task_kind"]
        deaf = task_rows(meta, [(w[0], w[1]) for w in system], [])
        assert not any(r["heard_question"] for r in deaf) and task_rows(meta, [], None)[0]["heard_question"] is None


def test_scorer_catches_a_bad_system():
    meta = {"events": {"pauses": [{"start": 1.0, "end": 2.0}], "backchannels": [{"start": 5.0, "end": 5.3}],
                       "interruptions": [{"user_start": 7.0, "system_stop": 7.2}], "overlaps": []},
            "turns": [{"question": "what is three times four", "question_start": 0.0, "question_end": 3.0,
                       "interrupted": False, "answer": ["twelve"], "style_word": "sure", "task": "arithmetic"},
                      {"question": "count from three to four", "question_start": 7.0, "question_end": 8.0,
                       "interrupted": False, "answer": ["four"], "style_word": "sure", "task": "counting"}]}
    speech = [(1.2, 1.8), (3.5, 5.1), (6.5, 8.4)]  # talks in the pause, drops the backchannel, ignores the interruption
    words = [("okay", 3.5), ("twelve", 3.9), ("sure", 8.5), ("three", 8.9)]
    agg = aggregate([score_conversation(meta, speech, words)])
    assert agg["takeover_rate"][0] == 1.0 and agg["backchannel_kept_talking"][0] == 0.0
    assert agg["stop_latency"][0] == pytest.approx(1.4) and agg["yield_rate"] == (0.0, 1)
    assert agg["response_latency"][0] == pytest.approx((0.5 + 0.5) / 2)  # the 2nd turn: speech at 6.5 is too early
    assert agg["task_accuracy"] == (0.5, 2) and agg["style_accuracy"][0] == 0.5
    assert agg["task_accuracy_per_task"] == {"arithmetic": (1.0, 1), "counting": (0.0, 1)}
    rows = task_rows(meta, words, None)  # the scorer's task and style outcomes are these rows'
    assert [(r["correct"], r["style_correct"]) for r in rows] == [(True, False), (False, True)]
    assert [r["outcome"] for r in rows] == ["right", "wrong"]
    assert [answer_outcome("four five six".split(), said.split()) for said in
            ("sure four five six seven", "sure four five", "sure four five eight", "", "sure")] == [
        "right", "cut short", "wrong", "silent", "wrong"]
    flipped = [r | {"correct": not r["correct"]} for r in rows]  # rows given are used, not picked again
    assert aggregate([score_conversation(meta, speech, words, rows=flipped)])["task_accuracy_per_task"] == {
        "arithmetic": (0.0, 1), "counting": (1.0, 1)}
    assert interruption_outcomes(meta, speech) == [(7.0, pytest.approx(1.4))]
    assert interruption_outcomes(meta, [(1.2, 1.8)]) == [(7.0, None)]  # silent at the onset: nothing to yield
    heard = [Word("wait", 7.3, 7.5), Word("how", 9.0, 9.2)]
    assert interruption_rows("c1", meta, speech, heard, 2) == ["c1\t2\t7.00\t1.40\tfalse\twait"]


@pytest.mark.needs("flite")
def test_an_interrupted_corpus_resumes_past_its_finished_conversations(tmp_path, monkeypatch):
    import recipes.dialogue.synth as synth

    cfg = CorpusConfig(num_conversations=3, seed=5)
    fresh = synthesize_corpus(cfg, tmp_path / "fresh")
    built, real_build = [], synth.build_conversation

    def build(cfg, seed, *a, **k):
        built.append(seed)
        if len(built) == 3 and fail:
            raise RuntimeError("interrupted")
        return real_build(cfg, seed, *a, **k)

    monkeypatch.setattr(synth, "build_conversation", build)
    fail = True
    with pytest.raises(RuntimeError, match="interrupted"):
        synthesize_corpus(cfg, tmp_path / "resumed")
    assert not is_complete(cfg, tmp_path / "resumed")
    fail, built[:] = False, []
    resumed = synthesize_corpus(cfg, tmp_path / "resumed")
    assert len(built) == 1  # only the conversation the interruption cut was built again
    assert resumed.utt2dur == fresh.utt2dur and resumed.text == fresh.text
    for name in ("user.ctm", "system.ctm"):
        assert (tmp_path / "resumed" / name).read_text() == (tmp_path / "fresh" / name).read_text()
    # another config does not reuse them
    built[:] = []
    synthesize_corpus(CorpusConfig(num_conversations=3, seed=5, p_pause=0.0), tmp_path / "resumed")
    assert len(built) == 3


@pytest.mark.needs("flite")
def test_a_conversation_an_engine_cannot_say_is_drawn_again(tmp_path, monkeypatch):
    import recipes.dialogue.synth as synth
    from recipes.synth import SynthError

    cfg = CorpusConfig(num_conversations=2, seed=5)
    fresh = synthesize_corpus(cfg, tmp_path / "fresh")
    real_build, seeds = synth.build_conversation, []

    def build(cfg, seed, *a, **k):  # the engine fails on conversation 1's first draw only
        seeds.append(seed)
        if seed == cfg.seed * 1_000_003 + 1:
            raise SynthError("festival kal_diphone: no output for 'what is' (exit -6)")
        return real_build(cfg, seed, *a, **k)

    monkeypatch.setattr(synth, "build_conversation", build)
    d = synthesize_corpus(cfg, tmp_path / "redrawn")
    assert len(seeds) == 3 and seeds[2] == seeds[1] + (1 << 40)
    first, second = (next(u for u in d.utts if u.endswith(f"-{i:05d}")) for i in (0, 1))
    assert d.utt2dur[first] == fresh.utt2dur[first]  # the others are untouched
    meta = json.loads((tmp_path / "redrawn" / "meta" / f"{second}.json").read_text())
    assert meta["redrawn"]["attempts"] == 1 and "exit -6" in meta["redrawn"]["first_failure"]
    monkeypatch.setattr(synth, "build_conversation", lambda *a, **k: (_ for _ in ()).throw(SynthError("never")))
    with pytest.raises(SynthError, match="conversation 0: 4 draws failed, the last: never"):
        synthesize_corpus(cfg, tmp_path / "hopeless")


@pytest.mark.needs("flite")
def test_corpus_data_dir(tmp_path):
    d = synthesize_corpus(CorpusConfig(num_conversations=2, seed=7), tmp_path / "data")
    assert len(d.utts) == 2
    ctm = group_by_utt(read_ctm(tmp_path / "data" / "system.ctm"))
    for utt in d.utts:
        meta = json.loads((tmp_path / "data" / "meta" / f"{utt}.json").read_text())
        assert meta["id"] == utt and utt.startswith(meta["style"])
        assert d.text[utt].split() == [e.token for e in ctm[utt]]
    # a finished corpus is recognised (an interrupted recipe stage resumes past it); another config, or one cut
    # short before its data dir was written, is not
    assert is_complete(CorpusConfig(num_conversations=2, seed=7), tmp_path / "data")
    assert not is_complete(CorpusConfig(num_conversations=2, seed=8), tmp_path / "data")
    (tmp_path / "data" / "wav.scp").unlink()
    assert not is_complete(CorpusConfig(num_conversations=2, seed=7), tmp_path / "data")


def test_corpus_config_errors_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match="min_turns <= max_turns"):
        synthesize_corpus(CorpusConfig(num_conversations=1, min_turns=3, max_turns=2), tmp_path / "a")
    with pytest.raises(ValueError, match="unknown \\['shouting'\\]"):
        synthesize_corpus(CorpusConfig(num_conversations=1, styles=["calm", "shouting"]), tmp_path / "b")
    with pytest.raises(ValueError, match="p_pause"):
        synthesize_corpus(CorpusConfig(num_conversations=1, p_pause=1.5), tmp_path / "c")
    assert not (tmp_path / "a").exists()  # nothing written before the check


@pytest.mark.slow
@pytest.mark.needs("flite")
def test_tiny_recipe_end_to_end(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    cmd = ["bash", str(ROOT / "egs/mini/dialogue1/run.sh"), "--tiny", "true", "--exp", str(exp), "--data", str(data),
           "--ablation", "true"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # phases 1-5 ran in exp/dialogue (tiny: 6, 9, 12, 15, 18 steps), the last three on the arithmetic corpus's
    # tokens; phases 6 and 7 each fine-tuned the exported model before them, in a directory of its own
    assert load_dialogue(exp / "dialogue" / "model.safetensors").description.startswith("duet_dialogue_small: 18 of 18 steps")
    assert "train_arith.safetensors" in load_dialogue(exp / "dialogue" / "model.safetensors").description
    final = load_dialogue(exp / "dialogue_excited" / "model.safetensors").description
    assert final.startswith("duet_dialogue_small: 3 of 3 steps on") and "train_arith_excited.safetensors" in final
    assert (f"fine-tuned from {exp / 'dialogue_counts' / 'model.safetensors'} (duet_dialogue_small: 3 of 3 steps on "
            f"{exp / 'tokens' / 'train_arith_long_counts.safetensors'}, fine-tuned from "
            f"{exp / 'dialogue' / 'model.safetensors'} (duet_dialogue_small: 18 of 18 steps") in final
    for part in ("train_arith", "train_arith_long_counts", "train_arith_excited"):
        assert len(list((data / part / "meta").glob("*.json"))) == 3  # conf/tiny/corpus.yaml's size
    assert corpus_config(data / "train_arith_long_counts").count_lengths == [3, 10]
    # the style ablation ran the same seven phases without the voice input, and was scored beside the model
    ablated = load_dialogue(exp / "dialogue_no_voice_excited" / "model.safetensors")
    assert not ablated.model.cfg.user_voice and "dialogue_no_voice_counts" in ablated.description
    assert (exp / "dialogue_no_voice_excited" / "score" / "scores.json").is_file()
    excited = corpus_config(data / "train_arith_excited")
    assert excited.count_lengths == [3, 10] and excited.seed == 4 and excited.styles.count("excited") == 2
    scores = json.loads((exp / "dialogue_excited" / "score" / "scores.json").read_text())["scores"]
    ref = scores["reference (corpus), silero VAD"]
    assert ref["takeover_rate"][0] == 0.0 and ref["task_accuracy"][0] == 1.0
    per_task = scores["model, silero VAD"]["task_accuracy_per_task"]  # counts add up to the whole
    assert sum(n for _, n in per_task.values()) == scores["model, silero VAD"]["task_accuracy"][1]
    assert set(scores["model, silero VAD"]) == set(ref) and "model, token VAD" in scores
    # the corpus played through the model's latency: the ceiling of a perfect imitation
    delayed = next(v for k, v in scores.items() if "played" in k and "ms late" in k)
    assert delayed["response_latency"][0] > ref["response_latency"][0] and delayed["task_accuracy"][0] == 1.0
    probe = json.loads((exp / "style_probe.json").read_text())
    assert set(probe) >= {"tokens", "voice", "conversations"}
    tf = json.loads((exp / "dialogue_excited" / "score" / "teacher_forced.json").read_text())
    assert [Path(k).name for k in tf] == ["test.safetensors", "train.safetensors"]
    assert all(0 <= r["acc/text_words"] <= 1 and r["loss/text"] > 0 and r["conversations"] > 0 for r in tf.values())
    assert all(0 <= r["acc/reply_style"] <= 1 and 0 <= r["acc/reply_answer"] <= 1 for r in tf.values())
    for r in tf.values():  # every answer word, and per kind of task: the counts add up
        per_task = [k for k in r if k.startswith("count/reply_answer_words/")]
        assert per_task and sum(r[k] for k in per_task) == r["count/reply_answer_words"] > 0
        assert any(k.startswith("acc/reply_answer_epad/") for k in r)  # does the reply go on?
    summary = json.loads((exp / "demo" / "summary.json").read_text())
    assert summary["steps"] > 0 and summary["theoretical_latency_ms"] > 0
    for name in ("duplex.wav", "monologue.ctm", "heard.ctm", "timeline.png"):  # the tiny model has a listening head
        assert (exp / "demo" / name).is_file()
    assert summary["heard"] is not None
    speed = json.loads((exp / "dialogue_excited" / "score" / "scores.json").read_text())["speed"]
    assert speed["listening_words"] > 0  # and each style's words add up to them
    assert sum(n for _, n in speed["listening_wer_per_style"].values()) == speed["listening_words"]
    tasks = [r.split("\t") for r in (exp / "dialogue_excited" / "score" / "tasks.tsv").read_text().splitlines()]
    assert tasks[0][:3] == ["conversation", "run", "task"] and all(len(r) == len(tasks[0]) for r in tasks)
    assert len(tasks) - 1 == scores["model, silero VAD"]["task_accuracy"][1]  # a row per scored turn and pass
    by_hearing = speed["task_by_hearing"]  # the tiny model has a listening head: every row is split
    assert sum(c["heard"][1] + c["misheard"][1] for c in by_hearing.values()) == len(tasks) - 1
    outcome = tasks[0].index("outcome")  # every miss has one outcome, and only misses are counted
    assert sum(sum(c.values()) for c in speed["misses_by_outcome"].values()) == sum(r[outcome] != "right" for r in tasks[1:])
    rows = (exp / "dialogue_excited" / "score" / "interruptions.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["conversation", "run", "user_onset", "stop_latency", "yielded", "heard"]
    assert all(len(r.split("\t")) == 6 for r in rows[1:])
    # --score-runs 2 in the tiny recipe: the model rows pool both passes, each pass is kept apart
    assert len(speed["runs"]) == 2 and {r.split("\t")[1] for r in rows[1:]} <= {"0", "1"}
    pooled = scores["model, silero VAD"]
    for key in ("task_accuracy", "takeover_rate"):
        assert sum(r[key][1] for r in speed["runs"]) == pooled[key][1] == 2 * ref[key][1]
    assert "lowest–highest of the single passes" in (exp / "dialogue_excited" / "score" / "RESULTS.md").read_text()
    import soundfile as sf
    for out in (exp / "dialogue_excited" / "score" / "wav").glob("*.wav"):  # every conversation gets the same tail
        meta = json.loads((data / "test" / "meta" / f"{out.stem}.json").read_text())
        assert abs(sf.info(out).duration - meta["duration"] - speed["tail_s"]) < 0.01
    # the text trace: a step per 80 ms of each conversation, the sampled token (top-k 25, as the demo) of some
    # probability, and every
    # word of the monologue among its pieces
    trace = [r.split("\t") for r in (exp / "dialogue_excited" / "score" / "text_trace.tsv").read_text().splitlines()]
    assert trace[0] == ["conversation", "step", "time", "token", "p_token", "p_pad", "p_epad"]
    said = group_by_utt(read_ctm(exp / "dialogue_excited" / "score" / "monologue.ctm"))
    for out in (exp / "dialogue_excited" / "score" / "wav").glob("*.wav"):
        steps = [r for r in trace[1:] if r[0] == out.stem]
        assert len(steps) == int(sf.info(out).duration / 0.08 + 1e-6)
        assert all(0 < float(r[4]) <= 1 for r in steps)
        # sampled, a piece after an EPAD may start a word of its own without a word-start mark: compare the letters
        letters = "".join(r[3] for r in steps if not r[3].startswith("<")).replace("\u2581", "")
        assert all(e.token in letters for e in said.get(out.stem, [])), out.stem
    wav, sr = sf.read(exp / "demo" / "duplex.wav")
    assert wav.shape[1] == 2 and np.abs(wav[:, 0]).max() > 0.01
    again = subprocess.run(cmd + ["--stage", "4"], capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "done already" in again.stdout
    # --adapt_from: that model moved to another codec's tokens (the stand-in codec of another seed), its
    # tokenizer kept, on the pitch-only corpus, then on it pooled with the rate-varied one; the ablation drops the
    # voice input; both scored on the pitch test
    other = tmp_path / "other_codec.safetensors"
    untrained_codec(seed=1).save(other, "another stand-in")
    exp2, data2 = tmp_path / "exp_adapt", tmp_path / "data_adapt"
    adapt = ["bash", str(ROOT / "egs/mini/dialogue1/run.sh"), "--tiny", "true", "--exp", str(exp2), "--data", str(data2),
             "--ablation", "true", "--codec", str(other), "--stop_stage", "5",
             "--adapt_from", str(exp / "dialogue_excited" / "model.safetensors")]
    res = subprocess.run(adapt, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (exp2 / "tokenizer.model").read_bytes() == (exp / "tokenizer.model").read_bytes()
    assert not (data2 / "train").exists() and not corpus_config(data2 / "train_pitch").style_rates
    moved = load_dialogue(exp2 / "dialogue_adapted" / "model.safetensors")
    assert moved.codec_id == load_codec(other).codec_id != load_dialogue(exp / "dialogue_excited" / "model.safetensors").codec_id
    assert "[codec changed]" in moved.description and "train_pitch.safetensors" in moved.description
    ablated = load_dialogue(exp2 / "dialogue_no_voice_adapted" / "model.safetensors")
    assert not ablated.model.cfg.user_voice and "[codec, user_voice changed]" in ablated.description
    mixed = load_dialogue(exp2 / "dialogue_mixed" / "model.safetensors")
    assert mixed.codec_id == moved.codec_id and "train_arith_excited.safetensors" in mixed.description
    assert "dialogue_adapted" in mixed.description and corpus_config(data2 / "train_arith_excited").style_rates
    assert not load_dialogue(exp2 / "dialogue_no_voice_mixed" / "model.safetensors").model.cfg.user_voice
    for m in ("dialogue_mixed", "dialogue_no_voice_mixed"):
        rows = json.loads((exp2 / m / "score" / "teacher_forced_pitch.json").read_text())
        assert len(rows) == 2 and any("user audio swapped (+1)" in k for k in rows)
    # bundling a model of another codec ships that codec beside it; the demo pairs them by codec id
    assets = tmp_path / "assets"
    bundled = subprocess.run([sys.executable, str(ROOT / "egs/mini/dialogue1/local/bundle.py"), str(exp2), str(data2 / "test"),
                              str(assets), "--model", str(exp2 / "dialogue_mixed" / "model.safetensors")],
                             capture_output=True, text=True, env=env)
    assert bundled.returncode == 0, bundled.stderr[-2000:]
    assert load_codec(assets / "codec.safetensors").codec_id == moved.codec_id
    demo = subprocess.run([sys.executable, "-m", "dialogue.demo", "--model", str(assets / "dialogue.safetensors"),
                           "--user", str(assets / "conversation.flac"), "--out", str(tmp_path / "demo_paired")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    summary = json.loads((tmp_path / "demo_paired" / "summary.json").read_text())
    assert summary["trained"] and summary["codec_id"] == moved.codec_id


@pytest.mark.needs("flite")
def test_parallel_synthesis_and_tokens_equal_serial(tmp_path):
    """--nj is only speed: the corpus files and the token file do not depend on it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from recipes.dialogue.prepare import make_tokenizer, make_tokens

    cfg = CorpusConfig(num_conversations=3, seed=11, max_turns=2)
    synthesize_corpus(cfg, tmp_path / "serial")
    synthesize_corpus(cfg, tmp_path / "parallel", num_workers=2)
    files = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*") if p.is_file())
    assert len(files) == 3 * 2 + 8  # wav + meta per conversation, the data dir files, 2 CTMs, corpus.yaml
    for f in files:
        assert (tmp_path / "serial" / f).read_bytes() == (tmp_path / "parallel" / f).read_bytes(), f
    make_tokenizer(tmp_path / "serial", tmp_path / "tok.model", 96)
    outs = [tmp_path / f"tokens{nj}.safetensors" for nj in (1, 2)]
    for nj, out in zip((1, 2), outs):
        assert make_tokens(tmp_path / "serial", None, tmp_path / "tok.model", out, num_workers=nj) == 3
    a, b = load_file(str(outs[0])), load_file(str(outs[1]))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    meta = [safe_open(str(o), framework="pt").metadata() for o in outs]
    assert meta[0] == meta[1]
    assert not (tmp_path / "tokens1.safetensors.blocks").exists()  # the block cache goes once the file is written
    # an interrupted run resumes from the blocks it finished: here every block is cached, so none is encoded again
    import recipes.dialogue.prepare as prepare
    resumed = tmp_path / "resumed.safetensors"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare.BlockCache, "clear", lambda self: None)
        make_tokens(tmp_path / "serial", None, tmp_path / "tok.model", resumed)
    resumed.unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare, "_encode_block", lambda job: pytest.fail("a cached block was encoded again"))
        assert make_tokens(tmp_path / "serial", None, tmp_path / "tok.model", resumed) == 3
    c = load_file(str(resumed))
    assert c.keys() == a.keys() and all(c[k].equal(a[k]) for k in a)
    assert safe_open(str(resumed), framework="pt").metadata() == meta[0]
    # the user's words ride beside the grid: the listening head's targets read back as the user CTM
    data = TokenSet(outs[0])
    tok = TextTokenizer.load(tmp_path / "tok.model")
    user = group_by_utt(read_ctm(tmp_path / "serial" / "user.ctm"))
    for utt, heard, grid in zip(data.ids, data.user_text, data.tokens):
        assert heard.shape == grid.shape[:1]
        assert [w.word for w in text_stream_words(heard, data.streams.step_seconds, tok)] == [e.token for e in user[utt]]


@pytest.mark.needs("flite")
def test_teacher_forced_decision_steps_point_at_the_reply_words(tmp_path):
    """The steps `evaluate` scores are the style word, the answer's first word and every answer word
    (matched from the reply's end: the sum, not an operand that equals it)."""
    from recipes.dialogue.evaluate import reply_decision_steps
    from recipes.dialogue.tasks import answer_positions
    from recipes.dialogue.prepare import make_tokenizer, make_tokens

    assert answer_positions("two times one is two".split(), ["two"]) == [4]
    assert answer_positions("cat is spelled c a t".split(), ["c", "a", "t"]) == [3, 4, 5]
    assert answer_positions("eight plus four is twelve".split(), ["nine"]) == []
    cfg = CorpusConfig(num_conversations=6, seed=5, min_turns=2, max_turns=3, p_interruption=0.0)
    synthesize_corpus(cfg, tmp_path / "data")
    make_tokenizer(tmp_path / "data", tmp_path / "tok.model", 96)
    assert make_tokens(tmp_path / "data", None, tmp_path / "tok.model", tmp_path / "t.safetensors") == 6
    data, tok = TokenSet(tmp_path / "t.safetensors"), TextTokenizer.load(tmp_path / "tok.model")
    step = data.streams.step_seconds
    tasks = set()
    for i, replies in enumerate(reply_decision_steps(data, tok, len(data))):
        turns = json.loads((tmp_path / "data" / "meta" / f"{data.ids[i]}.json").read_text())["turns"]
        at = {round(w.start / step): w.word for w in text_stream_words(data.tokens[i][:, 0], step, tok)}
        assert len(replies) == len(turns)
        for turn, reply in zip(turns, replies):
            reply_words = turn["reply"].split()
            assert at[reply.style] == turn["style_word"] and at[reply.onset] == reply_words[1]
            assert [at[t] for t in reply.answer] == turn["answer"] and reply.task == turn["task"]
            tasks.add(reply.task)
    assert len(tasks) >= 3
    # --swap-audio: the named audio columns from the next conversation, cut or filled with silence
    from dialogue.layout import Columns
    from recipes.dialogue.evaluate import swap_audio

    cols, swapped = Columns(data.streams.frames_per_step), swap_audio(data, ["user"])
    for i, (grid, new) in enumerate(zip(data.tokens, swapped.tokens)):
        other = data.tokens[(i + 1) % len(data)]
        m = min(len(grid), len(other))
        assert torch.equal(new[:, :cols.user.start], grid[:, :cols.user.start])
        assert torch.equal(new[:m, cols.user], other[:m, cols.user])
        assert (new[m:, cols.user] == data.streams.silence_token).all()
    assert not torch.equal(swapped.tokens[0], data.tokens[0]) and swapped.user_text is data.user_text
    with pytest.raises(ValueError, match="expected some of"):
        swap_audio(data, ["text"])
    further = swap_audio(data, ["user"], offset=2)  # another style's audio, in a file grouped by style
    other = data.tokens[2 % len(data)]
    m = min(len(data.tokens[0]), len(other))
    assert torch.equal(further.tokens[0][:m, cols.user], other[:m, cols.user])
    with pytest.raises(ValueError, match="another conversation"):
        swap_audio(data, ["user"], offset=len(data))


@pytest.mark.needs("flite")
def test_listening_head_needs_token_files_with_the_user_text(tmp_path):
    from recipes.dialogue.prepare import make_tokenizer, make_tokens
    from recipes.dialogue.task import collate

    synthesize_corpus(CorpusConfig(num_conversations=1, seed=3, max_turns=2), tmp_path / "data")
    make_tokenizer(tmp_path / "data", tmp_path / "tok.model", 96)
    make_tokens(tmp_path / "data", None, tmp_path / "tok.model", tmp_path / "t.safetensors")
    data = TokenSet(tmp_path / "t.safetensors")
    cfg = DialogueConfig(streams=data.streams, user_text_delay=2)
    batch = collate(data, [0], cfg, crop_steps=10**9)
    heard = batch["user_text"][0, 2:]  # the grid's user stream has delay 0, the head lags it 2 steps
    assert batch["user_text"].shape == batch["mask"].shape and (batch["user_text"][0, :2] == TextTokenizer.PAD).all()
    assert torch.equal(heard, data.user_text[0][:len(heard)])
    data.user_text = None  # a file made before the listening head existed
    with pytest.raises(ValueError, match="no user_text stream"):
        collate(data, [0], cfg, crop_steps=10**9)


def test_style_probe_finds_the_style_where_it_is(tmp_path):
    """Styles carried by the voice vector only: the voice probe finds them, the token probe is at chance."""

    from dialogue import StreamConfig
    from recipes.dialogue.style_probe import style_probe

    rng = np.random.default_rng(0)
    streams = StreamConfig(5, 62.5, 81, 4, 0, 40)
    styles = ["calm", "excited", "slow"] * 20
    ids = [f"{s}-{i:03d}" for i, s in enumerate(styles)]
    (tmp_path / "meta").mkdir()
    for i, s in zip(ids, styles):
        (tmp_path / "meta" / f"{i}.json").write_text(json.dumps({"style": s}))
    tokens = [torch.from_numpy(rng.integers(1, 81, (30, 11))) for _ in ids]
    voice = [torch.randn(30, 4) * 0.1 + torch.eye(4)[["calm", "excited", "slow"].index(s)] for s in styles]

    class FakeTokens(SimpleNamespace):  # what style_probe reads of a TokenSet
        def __len__(self):
            return len(self.ids)

    data = FakeTokens(tokens=tokens, user_voice=voice, ids=ids, streams=streams, data_dir=str(tmp_path),
                      path=tmp_path / "t.safetensors")
    r = style_probe(data, levels=None)
    assert r["voice"]["acc"] == 1.0 and r["tokens"]["acc"] < 0.6 and r["conversations"] == 60
    data.data_dir = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="no meta/"):
        style_probe(data, levels=None)


def test_gain_probe_labels_each_conversation_by_its_gain(tmp_path):
    """--gains: the user channels of a data dir encoded again at the gains in turn, the gain the label; bad
    gains or a missing data dir are named."""
    import soundfile as sf

    from codec import load_codec
    from recipes.datadir import DataDir
    from recipes.dialogue.style_probe import gain_probe

    (tmp_path / "wav").mkdir()
    t = np.arange(8000) / 16000
    for k in range(8):
        tone = 0.3 * np.sin(2 * np.pi * (150 + 20 * k) * t)
        sf.write(tmp_path / "wav" / f"c{k}.wav", np.stack([tone, 0 * tone], 1), 16000, subtype="PCM_16")
    utts = [f"c{k}" for k in range(8)]
    DataDir(wav_scp={u: f"wav/{u}.wav" for u in utts}, utt2spk={u: u for u in utts}, path=tmp_path).save(tmp_path)
    codec = load_codec()
    r = gain_probe(codec, tmp_path, [1.0, 0.25])
    assert r["conversations"] == 8 and r["gains"] == [1.0, 0.25]
    for probe in (r["tokens"], r["voice"]):
        assert probe["num_classes"] == 2 and probe["num_test"] == 4 and 0 <= probe["acc"] <= 1
    assert gain_probe(codec, tmp_path, [1.0, 0.5, 0.25], max_conversations=6)["conversations"] == 6
    for gains in ([1.0], [1.0, 0.0]):
        with pytest.raises(ValueError, match="gains must be two or more positive"):
            gain_probe(codec, tmp_path, gains)
    with pytest.raises(ValueError, match="data dir does not exist"):
        gain_probe(codec, tmp_path / "missing", [1.0, 0.5])


def test_corrupted_transcript_keeps_its_shape_ids_and_rate():
    from recipes.dialogue.task import corrupt_transcript

    text = torch.randint(0, 40, (4, 500), generator=torch.Generator().manual_seed(0))
    assert torch.equal(corrupt_transcript(text, 0.0, 40), text)
    noisy = corrupt_transcript(text, 0.2, 40, torch.Generator().manual_seed(1))
    assert torch.equal(noisy, corrupt_transcript(text, 0.2, 40, torch.Generator().manual_seed(1)))
    changed = noisy != text
    assert 0.12 < float(changed.float().mean()) < 0.22  # 20 % drawn; some draws repeat the same id
    new = noisy[changed]
    assert ((new == TextTokenizer.PAD) | (new > max(TextTokenizer.SPECIAL))).all() and int(new.max()) < 40


def test_arithmetic_entries_by_operation_or_uniform(tmp_path):
    """The default draw is the one every corpus so far was made with (pinned); "uniform" asks every one
    of the 310 table entries equally often; a bad setting is named before any synthesis."""
    import collections
    import random

    from recipes.dialogue.tasks import ARITHMETIC_TABLE, arithmetic, arithmetic_uniform

    rng = random.Random(0)
    assert [arithmetic(rng).question.text for _ in range(3)] == [
        "what is fifteen minus one", "what is eighteen minus sixteen", "what is eleven minus eight"]
    assert len(ARITHMETIC_TABLE) == len(set(ARITHMETIC_TABLE)) == 310
    rng = random.Random(1)
    counts = collections.Counter(arithmetic_uniform(rng).question.words[3] for _ in range(31000))
    for op, n in (("plus", 100), ("minus", 190), ("times", 20)):
        assert abs(counts[op] / 31000 - n / 310) < 0.01, (op, counts[op])
    ex = arithmetic_uniform(random.Random(2))
    a, op, b = (ex.question.words[2], ex.question.words[3], ex.question.words[4])
    assert ex.answer.words == (a, op, b, "is", ex.answer_words[0])
    with pytest.raises(ValueError, match="arithmetic_entries"):
        synthesize_corpus(CorpusConfig(num_conversations=1, arithmetic_entries="sorted"), tmp_path / "d")


def test_counting_replies_restate_the_range_on_the_same_draws(tmp_path):
    """counting_reply="restated" asks the same questions (same draws, so a corpus keeps its
    conversations) and says the range before the numbers; the answer words and the teacher-forced
    answer positions are the numbers themselves; a bad setting is named before any synthesis."""
    import random

    from recipes.dialogue.tasks import answer_positions, draw_exchange, reply_for, STYLES

    for seed in range(5):
        plain = draw_exchange("counting", random.Random(seed))
        restated = draw_exchange("counting", random.Random(seed), counting_reply="restated")
        assert restated.question == plain.question and restated.answer_words == plain.answer_words
        _, _, first, _, last = plain.question.words
        assert restated.answer.words == ("from", first, "to", last) + plain.answer.words
        reply = reply_for(restated, STYLES["calm"]).words
        assert answer_positions(reply, restated.answer_words) == list(range(5, len(reply)))
        assert answer_outcome(list(plain.answer_words), list(reply[:5])) != "right"  # the range alone is no answer
    with pytest.raises(ValueError, match="counting_reply is 'echo'"):
        synthesize_corpus(CorpusConfig(num_conversations=1, counting_reply="echo"), tmp_path / "d")


def test_count_lengths_keep_the_default_draws_and_bound_the_counts(tmp_path):
    """count_lengths [3, 6] (the default) draws exactly what the corpus always drew; longer counts stay
    within their lengths and the numbers counted; bad lengths are named before any synthesis."""
    import random

    from recipes.dialogue.tasks import LAST_COUNTED, NUMBERS, draw_exchange

    for seed in range(50):
        old = random.Random(seed)  # the draw before count_lengths existed
        a = old.randint(1, 14)
        b = a + old.randint(2, 5)
        assert draw_exchange("counting", random.Random(seed)).answer_words == tuple(NUMBERS[a:b + 1])
        long = draw_exchange("counting", random.Random(seed), count_lengths=(8, 10)).answer_words
        assert 8 <= len(long) <= 10 and NUMBERS.index(long[-1]) <= LAST_COUNTED
    for bad in ([1, 4], [5, 4], [3, 20], [3]):
        with pytest.raises(ValueError, match="count_lengths"):
            synthesize_corpus(CorpusConfig(num_conversations=1, count_lengths=bad), tmp_path / "d")


@pytest.mark.needs("flite")
def test_styles_without_rates_differ_in_pitch_only():
    """style_rates=False (the style ablation's corpus): the same conversation in the excited and the slow
    style has the same user word timings, so only pitch tells the styles apart; with rates it does not."""
    from recipes.dialogue.synth import build_conversation

    def user_onsets(style: str, rates: bool) -> tuple[list[float], np.ndarray]:
        cfg = CorpusConfig(styles=[style], style_rates=rates, min_turns=1, max_turns=1, p_pause=0.0)
        audio, meta, words = build_conversation(cfg, seed=5)
        return [round(t["question_end"] - t["question_start"], 3) for t in meta["turns"]], audio[0]

    (fast, _), (slow, _) = user_onsets("excited", True), user_onsets("slow", True)
    assert slow[0] > 1.5 * fast[0]
    (high, high_audio), (low, low_audio) = user_onsets("excited", False), user_onsets("slow", False)
    n = min(len(high_audio), len(low_audio))  # same timings, other pitch
    assert high == low and not np.allclose(high_audio[:n], low_audio[:n])


@pytest.mark.needs("flite")
def test_a_conversations_pitch_twin_changes_only_the_users_pitch():
    """build_conversation(user_pitch=...): the same conversation (style, words, timings, the system's audio)
    with the user spoken at another F0 factor."""
    from recipes.dialogue.synth import build_conversation

    cfg = CorpusConfig(style_rates=False, min_turns=2, max_turns=2, p_pause=1.0, p_backchannel=1.0)
    audio, meta, words = build_conversation(cfg, seed=7)
    twin_audio, twin_meta, twin_words = build_conversation(cfg, seed=7, user_pitch=1.3)
    clips, twin_clips = meta.pop("recordings"), twin_meta.pop("recordings")  # the user's are other recordings
    assert twin_meta == meta and twin_words == words
    for channel, same in (("system", True), ("user", False)):
        assert ([c["hash"] for c in clips if c["channel"] == channel] ==
                [c["hash"] for c in twin_clips if c["channel"] == channel]) == same
    n = min(audio.shape[1], twin_audio.shape[1])
    assert np.array_equal(audio[1, :n], twin_audio[1, :n])
    assert not np.allclose(audio[0, :n], twin_audio[0, :n], atol=1e-3)
    user = np.abs(audio[0]) > 1e-4  # where the user speaks does not move by more than a pitch period
    assert abs(int(user.sum()) - int((np.abs(twin_audio[0]) > 1e-4).sum())) < 0.02 * user.sum()


@pytest.mark.needs("flite")
def test_own_predictions_replace_only_what_is_named(tmp_path):
    """`evaluate --predicted` and training's `own_audio_sampled` read back the model's own teacher-forced
    predictions: the system audio (argmax at temperature 0) and/or the transcript (the listening head,
    moved back to the user's clock); the text column, the user audio and unnamed streams stay."""
    from recipes.dialogue.evaluate import own_predictions
    from recipes.dialogue.prepare import make_tokenizer, make_tokens
    from recipes.dialogue.task import collate, own_audio_history

    synthesize_corpus(CorpusConfig(num_conversations=2, seed=4, max_turns=2), tmp_path / "data")
    make_tokenizer(tmp_path / "data", tmp_path / "tok.model", 96)
    make_tokens(tmp_path / "data", None, tmp_path / "tok.model", tmp_path / "t.safetensors")
    data = TokenSet(tmp_path / "t.safetensors")
    cfg = DialogueConfig(streams=data.streams, user_text_delay=2, user_text_input=True)
    torch.manual_seed(0)
    model = __import__("dialogue").DuplexModel(cfg).eval()
    cols = model.columns
    batch = collate(data, [0, 1], cfg, crop_steps=10**9)
    logits = model(batch["tokens"], batch["user_voice"], batch["system_voice"], batch["user_text"])
    own = own_predictions(model, data, ["system"])
    for i, (grid, new) in enumerate(zip(data.tokens, own.tokens)):
        n = len(grid)
        d = cfg.delays.system  # the logits are on the delayed grid, the token file is not
        assert torch.equal(new[:, cols.system], logits.system[i, d:d + n].argmax(-1))
        assert torch.equal(new[:, :cols.system.start], grid[:, :cols.system.start])
        assert torch.equal(new[:, cols.user], grid[:, cols.user])
    assert own.user_text is data.user_text
    heard = own_predictions(model, data, ["transcript"])
    assert all(torch.equal(a, b) for a, b in zip(heard.tokens, data.tokens))
    n, d = len(data.tokens[0]), cfg.delays.user + cfg.user_text_delay
    assert torch.equal(heard.user_text[0][:n - d], logits.user_text[0, d:n].argmax(-1))
    assert torch.equal(data.user_text[0], TokenSet(tmp_path / "t.safetensors").user_text[0])  # not written over
    with pytest.raises(ValueError, match="expected some of"):
        own_predictions(model, data, ["user"])
    # training: only the picked rows' system audio is the model's sample; with a history (own_audio_noise),
    # the rows not picked keep it
    rows = torch.tensor([False, True])
    history = own_audio_history(model, batch, batch["user_text"], None, rows, 0.0)
    assert torch.equal(history[0], batch["tokens"][0])
    assert torch.equal(history[1, :, cols.system], logits.system[1].argmax(-1))  # both on the delayed grid
    assert torch.equal(history[1, :, cols.user], batch["tokens"][1, :, cols.user])
    noisy = batch["tokens"].clone()
    noisy[0, :, cols.system] = 0
    assert torch.equal(own_audio_history(model, batch, batch["user_text"], noisy, rows, 1.0)[0], noisy[0])
    assert own_audio_history(model, batch, None, noisy, torch.tensor([False, False]), 1.0) is noisy
    from recipes.dialogue.task import DialogueTask, DialogueTrainConfig

    train_cfg = DialogueTrainConfig(tokens=str(tmp_path / "t.safetensors"), tokenizer=str(tmp_path / "tok.model"),
                                    model=cfg, batch_size=2, own_audio_sampled=0.9)
    task = DialogueTask(train_cfg)
    terms = list(task.losses(task.build_model(), task.batch(0), 0))
    assert len(terms) == 1 and torch.isfinite(terms[0].loss)
    with pytest.raises(ValueError, match="own_audio_sampled_temperature is -1"):
        DialogueTrainConfig(own_audio_sampled_temperature=-1).check()


@pytest.mark.needs("flite")
def test_training_starts_from_a_released_model_of_its_shape_only(tmp_path):
    """`init_from`: a new run starts from an exported (half-precision) checkpoint's weights; one of another
    shape or tokenizer is refused, naming what differs."""
    import dataclasses

    from dialogue import save_dialogue
    from recipes.dialogue.prepare import make_tokenizer, make_tokens
    from recipes.dialogue.task import DialogueTask, DialogueTrainConfig

    synthesize_corpus(CorpusConfig(num_conversations=2, seed=4, max_turns=2), tmp_path / "data")
    make_tokenizer(tmp_path / "data", tmp_path / "tok.model", 96)
    synthesize_corpus(CorpusConfig(num_conversations=2, seed=5, max_turns=2), tmp_path / "other")
    make_tokenizer(tmp_path / "other", tmp_path / "other.model", 96)  # same size, other pieces
    make_tokens(tmp_path / "data", None, tmp_path / "tok.model", tmp_path / "t.safetensors")
    cfg = DialogueConfig(temporal=dataclasses.replace(DialogueConfig().temporal, dim=64))
    base = DialogueTrainConfig(tokens=str(tmp_path / "t.safetensors"), tokenizer=str(tmp_path / "tok.model"),
                               model=cfg, batch_size=2)
    task = DialogueTask(base)
    released = task.build_model()
    save_dialogue(tmp_path / "released.safetensors", released, task.tokenizer, task.data.codec_id,
                  description="step 16000 of its lineage", half=True)
    assert task.lineage() == ""

    tuned = DialogueTask(dataclasses.replace(base, init_from=str(tmp_path / "released.safetensors")))
    started = tuned.build_model()
    # the exported model says where it started, and what that model was
    assert tuned.lineage() == f", fine-tuned from {tmp_path / 'released.safetensors'} (step 16000 of its lineage)"
    for name, value in released.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(started.state_dict()[name], expected), name
    wider = dataclasses.replace(base, init_from=str(tmp_path / "released.safetensors"),
                                model=dataclasses.replace(cfg, temporal=dataclasses.replace(cfg.temporal, dim=96)))
    with pytest.raises(ValueError, match="another model config.*temporal"):
        DialogueTask(wider).build_model()
    other_words = dataclasses.replace(base, init_from=str(tmp_path / "released.safetensors"),
                                      tokenizer=str(tmp_path / "other.model"))
    with pytest.raises(ValueError, match="another tokenizer"):
        DialogueTask(other_words).build_model()
    # init_adapt names the differences allowed: another codec's tokens, and dropping the voice input
    from dialogue import DuplexModel

    streams = released.cfg.streams  # another codec: other tokens, its silence another id
    on_other = DuplexModel(dataclasses.replace(released.cfg, streams=dataclasses.replace(
        streams, silence_token=(streams.silence_token + 1) % streams.codebook_size)))
    on_other.load_state_dict(released.state_dict())
    save_dialogue(tmp_path / "other_codec.safetensors", on_other, task.tokenizer, "another-codec", half=True)
    on_new_codec = dataclasses.replace(base, init_from=str(tmp_path / "other_codec.safetensors"))
    with pytest.raises(ValueError, match="another-codec"):
        DialogueTask(on_new_codec).build_model()
    ablated_cfg = dataclasses.replace(on_new_codec, model=dataclasses.replace(cfg, user_voice=False))
    with pytest.raises(ValueError, match="another model config.*user_voice"):
        DialogueTask(dataclasses.replace(ablated_cfg, init_adapt=["codec"])).build_model()
    ablated = DialogueTask(dataclasses.replace(ablated_cfg, init_adapt=["codec", "user_voice"]))
    no_voice = ablated.build_model()
    assert no_voice.user_voice_proj is None and "[codec, user_voice changed]" in ablated.lineage()
    for name, value in no_voice.state_dict().items():
        assert torch.equal(value, released.state_dict()[name].half().float()) or not value.is_floating_point(), name
    with pytest.raises(ValueError, match="init_adapt: unknown \\['speaker'\\]"):
        DialogueTrainConfig(init_adapt=["speaker"]).check()


@pytest.mark.needs("flite")
def test_a_training_mix_pools_token_files_of_one_codec_and_tokenizer(tmp_path):
    """`more_tokens`: the conversations of several token files in one pool (a mix of corpora); files of
    another tokenizer are refused, and what reads one data dir's metadata says it cannot serve a mix."""
    from recipes.dialogue.prepare import make_tokenizer, make_tokens
    from recipes.dialogue.task import DialogueTask, DialogueTrainConfig

    synthesize_corpus(CorpusConfig(num_conversations=2, seed=4, max_turns=2), tmp_path / "a")
    synthesize_corpus(CorpusConfig(num_conversations=1, seed=5, max_turns=2), tmp_path / "b")
    make_tokenizer(tmp_path / "a", tmp_path / "tok.model", 96)
    make_tokenizer(tmp_path / "a", tmp_path / "small.model", 80)
    for name in ("a", "b"):
        make_tokens(tmp_path / name, None, tmp_path / "tok.model", tmp_path / f"{name}.safetensors")
    make_tokens(tmp_path / "b", None, tmp_path / "small.model", tmp_path / "b_small.safetensors")
    a, b = TokenSet(tmp_path / "a.safetensors"), TokenSet(tmp_path / "b.safetensors")
    mix = TokenSet(tmp_path / "a.safetensors")
    mix.extend(b)
    assert len(mix) == 3 and mix.ids == a.ids + b.ids and mix.system_voice.shape[0] == 3
    assert mix.sources == [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for got, want in zip(mix.tokens + mix.user_text + mix.user_voice + mix.system_speech,
                         a.tokens + b.tokens + a.user_text + b.user_text + a.user_voice + b.user_voice
                         + a.system_speech + b.system_speech):
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match="a mix of token files from the data dirs"):
        mix.data_dir
    with pytest.raises(ValueError, match="b_small.safetensors: streams"):
        mix.extend(TokenSet(tmp_path / "b_small.safetensors"))
    cfg = DialogueTrainConfig(tokens=str(tmp_path / "a.safetensors"), more_tokens=[str(tmp_path / "b.safetensors")],
                              tokenizer=str(tmp_path / "tok.model"), batch_size=16)
    task = DialogueTask(cfg)
    assert len(task.data) == 3
    assert task.batch(0)["tokens"].shape[0] == 16  # drawn from the pool of three


def test_the_sequence_probe_reads_a_style_that_pooled_tokens_hide(tmp_path):
    """Styles that differ only in token *order* (the same histogram): the pooled linear probe is at chance, the
    sequence reader finds them; random tokens stay near chance; a test file of another codec or with a style
    the training file lacks is named."""
    from dialogue import StreamConfig
    from recipes.dialogue.sequence_probe import sequence_probe
    from recipes.dialogue.style_probe import style_probe

    rng = np.random.default_rng(0)
    streams = StreamConfig(5, 62.5, 81, 4, 0, 40)
    (tmp_path / "meta").mkdir()

    class FakeTokens(SimpleNamespace):  # what the probes read of a TokenSet
        def __len__(self):
            return len(self.ids)

    def token_set(name, n, ordered, codec_id="c", styles=("calm", "excited")):
        ids, tokens = [], []
        for i in range(n):
            style = styles[i % len(styles)]
            ids.append(f"{name}-{style}-{i:03d}")
            (tmp_path / "meta" / f"{ids[-1]}.json").write_text(json.dumps({"style": style}))
            pairs = rng.integers(1, 41, 25)  # calm says a, a + 40; excited a + 40, a: the same tokens, reordered
            seq = np.stack([pairs, pairs + 40], 1) if style == "calm" or not ordered else np.stack([pairs + 40, pairs], 1)
            grid = rng.integers(1, 81, (len(seq.reshape(-1)) // 5, 11))
            grid[:, 6:] = seq.reshape(-1, 5)  # the user's five columns
            tokens.append(torch.from_numpy(grid))
        return FakeTokens(tokens=tokens, ids=ids, streams=streams, data_dir=str(tmp_path), codec_id=codec_id,
                          path=tmp_path / f"{name}.safetensors", user_voice=[torch.zeros(1, 4)] * n)

    train, test = token_set("train", 160, True), token_set("test", 40, True)
    assert style_probe(train, levels=None)["tokens"]["acc"] < 0.7  # the pooled histogram cannot tell
    r = sequence_probe(train, test, epochs=15, progress=False)
    assert r["acc"] >= 0.9 and r["classes"] == ["calm", "excited"] and r["num_test"] == 40
    r = sequence_probe(token_set("rtrain", 160, False), token_set("rtest", 40, False), epochs=15, progress=False)
    assert r["acc"] <= 0.75 and r["chance"] == 0.5
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        sequence_probe(train, test, epochs=0, progress=False)
    with pytest.raises(ValueError, match="tokens of codec c, .* of d"):
        sequence_probe(train, token_set("other", 8, True, codec_id="d"), progress=False)
    with pytest.raises(ValueError, match=r"styles \['slow'\] are not in"):
        sequence_probe(train, token_set("slow", 3, True, styles=("slow",)), progress=False)


@pytest.mark.slow
@pytest.mark.needs("flite")
@pytest.mark.needs("espeak-ng")
def test_tiny_recipe_on_the_held_out_splits(tmp_path):
    """run.sh --splits true --test true: a training corpus of many users, a corpus per held-out row of the validation
    and test splits with no recording of the training corpus in any, the model scored as it ships (3 runs, Silero
    VAD, ASR) into one table per split: a row per split with audio and monologue task accuracy and its command."""
    exp, data = tmp_path / "exp", tmp_path / "data"
    cmd = ["bash", str(ROOT / "egs/mini/dialogue1/run.sh"), "--tiny", "true", "--splits", "true", "--test", "true",
           "--exp", str(exp), "--data", str(data)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    from recipes.dialogue.score_splits import COLUMNS
    from tests.test_dialogue_splits import recordings

    trained = recordings(data / "train")
    rows = ["seen", "unseen_voice", "unseen_phrasing", "unseen_instance", "unknown"]
    if (data / "real" / "test" / "wav.scp").is_file():
        rows.append("real")
    for split in ("valid", "test"):
        for row in rows:
            held = recordings(data / f"{split}_{row}")
            assert not (trained["user"] & held["user"]) and not (trained["system"] & held["system"]), (split, row)
    assert corpus_config(data / "test_unseen_instance").instances == "test"
    for results, split in ((exp / "RESULTS.md", "test"), (exp / "RESULTS_valid.md", "valid")):
        table = [line for line in results.read_text().splitlines() if line.startswith("| ")]
        head = table[0].split(" | ")
        assert "task acc, audio (ASR)" in head and "task acc, monologue" in head and head[-1] == "command |"
        assert len(table) - 1 == len(rows)  # one row per split, each with its command
        for row, line in zip(rows, table[1:]):
            assert f"`{split}_{row}`" in line and f"--split {row}=" in line and len(line.split(" | ")) == len(head)
    scores = json.loads((exp / "dialogue" / "score_test" / "scores.json").read_text())
    assert [r["split"] for r in scores] == rows and all(len(r["runs"]) == 3 for r in scores)
    unknown = next(r for r in scores if r["split"] == "unknown")
    assert unknown["figures"]["unknown_said_so"][3] > 0 and unknown["figures"]["task_accuracy"][0] is None
    assert (exp / "dialogue" / "score_valid" / "teacher_forced.json").is_file()
    assert (exp / "demo" / "summary.json").is_file()
    # --adapt_from with --splits: that model moved onto another codec's tokens of the same many-user corpus (its
    # tokenizer kept, no mix phase): what the bundled model's move onto the library codec runs
    exp2 = tmp_path / "exp_adapt"
    exp2.mkdir()
    untrained_codec(seed=1).save(exp2 / "codec.safetensors", "another stand-in")
    adapt = cmd[:2] + ["--tiny", "true", "--splits", "true", "--exp", str(exp2), "--data", str(data), "--stage", "2",
                       "--stop_stage", "4", "--adapt_from", str(exp / "dialogue" / "model.safetensors")]
    res = subprocess.run(adapt, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (exp2 / "tokenizer.model").read_bytes() == (exp / "tokenizer.model").read_bytes()
    moved = load_dialogue(exp2 / "dialogue_adapted" / "model.safetensors")
    assert moved.codec_id == load_codec(exp2 / "codec.safetensors").codec_id != load_dialogue(
        exp / "dialogue" / "model.safetensors").codec_id
    assert "[codec changed]" in moved.description and "tokens/train.safetensors" in moved.description
    assert not (exp2 / "dialogue_mixed").exists()
