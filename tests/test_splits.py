"""The committed speaker splits (recipes/speaker_splits.yaml): disjoint, complete, honoured by the corpus builders."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recipes.real_speech import build_klettres, build_real_speech, klettres_languages, trim_to_speech
from recipes.splits import SpeakerSplits, load_splits
from recipes.synth import espeak, festival, flite
from recipes.synth.speakers import split_speakers


def test_the_committed_splits_are_disjoint_and_name_real_voices():
    s = load_splits()
    real = [n for names in s.real.values() for n in names]
    assert len(real) == len(set(real)) and set(s.real) == {"train", "valid", "test"}
    assert all(s.real[k] for k in ("train", "valid", "test"))
    assert "asterisk-core-sounds-it" in s.reserved and not any(n.startswith("asterisk-core-sounds-it") for n in real)
    for split in ("valid", "test"):
        for base in s.synthetic[split]:
            engine, voice = base.split(":")
            assert voice in {"flite": flite.VOICES, "festival": festival.VOICES}[engine], base
        assert set(s.espeak_variants[split]) <= set(espeak.VARIANTS)
    assert not set(s.espeak_variants["valid"]) & set(s.espeak_variants["test"])
    # the dialogue's voices (flite kal16 user, slt system) and their festival twins are train
    for engine, voice in (("flite", "kal16"), ("flite", "slt"), ("festival", "kal_diphone"),
                          ("festival", "cmu_us_slt_arctic_hts")):
        assert s.synthetic_split(engine, voice) == "train"


def test_a_speaker_in_two_splits_or_a_reserved_source_in_one_is_refused():
    with pytest.raises(ValueError, match="'klettres-en' is in both train and test"):
        SpeakerSplits(real={"train": ("klettres-en",), "test": ("klettres-en",)}, reserved=(), synthetic={},
                      espeak_variants={})
    with pytest.raises(ValueError, match="reserved"):
        SpeakerSplits(real={"train": ("asterisk-core-sounds-it",)}, reserved=("asterisk-core-sounds-it",),
                      synthetic={}, espeak_variants={})
    with pytest.raises(KeyError, match="place it there by hand"):
        load_splits().real_split("asterisk-someone-new")


@pytest.mark.skipif(not espeak.available()[0], reason="espeak-ng missing: run `make system-deps`")
def test_no_synthetic_base_voice_is_in_two_splits():
    groups = split_speakers(load_splits(), engines=("flite", "espeak"))
    bases = {k: {s.base_voice for s in v} for k, v in groups.items()}
    assert all(bases.values())
    assert not bases["train"] & bases["valid"] and not bases["train"] & bases["test"]
    assert not bases["valid"] & bases["test"]
    assert "flite:rms" in bases["test"] and "flite:awb" in bases["valid"] and "flite:kal16" in bases["train"]


def test_klettres_clips_are_trimmed_to_their_speech(tmp_path):
    sr = 44100
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(int(0.5 * sr)) / sr)
    clip = np.concatenate([np.zeros(sr), tone, np.zeros(sr)]).astype(np.float32)
    assert abs(len(trim_to_speech(clip, sr)) / sr - 0.6) < 0.02
    root = tmp_path / "klettres"
    (root / "en" / "alpha").mkdir(parents=True)
    sf.write(root / "en" / "alpha" / "A.ogg", np.stack([clip, clip], 1), sr)
    d = build_klettres(tmp_path / "out", "en", 16000, root=root)
    assert d.speakers == ["klettres-en"] and d.text == {"klettres-en-alpha-A": "a"}
    audio, rate = sf.read(d.wav_scp["klettres-en-alpha-A"])
    assert rate == 16000 and abs(len(audio) / rate - 0.6) < 0.04  # Vorbis smears the edges a little


@pytest.mark.skipif(not klettres_languages() or shutil.which("ffmpeg") is None
                    or not Path("/usr/share/asterisk/sounds").is_dir(),
                    reason="real speech packages missing: run `make system-deps`")
def test_the_real_corpus_puts_every_reader_in_its_split_and_no_recording_in_two(tmp_path):
    splits = load_splits()
    built = build_real_speech(tmp_path / "real", max_per_speaker=2, progress=False)
    seen_wavs: set[str] = set()
    for split in ("train", "valid", "test"):
        d = built[split]
        assert set(d.speakers) <= set(splits.real[split])
        wavs = {Path(p).resolve().read_bytes() for p in d.wav_scp.values()}  # by content, not only by name
        assert not wavs & seen_wavs
        seen_wavs |= wavs
    assert set(built["test"].speakers).isdisjoint(built["train"].speakers)
    assert built["valid_en"].text and built["test_en"].text
