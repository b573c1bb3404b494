"""Synthetic corpora: engine timings cover the audio, the corpus is a valid data dir whose CTMs tile it."""
import shutil

import numpy as np
import pytest
import soundfile as sf

from recipes.ctm import group_by_utt, read_ctm
from recipes.datadir import DataDir
from recipes.synth import Segment, Speaker, Synthesis, build_corpus, make_speakers, normalise
from recipes.synth import espeak, festival, flite
from recipes.synth.phones import PHONES, cmu_to_units, ipa_to_units
from recipes.synth.text import FORTUNE_DIR, Sentence, fortune_sentences

TEXTS = ["The cat sat on the mat.", "Nothing ventured, nothing gained!"]


def need(ok_reason, what):
    ok, reason = ok_reason
    if not ok:
        pytest.skip(f"{what} unavailable: {reason} (install with recipes/install_system_deps.sh)")


def check_cover(syn: Synthesis, tol: float = 0.05):
    assert syn.phones and syn.audio.ndim == 1 and syn.audio.dtype == np.float32
    ends = [p.end for p in syn.phones]
    assert all(b.start >= a.start for a, b in zip(syn.phones, syn.phones[1:])), "phones not in time order"
    assert abs(ends[-1] - syn.duration) <= tol, f"last phone ends at {ends[-1]:.3f}s, audio is {syn.duration:.3f}s"
    assert all(p in PHONES for p in (s.label for s in syn.phones))
    assert sum(p.label != "sil" for p in syn.phones) >= 6


@pytest.mark.parametrize("voice", ["slt", "rms"])
def test_flite_timings_cover_audio(voice):
    need(flite.available(), "flite")
    for text in TEXTS:
        syn = flite.synthesize(text, voice)
        check_cover(syn)
        assert [w.label for w in syn.words] == [w.strip(",.!").lower() for w in text.split()]


def test_flite_diphone_final_pause_is_cut():
    """kal16 ends its audio in the middle of the final pause; normalise() clips it."""
    need(flite.available(), "flite")
    syn = flite.synthesize(TEXTS[0], "kal16")
    speech_end = max(p.end for p in syn.phones if p.label != "sil")
    assert speech_end <= syn.duration + 0.005 and syn.phones[-1].end > syn.duration
    utt = normalise(syn, 16000)
    assert utt.phones[-1].end == pytest.approx(utt.duration, abs=1e-9)


def test_flite_library_matches_psdur():
    """The ctypes path reports the same phone end times as `flite -psdur`."""
    need(flite.available(), "flite")
    if not shutil.which("flite"):
        pytest.skip("flite binary missing")
    lib = flite.synthesize(TEXTS[1], "slt", rate=1.1, pitch=1.1)
    cli = flite.synthesize(TEXTS[1], "slt", rate=1.1, pitch=1.1, use_library=False)
    assert [p.label for p in lib.phones] == [p.label for p in cli.phones]
    assert np.allclose([p.end for p in lib.phones], [p.end for p in cli.phones], atol=1e-3)
    assert len(lib.audio) == len(cli.audio)


def test_espeak_timings_cover_audio():
    need(espeak.available(), "espeak-ng")
    for text, (voice, variant) in zip(TEXTS, [("en-us", "m3"), ("en-gb-x-rp", "f2")]):
        syn = espeak.synthesize(text, voice, variant, rate=1.1, pitch=0.9)
        check_cover(syn, tol=1e-6)  # events carry exact sample indices
        # function words espeak speaks as one unit may stay joined ('of_the') when their
        # dictionary pronunciations do not account for the phones
        assert " ".join(w.label for w in syn.words).replace("_", " ").split() == \
            [w.strip(",.!").lower() for w in text.split()]
        assert all(w.end > w.start for w in syn.words)


def test_festival_batch_timings_cover_audio():
    need(festival.available(), "festival")
    voices = [v for v in ("kal_diphone", "cmu_us_slt_arctic_hts") if v in festival.installed_voices()]
    if not voices:
        pytest.skip("no festival voice installed (festvox-kallpc16k, festvox-us-slt-hts)")
    out = festival.synthesize_batch([(TEXTS[i % 2], v, 1.0, 1.0) for i, v in enumerate(voices)])
    for syn in out:
        assert isinstance(syn, Synthesis), syn
        check_cover(syn)
        assert syn.words and syn.words[0].label in ("the", "nothing")


def test_festival_batch_retries_the_items_a_crash_left_without_output(monkeypatch):
    """Festival aborts mid-batch now and then (heap corruption, exit -6) and takes the rest of the batch with it: the
    item it crashed on is tried again alone and the ones it never reached together, in fresh processes; an item that
    crashes it every time ends in its own SynthError, and the others are said."""
    import re
    from types import SimpleNamespace

    calls = []

    def fake_festival(cmd, **kwargs):  # says the batch in order until an item it crashes on
        script = open(cmd[-1]).read()
        batch = re.findall(r'Utterance Text "([^"]*)"\)\)\n\(utt.synth duet_utt\)\n'
                           r'\(utt.save.wave duet_utt "([^"]+)\.wav"', script)
        calls.append(len(batch))
        for text, target in batch:
            if text in always_crashes or (len(calls) == 1 and text in crashes_once):
                return SimpleNamespace(returncode=-6, stderr="malloc(): corrupted top size")
            sf.write(target + ".wav", np.zeros(1600, dtype="float32"), 16000)
            open(target + ".txt", "w").write("seg hh 0.05\nseg ay 0.1\nword hi 0.0 0.1\n")
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(festival.shutil, "which", lambda name: "/usr/bin/festival")
    monkeypatch.setattr(festival.subprocess, "run", fake_festival)
    items = [(f"say {i}", "kal_diphone", 1.0, 1.0) for i in range(4)]
    always_crashes, crashes_once = set(), {"say 1"}
    out = festival.synthesize_batch(items)
    assert calls == [4, 1, 2] and all(isinstance(r, Synthesis) for r in out)
    calls.clear()
    always_crashes = {"say 1"}
    out = festival.synthesize_batch(items)
    assert calls == [4, 1, 1, 2]  # the crashing item alone, twice more; the rest once
    assert [isinstance(r, festival.SynthError) for r in out] == [False, True, False, False]
    assert "exit -6" in str(out[1])


def test_ipa_and_cmu_mapping():
    assert ipa_to_units("") == ["sil"]
    assert ipa_to_units("oʊ") == ["ow"] and ipa_to_units("ɜː") == ["er"] and ipa_to_units("t̪") == ["t"]
    assert ipa_to_units("ɪɹ") == ["ih", "r"] and ipa_to_units("aɪə") == ["ay", "ax"]
    assert cmu_to_units("pau") == ["sil"] and cmu_to_units("axr") == ["er"] and cmu_to_units("zz") == ["spn"]
    assert PHONES[0] == "sil" and len(set(PHONES)) == len(PHONES)


def test_normalise_sets_silence_exactly():
    sr = 8000
    audio = np.concatenate([np.zeros(4000), 0.5 * np.sin(np.arange(8000) * 0.3), np.zeros(800)]).astype(np.float32)
    syn = Synthesis(audio, sr, [Segment("sil", 0, 0.5), Segment("aa", 0.5, 1.0), Segment("b", 1.0, 1.5),
                                Segment("sil", 1.5, 1.6)], [Segment("ab", 0.5, 1.5)], "test", "v")
    utt = normalise(syn, 16000, lead_silence=0.1, tail_silence=0.2)
    assert utt.duration == pytest.approx(1.3)
    assert [(p.label, round(p.start, 4), round(p.end, 4)) for p in utt.phones] == [
        ("sil", 0.0, 0.1), ("aa", 0.1, 0.6), ("b", 0.6, 1.1), ("sil", 1.1, 1.3)]
    assert (utt.words[0].start, utt.words[0].end) == pytest.approx((0.1, 1.1))
    assert np.abs(utt.audio[:1500]).max() < 1e-3 and np.abs(utt.audio[1700:17000]).max() > 0.01


def test_speakers_are_deterministic_and_heldout_voices_disjoint():
    a, b = make_speakers(seed=3, engines=["flite", "festival", "espeak"]), \
        make_speakers(seed=3, engines=["flite", "festival", "espeak"])
    assert [s.id for s in a.all] == [s.id for s in b.all]
    ids = [s.id for s in a.all]
    assert len(ids) == len(set(ids))
    assert not {s.base_voice for s in a.train} & {s.base_voice for s in a.heldout}
    assert all(Speaker.from_id(s.id) == s for s in a.all)


def test_fortune_sentences():
    if not FORTUNE_DIR.is_dir():
        pytest.skip(f"{FORTUNE_DIR} missing (apt-get install fortunes)")
    s = fortune_sentences()
    assert len(s) > 1000 and s[:50] == fortune_sentences()[:50]
    assert all(3 <= x.num_words <= 20 and x.spoken.isascii() for x in s)


def test_build_corpus_tiles_audio(tmp_path):
    need(flite.available(), "flite")
    speakers = [Speaker("flite", "slt"), Speaker("flite", "kal16", pitch=1.2, rate=0.9)]
    if espeak.available()[0]:
        speakers.append(Speaker("espeak", "en-us", variant="f3"))
    sentences = [Sentence(t, t.lower().strip("!.").replace(",", ""), "test") for t in TEXTS]
    d = build_corpus(tmp_path / "data", len(speakers) + 1, speakers, seed=0, num_workers=1, sentences=sentences,
                     progress=False)
    assert len(d.utts) == len(speakers) + 1 and d.text and d.utt2dur
    phones = group_by_utt(read_ctm(tmp_path / "data" / "phones.ctm"))
    words = group_by_utt(read_ctm(tmp_path / "data" / "words.ctm"))
    for utt in d.utts:
        audio, sr = sf.read(d.wav_path(utt))
        assert sr == 16000 and len(audio) / sr == pytest.approx(d.utt2dur[utt], abs=1e-4)
        seg = phones[utt]
        assert seg[0].start == 0 and seg[0].token == "sil" and seg[0].dur == pytest.approx(0.1, abs=1e-4)
        assert seg[-1].end == pytest.approx(d.utt2dur[utt], abs=1e-4)
        assert all(abs(b.start - a.end) < 1e-4 for a, b in zip(seg, seg[1:])), "phone segments must tile"
        assert words[utt] and words[utt][-1].end <= seg[-1].start + 1e-4
    assert (tmp_path / "data" / "phones.txt").read_text().splitlines()[0] == "sil 0"
