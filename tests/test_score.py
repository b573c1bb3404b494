"""The scorer end to end on tiny data: every column for a codec-like system, classical baselines
through the real Debian tools when they are installed, reports written."""
import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from recipes.datadir import DataDir
from recipes.score import COLUMNS, make_baseline, score_codec
from tests.stub_codec import MuLawStubCodec
from recipes.score.__main__ import main as score_main
from recipes.score.asr import wer
from recipes.score.metrics import align
from recipes.score.tokens import fsq_digits, pooled_token_features, token_stats

SR = 16000
TEXTS = ["Yes please, call me back later.", "Hello world, this is a test."]


def tiny_set(root):
    """Two speakers × two short utterances: flite speech when available, else harmonic buzz."""
    wavs = {}
    try:
        from recipes.synth import flite

        ok = flite.available()[0]
    except Exception:
        ok = False
    for s, voice in enumerate(("slt", "kal16")):
        for i, text in enumerate(TEXTS):
            if ok:
                syn = flite.synthesize(text, voice)
                x = syn.audio if syn.sample_rate == SR else None
            else:
                t = np.arange(int(1.5 * SR)) / SR
                f0 = 110 * (s + 1) * (1 + 0.1 * i)
                x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12)).astype(np.float32) * 0.1
            path = root / "wav" / f"spk{s}-{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x, SR)
            wavs[f"spk{s}-{i}"] = (str(path), f"spk{s}", text)
    d = DataDir(wav_scp={u: p for u, (p, _, _) in wavs.items()}, utt2spk={u: s for u, (_, s, _) in wavs.items()},
                text={u: t for u, (_, _, t) in wavs.items()})
    return d.save(root / "data")


def test_stub_codec_gives_every_column(tmp_path):
    data = tiny_set(tmp_path)
    rows = score_codec(data, codec=MuLawStubCodec(bits=8), out_dir=tmp_path / "exp", baselines=(), progress=False)
    assert len(rows) == 1
    row = rows[0]
    assert set(COLUMNS) <= set(row)
    for col in COLUMNS:
        assert row[col] is not None, f"column {col} is empty"
        if isinstance(row[col], float):
            assert math.isfinite(row[col]), col
    assert row["num_utts"] == 4 and row["bitrate"] == 8 * SR
    assert row["pesq_wb"] > 2.5 and row["stoi"] > 0.9  # 8-bit mu-law is nearly transparent
    assert 0 < row["codebook_util"] <= 1 and row["codebook_util_tok"] >= row["codebook_util"]
    assert 0 < row["entropy"] <= 8 and 0 < row["top_share"] < 1 and row["chance"] == 0.5
    assert row["wer"] >= 0 and row["wer_ref"] >= 0 and row["delay_ms"] == 0
    md = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert "| system | bitrate | pesq_wb |" in md and "stub-mulaw" in md
    saved = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert saved["rows"][0]["system"] == "stub-mulaw" and saved["meta"]["num_utts"] == 4
    assert len((tmp_path / "exp" / "per_utt.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("name, tools", [("codec2_1200", ("c2enc", "c2dec")), ("opus6k", ("opusenc", "opusdec"))])
def test_classical_baselines(tmp_path, name, tools):
    if not all(shutil.which(t) for t in tools):
        pytest.skip(f"{'/'.join(tools)} not installed (recipes/install_system_deps.sh)")
    data = tiny_set(tmp_path)
    rows = score_codec(data, codec=None, out_dir=None, baselines=(name,), asr=False, progress=False)
    row = rows[0]
    assert row["system"] == name and row["num_utts"] == 4 and row["bitrate"] == make_baseline(name).bitrate
    assert 1.0 <= row["pesq_nb"] <= 4.6 and 0.3 < row["stoi"] <= 1.0 and row["mel_dist"] > 0
    assert row["bitrate_measured"] > 0.5 * row["bitrate"]
    assert row["codebook_util"] is None and row["probe_voice_acc"] is None


def test_cli_on_wav_folder(tmp_path, capsys):
    tiny_set(tmp_path)
    from codec import Codec, preset
    from codec.model import SpeechCodec

    Codec(SpeechCodec(preset("duet_cpu16k"))).save(tmp_path / "random.safetensors")  # untrained: the CLI's plumbing
    assert score_main(["--data", str(tmp_path / "wav"), "--codec", str(tmp_path / "random.safetensors"), "--out",
                       str(tmp_path / "exp"), "--baselines", "", "--no-asr", "--quiet", "--stages"]) == 0
    md = (tmp_path / "exp" / "RESULTS.md").read_text()
    assert "random.safetensors" in md and str(tmp_path / "wav") in md
    assert "vocoder on the true mel" in md and "mel autoencoder (no tokens)" in md
    assert "duet:random" in capsys.readouterr().out


def test_unknown_baseline_is_a_clear_error():
    with pytest.raises(ValueError, match="codec2_<mode> or opus<k>k"):
        make_baseline("mp3_128")


def test_wer_and_alignment_and_token_stats():
    assert wer(["a b c d"], ["a x c"]) == 0.5
    assert wer(["Hello, World!"], ["hello world"]) == 0.0
    ref = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    late = np.concatenate([np.zeros(37, np.float32), ref])
    out, lag = align(ref, late, 200)
    assert lag == 37 and np.allclose(out, ref)
    s = token_stats([np.array([0, 0, 1]), np.array([0, 3])], codebook_size=8)
    assert s["codebook_util"] == 3 / 8 and s["codebook_util_tok"] == 3 / 5 and s["top_share"] == 3 / 5
    assert s["entropy"] == pytest.approx(-(0.6 * np.log2(0.6) + 2 * 0.2 * np.log2(0.2)))
    levels = [3, 5, 2]
    idx = np.array([0, 1, 3, 29])  # 29 = 2 + 3·(4) + 15·(1)
    assert fsq_digits(idx, levels).tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 4, 1]]
    feats = pooled_token_features(idx, 30, levels)
    assert feats.shape == (10,) and np.allclose(feats.reshape(-1)[:3].sum(), 1.0)


def test_verification_eer_is_zero_for_separate_voices_and_half_for_identical_ones():
    from recipes.score.tokens import verification_eer

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    voices = np.concatenate([c + 0.1 * rng.normal(size=(4, 16)) for c in centres])
    speakers = [f"s{k}" for k in range(3) for _ in range(4)]
    assert verification_eer(voices, speakers) == 0.0
    assert abs(verification_eer(np.ones((12, 16)) + 1e-3 * rng.normal(size=(12, 16)), speakers) - 0.5) < 0.25
    assert np.isnan(verification_eer(voices[:4], speakers[:4]))  # one speaker: no impostor trial
