"""The CTC forced aligner: transcript normalisation, alignment of known emissions (monotone,
non-overlapping entries that cover the words in order), clear errors for impossible alignments,
and the train → align command-line path on a tiny data dir with a bad utterance in it."""
import numpy as np
import pytest
import soundfile as sf
import torch

from recipes.align import (AlignerConfig, AlignerLoadError, AlignmentError, CharTokenizer, CtcAligner, align_emission,
                           load_aligner, normalise_words, save_aligner)
from recipes.ctm import frame_labels, group_by_utt, read_ctm, validate_ctm
from recipes.datadir import DataDir

TINY = {"model": {"n_mels": 20, "conv_channels": 16, "conv_layers": 1, "rnn_hidden": 16, "rnn_layers": 1}}


@pytest.fixture(autouse=True)
def one_thread():
    """A GRU steps frame by frame; on shared cores a 2-thread pool spends seconds in barriers."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def emission_for(path: list[int], vocab: int, peak: float = 8.0) -> torch.Tensor:
    """Log-probs [T, vocab] whose best path is `path` (one class id per frame)."""
    logits = torch.zeros(len(path), vocab)
    logits[torch.arange(len(path)), torch.tensor(path)] = peak
    return logits.log_softmax(-1)


def test_normalise_words():
    assert normalise_words("Well-known, “café” isn't 5 o’clock. 'Quoted' — A/B") == \
        ["well", "known", "cafe", "isn't", "o'clock", "quoted", "a", "b"]
    assert normalise_words("... 123 !") == []
    tok = CharTokenizer()
    assert tok.encode(["ab", "c"]) == [2, 3, 1, 4]
    assert tok.units[:3] == ["sil", "a", "b"] and tok.unit(1) == "sil" and tok.unit(2) == "a"


def test_alignment_of_known_emissions():
    tok = CharTokenizer()
    a, b, l, o, sep = tok.ids["a"], tok.ids["b"], tok.ids["l"], tok.ids["o"], 1
    # "ab ball loo": blanks, a a b, blank, | |, b a l blank l, |, l o blank o, blanks
    path = [0, 0, a, a, b, 0, sep, sep, b, a, l, 0, l, sep, l, o, 0, o, 0, 0]
    words = ["ab", "ball", "loo"]
    ali = align_emission(emission_for(path, tok.vocab_size), words, tok, frame_seconds=0.02, utt="u1",
                         max_unit_seconds=1.0)
    assert [e.token for e in ali.words] == words
    validate_ctm(ali.words)
    validate_ctm(ali.phones)
    frames = [x for e in ali.words for x in (e.start / 0.02 + 0.5, e.end / 0.02 + 0.5)]  # frame f centred at 0.02·f s
    assert frames == pytest.approx([2, 6, 8, 13, 14, 18])  # a word ends where its separator starts
    assert [e.token for e in ali.phones] == list("ab") + ["sil"] + list("ball") + ["sil"] + list("loo")
    for prev, cur in zip(ali.phones, ali.phones[1:]):  # contiguous from the first letter to the last
        assert cur.start == pytest.approx(prev.end)
    assert all(0.9 < e.conf <= 1.0 for e in ali.words)
    units = tok.units
    labels = [units[i] for i in frame_labels(ali.phones, 100.0, 2 * len(path), units)]  # 10 ms grid
    assert labels[:3] == ["sil"] * 3 and labels[3:7] == ["a"] * 4 and labels[7:11] == ["b"] * 4  # 'a' = [30, 70) ms
    assert labels[-3:] == ["sil"] * 3


def test_peaky_emissions_leave_long_pauses_silent():
    tok = CharTokenizer()
    a, sep, b = tok.ids["a"], 1, tok.ids["b"]
    path = [0, a] + [0] * 30 + [sep] + [0] * 30 + [b, 0]
    ali = align_emission(emission_for(path, tok.vocab_size), ["a", "b"], tok, 0.01, utt="u", max_unit_seconds=0.05)
    w1, w2 = ali.words
    assert w1.start == pytest.approx(0.005) and w1.end == pytest.approx(0.065)  # capped 5 frames past its span
    assert w2.start == pytest.approx(0.625) and w2.end == pytest.approx(0.635)
    sil = [e for e in ali.phones if e.token == "sil"]
    assert len(sil) == 1 and sil[0].start == pytest.approx(0.315) and sil[0].end == pytest.approx(0.375)


def test_impossible_alignment_is_a_clear_error():
    tok = CharTokenizer()
    em = emission_for([0] * 6, tok.vocab_size)
    with pytest.raises(AlignmentError, match=r"utt7: transcript longer than the audio: 2 words = 9 CTC tokens "
                                             r"\(\+2 blanks between repeated letters\) need >= 11 frames, "
                                             r"but the audio gives 6 frames \(0\.06 s"):
        align_emission(em, ["hello", "all"], tok, 0.01, utt="utt7")
    with pytest.raises(AlignmentError, match="utt8: nothing to align"):
        align_emission(em, [], tok, 0.01, utt="utt8")
    with pytest.raises(AlignmentError, match="non-finite"):
        align_emission(torch.full((6, tok.vocab_size), float("nan")), ["a"], tok, 0.01, utt="u")


def _tiny_data(root, sr=24000):
    rng = np.random.default_rng(0)
    texts = {"s1-a": "Hello there, world.", "s1-b": "A cat sat.", "s2-a": "Good morning!",
             "s2-b": "This transcript is far too long for a tenth of a second"}
    durs = {"s1-a": 1.2, "s1-b": 0.8, "s2-a": 0.9, "s2-b": 0.1}
    wav_scp, utt2dur = {}, {}
    for utt, dur in durs.items():
        t = np.arange(int(dur * sr)) / sr
        wav = 0.1 * np.sin(2 * np.pi * (150 + 100 * rng.random()) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(root / f"{utt}.wav", wav.astype(np.float32), sr)
        wav_scp[utt], utt2dur[utt] = str(root / f"{utt}.wav"), dur
    (root / "s2-c.wav").write_bytes(b"RIFF not really a wav file")  # unreadable audio
    wav_scp["s2-c"], utt2dur["s2-c"], texts["s2-c"] = str(root / "s2-c.wav"), 1.0, "Broken file."
    d = DataDir(wav_scp=wav_scp, utt2spk={u: u.split("-")[0] for u in texts}, text=texts, utt2dur=utt2dur)
    d.save(root / "data")
    return root / "data", texts


def test_train_and_align_cli(tmp_path, capsys):
    import yaml

    from recipes.align.align import main as align_main
    from recipes.align.task import AlignerTask, AlignerTrainConfig
    from recipes.align.train import main as train_main
    from codec.config_io import from_dict

    data, texts = _tiny_data(tmp_path)
    conf = tmp_path / "aligner.yaml"
    conf.write_text(yaml.safe_dump({**TINY, "data": [str(data)], "batch_seconds": 2.0, "loader_threads": 1,
                                    "prefetch": 2, "spec_augment": {"freq_masks": 1, "freq_width": 4,
                                                                   "time_masks": 1, "time_width": 5},
                                    "trainer": {"max_steps": 2, "warmup_steps": 1, "log_every": 1,
                                                "checkpoint_every": 2}}))
    task = AlignerTask(from_dict(AlignerTrainConfig, yaml.safe_load(conf.read_text())))
    assert {u.utt for u in task.utts} == {"s1-a", "s1-b", "s2-a", "s2-c"}  # the impossible one is left out
    assert task.batch_indices(5, 0) == task.batch_indices(5, 0)  # a batch is a function of the step
    broken = [u.utt for u in task.utts].index("s2-c")
    step = next(s for s in range(100) if broken in task.batch_indices(s, 0) and len(task.batch_indices(s, 0)) > 1)
    batch = task.batch(step, 0)  # the unreadable file is skipped, the rest of the batch kept
    assert len(batch["lengths"]) == len(task.batch_indices(step, 0)) - 1
    assert "skipping s2-c: cannot read" in capsys.readouterr().err
    exp = tmp_path / "exp"
    train_main(["--config", str(conf), "--out", str(exp), "--no-progress"])
    assert (exp / "aligner.safetensors").is_file()
    # a step dir (config from ../config.yaml) loads the same weights as the exported file
    a, b = load_aligner(exp), load_aligner(exp / "step-2")
    wav = torch.randn(1, 4000)
    assert torch.equal(a(wav)[0], b(wav)[0])

    assert align_main(["--data", str(data), "--model", str(exp), "--quiet"]) == 1  # 2/5 failed > 10 %
    assert "2/5 utterances could not be aligned" in capsys.readouterr().err
    assert align_main(["--data", str(data), "--model", str(exp), "--quiet", "--max-fail-ratio", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "aligned 3/5 utterances" in err and "skipped 2" in err
    failed = (data / "align_failed.txt").read_text().splitlines()
    assert len(failed) == 2 and failed[0].startswith("s2-b s2-b: transcript longer than the audio")
    assert failed[1].startswith("s2-c s2-c: cannot read audio")
    words = group_by_utt(read_ctm(data / "words.ctm"))  # read_ctm validates order and overlaps
    phones = group_by_utt(read_ctm(data / "phones.ctm"))
    assert set(words) == set(phones) == {"s1-a", "s1-b", "s2-a"}
    d = DataDir.load(data)
    for utt, entries in words.items():
        assert [e.token for e in entries] == normalise_words(texts[utt])
        assert entries[-1].end <= d.utt2dur[utt] + 1e-4
        inside = [p for p in phones[utt] if p.token != "sil"]
        assert "".join(p.token for p in inside) == "".join(normalise_words(texts[utt]))
    units = (data / "phones.txt").read_text().splitlines()
    assert units[:2] == ["sil 0", "a 1"] and units[-1] == "' 27"


def test_load_errors(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(AlignerLoadError, match="no 'aligner_config'"):
        load_aligner(tmp_path / "other.safetensors")
    with pytest.raises(AlignerLoadError, match="no such aligner"):
        load_aligner(tmp_path / "missing")
    model = CtcAligner(AlignerConfig(**TINY["model"]))
    path = save_aligner(model, tmp_path / "a.safetensors")
    assert load_aligner(path).cfg == model.cfg
