"""Kaldi data dirs and CTMs: exact round trip, and one clear error (file, line, problem) per kind of damage."""
import numpy as np
import pytest
import soundfile as sf

from recipes.ctm import CtmEntry, CtmError, frame_labels, read_ctm, write_ctm
from recipes.datadir import DataDir, DataDirError, Segment


def make_dir(tmp_path, with_text=True):
    audio = tmp_path / "audio"
    audio.mkdir()
    wav_scp = {}
    for i, utt in enumerate(["spkA-001", "spkA-002", "spkB-001"]):
        path = audio / f"{utt}.wav"
        sf.write(path, np.zeros(1600 + 100 * i, dtype=np.float32), 16000)
        wav_scp[utt] = str(path)
    d = DataDir(wav_scp=wav_scp, utt2spk={u: u.split("-")[0] for u in wav_scp},
                text={"spkA-001": "hello world", "spkA-002": "good bye", "spkB-001": "yes"} if with_text else None,
                utt2dur={u: 0.1 for u in wav_scp})
    return d.save(tmp_path / "data"), d


def test_round_trip(tmp_path):
    path, d = make_dir(tmp_path)
    back = DataDir.load(path)
    assert back.wav_scp == d.wav_scp and back.utt2spk == d.utt2spk and back.text == d.text
    assert back.utt2dur == d.utt2dur and back.segments is None
    assert back.spk2utt == {"spkA": ["spkA-001", "spkA-002"], "spkB": ["spkB-001"]}
    assert (path / "spk2utt").read_text() == "spkA spkA-001 spkA-002\nspkB spkB-001\n"
    back.save(tmp_path / "copy")
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur"):
        assert (tmp_path / "copy" / name).read_text() == (path / name).read_text()


def test_writer_sorts_in_c_order(tmp_path):
    d = DataDir(wav_scp={"b": "/x/b.wav", "B": "/x/B.wav", "a": "/x/a.wav"},
                utt2spk={"b": "s", "B": "s", "a": "s"})
    d.save(tmp_path)
    assert [l.split()[0] for l in (tmp_path / "wav.scp").read_text().splitlines()] == ["B", "a", "b"]
    DataDir.load(tmp_path, check_audio=False)


def test_text_is_optional(tmp_path):
    path, _ = make_dir(tmp_path, with_text=False)
    d = DataDir.load(path)
    assert d.text is None and len(d.utts) == 3


def test_segments(tmp_path):
    path, d = make_dir(tmp_path)
    rec = d.wav_scp["spkA-001"]
    seg = DataDir(wav_scp={"rec1": rec}, utt2spk={"u1": "s", "u2": "s"},
                  segments={"u1": Segment("rec1", 0.0, 0.05), "u2": Segment("rec1", 0.05, -1)})
    seg.save(tmp_path / "seg")
    back = DataDir.load(tmp_path / "seg")
    assert back.segments == seg.segments
    assert back.audio("u2")[1:] == (0.05, -1)


def test_missing_required_file(tmp_path):
    path, _ = make_dir(tmp_path)
    (path / "utt2spk").unlink()
    with pytest.raises(DataDirError, match=r"utt2spk: required file is missing"):
        DataDir.load(path)


def test_missing_spk2utt(tmp_path):
    path, _ = make_dir(tmp_path)
    (path / "spk2utt").unlink()
    with pytest.raises(DataDirError, match=r"spk2utt: required file is missing"):
        DataDir.load(path)


def test_not_sorted(tmp_path):
    path, _ = make_dir(tmp_path)
    lines = (path / "text").read_text().splitlines()
    (path / "text").write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    with pytest.raises(DataDirError, match=r"text line 2: not sorted: 'spkA-001' comes after 'spkA-002'"):
        DataDir.load(path)


def test_duplicate_id(tmp_path):
    path, _ = make_dir(tmp_path)
    lines = (path / "utt2spk").read_text().splitlines()
    (path / "utt2spk").write_text("\n".join([lines[0], lines[0], *lines[1:]]) + "\n")
    with pytest.raises(DataDirError, match=r"utt2spk line 2: duplicate id 'spkA-001' \(first on line 1\)"):
        DataDir.load(path)


def test_utterance_without_audio(tmp_path):
    path, _ = make_dir(tmp_path)
    lines = (path / "wav.scp").read_text().splitlines()
    (path / "wav.scp").write_text("\n".join([lines[0], lines[2]]) + "\n")
    with pytest.raises(DataDirError, match=r"utt2spk line 2: utterance 'spkA-002' has no audio in wav.scp"):
        DataDir.load(path)


def test_text_without_audio(tmp_path):
    path, _ = make_dir(tmp_path)
    with open(path / "text", "a") as f:
        f.write("spkC-001 stray line\n")
    with pytest.raises(DataDirError, match=r"text line 4: utterance 'spkC-001' has no audio in wav.scp"):
        DataDir.load(path)


def test_spk2utt_inconsistent(tmp_path):
    path, _ = make_dir(tmp_path)
    (path / "spk2utt").write_text("spkA spkA-001\nspkB spkB-001\n")
    with pytest.raises(DataDirError, match=r"spk2utt line 1: speaker 'spkA': inconsistent with utt2spk"):
        DataDir.load(path)


def test_wav_path_does_not_exist(tmp_path):
    path, d = make_dir(tmp_path)
    (tmp_path / "audio" / "spkB-001.wav").unlink()
    with pytest.raises(DataDirError, match=r"wav.scp line 3: audio file .*spkB-001.wav' does not exist"):
        DataDir.load(path)


def test_pipe_rejected(tmp_path):
    path, _ = make_dir(tmp_path)
    lines = (path / "wav.scp").read_text().splitlines()
    lines[0] = "spkA-001 sox x.flac -t wav - |"
    (path / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError, match=r"wav.scp line 1: pipe command .* not supported"):
        DataDir.load(path)


def test_bad_duration(tmp_path):
    path, _ = make_dir(tmp_path)
    (path / "utt2dur").write_text("spkA-001 0.1\nspkA-002 -3\nspkB-001 0.1\n")
    with pytest.raises(DataDirError, match=r"utt2dur line 2: duration must be > 0 seconds, found -3"):
        DataDir.load(path)


# --- CTM ------------------------------------------------------------------------------------------
def test_ctm_round_trip_and_frame_labels(tmp_path):
    entries = [CtmEntry("u1", "1", 0.0, 0.1, "sil"), CtmEntry("u1", "1", 0.1, 0.05, "hh"),
               CtmEntry("u1", "1", 0.15, 0.1, "ax"), CtmEntry("u0", "1", 0.0, 0.2, "sil", 0.9)]
    write_ctm(tmp_path / "a.ctm", entries)
    back = read_ctm(tmp_path / "a.ctm")
    assert [e.utt for e in back] == ["u0", "u1", "u1", "u1"] and back[0].conf == pytest.approx(0.9)
    vocab = ["sil", "hh", "ax"]
    u1 = [e for e in back if e.utt == "u1"]
    labels = frame_labels(u1, frame_rate=40.0, num_frames=12, vocab=vocab)  # 25 ms frames
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 0, 0]
    with pytest.raises(CtmError, match="not in the vocabulary"):
        frame_labels(u1, 40.0, 12, ["sil", "hh"])


@pytest.mark.parametrize("line, problem", [
    ("u1 1 0.30 -0.1 ax", r"a.ctm line 2: duration must be > 0"),
    ("u1 1 0.15 0.1 ax", r"a.ctm line 2: overlap: u1 'ax' starts at 0.15000 but the previous entry 'hh' ends at 0.20000"),
    ("u1 1 0.2", r"a.ctm line 2: expected 'utt channel start dur token \[conf\]'"),
])
def test_ctm_errors(tmp_path, line, problem):
    (tmp_path / "a.ctm").write_text(f"u1 1 0.10 0.10 hh\n{line}\n")
    with pytest.raises(CtmError, match=problem):
        read_ctm(tmp_path / "a.ctm")


def test_ctm_unsorted(tmp_path):
    (tmp_path / "a.ctm").write_text("u1 1 0.30 0.10 hh\nu1 1 0.10 0.10 ax\n")
    with pytest.raises(CtmError, match=r"a.ctm line 2: not sorted"):
        read_ctm(tmp_path / "a.ctm")


# --- real-speech data dir from the Asterisk prompt layout (a fabricated tree of the right shape) ----
def test_asterisk_data_dir_from_fabricated_tree(tmp_path):
    import gzip

    from recipes.audio_corpus import build_asterisk

    sounds, docs = tmp_path / "sounds", tmp_path / "doc"
    prompts = {"en_US_f_Allison": {"vm-press": "Press 1 then #.", "beep": "[beep tone]", "silence/1": None},
               "es_MX_f_Allison": {"hola": "¡Hola, señor!", "digits/1": "uno"}}
    for directory, entries in prompts.items():
        lang = directory[:2]
        for i, name in enumerate(entries):
            path = sounds / directory / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * np.sin(np.arange(8000 + 800 * i) * 0.05).astype(np.float32), 8000)
        doc = docs / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
        doc.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(doc, "wt", encoding="utf-8") as f:
            f.write("; header\n" + "".join(f"{k}: {v}\n" for k, v in entries.items() if v))
    d = build_asterisk(tmp_path / "data", 16000, sources=("en-wav", "es"), sounds=sounds, docs=docs, progress=False)
    assert d.text == {"asterisk-en-wav-vm-press": "press one then pound", "asterisk-es-digits_1": "uno",
                      "asterisk-es-hola": "hola señor"}
    assert d.utt2lang["asterisk-es-hola"] == "es" and d.speakers == ["asterisk-en-wav", "asterisk-es"]
    assert sf.info(d.wav_path("asterisk-es-hola")).samplerate == 16000
    # reconstruction-only: no text file, prompts without a transcript kept, silence/ still left out
    d2 = build_asterisk(tmp_path / "data2", 16000, sources=("en-wav",), with_text=False, sounds=sounds, docs=docs,
                        progress=False)
    assert d2.text is None and not (tmp_path / "data2" / "text").exists()
    assert d2.utts == ["asterisk-en-wav-vm-press"]  # the [beep tone] prompt is not speech
    # the prompt texts come in a separate package: without them a transcribed corpus names it
    with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-en"):
        build_asterisk(tmp_path / "data3", 16000, sources=("en-wav",), sounds=sounds, docs=tmp_path / "nodoc",
                       progress=False)
