"""egs/libritts/codec1 on a fabricated miniature LibriTTS tree: data prep gives valid Kaldi dirs
with the right ids, speakers and texts, and the recipe runs end to end in --dry_run mode (aligner,
forced alignment, 22.05 kHz shard, a few autoencoder steps, export)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from recipes.align import normalise_words
from recipes.ctm import frame_labels, group_by_utt, read_ctm
from recipes.datadir import DataDir

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs/libritts/codec1"
SENTENCES = ["The cat sat on the mat.", "A quick brown fox jumps.", "Well-known places are busy today!",
             "She said hello, and left.", "Open the door, please.", "It isn't far from here."]
# subset → speakers → (espeak variant, pitch); three speakers per subset, two chapters each
TREE = {"train-clean-100": {"19": ("m3", 0.9), "103": ("f2", 1.2), "1034": ("klatt4", 1.0)},
        "test-clean": {"121": ("m1", 1.0), "237": ("f3", 1.3), "1089": ("m7", 0.8)}}
CHAPTERS = ("198", "227")
UTTS_PER_CHAPTER = 3


def _speech(text: str, variant: str, pitch: float, sr: int = 24000) -> np.ndarray:
    """espeak-ng speech of `text` at `sr`, or (without espeak-ng) a pitch glide of a similar length:
    the recipe's mechanics do not depend on what the audio says."""
    from recipes.synth import espeak

    if espeak.available()[0]:
        import torch
        import torchaudio

        syn = espeak.synthesize(text, "en-us", variant, rate=1.2, pitch=pitch)
        return torchaudio.functional.resample(torch.from_numpy(syn.audio), syn.sample_rate, sr).numpy()
    t = np.arange(int((0.3 + 0.06 * len(text)) * sr)) / sr
    return 0.3 * np.sin(2 * np.pi * 120 * pitch * t * (1 + 0.5 * np.sin(3 * t))).astype(np.float32)


def make_tree(root: Path) -> dict[str, str]:
    """A LibriTTS-shaped tree at 24 kHz; returns {kaldi utt id: normalized text}."""
    texts = {}
    k = 0
    for subset, speakers in TREE.items():
        for spk, (variant, pitch) in speakers.items():
            for chapter in CHAPTERS:
                d = root / subset / spk / chapter
                d.mkdir(parents=True)
                for i in range(UTTS_PER_CHAPTER):
                    text = SENTENCES[k % len(SENTENCES)]
                    k += 1
                    stem = f"{spk}_{chapter}_{i:06d}_{i + 1:06d}"
                    sf.write(d / f"{stem}.wav", _speech(text, variant, pitch), 24000, subtype="PCM_16")
                    (d / f"{stem}.normalized.txt").write_text(text + "\n")
                    (d / f"{stem}.original.txt").write_text(text.upper() + "\n")
                    texts[f"{spk}-{chapter}-{i:06d}-{i + 1:06d}"] = text
    # LibriTTS has a few utterances without a transcript: reported and left out
    stray = root / "train-clean-100" / "19" / "198" / "19_198_000099_000000.wav"
    sf.write(stray, np.zeros(2400, np.float32), 24000)
    return texts


def _run(args):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(["bash", str(RECIPE / "run.sh"), *map(str, args)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_data_prep(tmp_path):
    texts = make_tree(tmp_path / "LibriTTS")
    sys.path.insert(0, str(RECIPE / "local"))
    try:
        from prepare_libritts import main as prepare
    finally:
        sys.path.remove(str(RECIPE / "local"))
    data = tmp_path / "data"
    prepare(["--root", str(tmp_path / "LibriTTS"), "--data", str(data), "--subsets", "train-clean-100",
             "test-clean", "--heldout-speakers", "1", "--threads", "1"])
    full = {}
    for name, subset in (("train_clean_100", "train-clean-100"), ("test_clean", "test-clean")):
        d = DataDir.load(data / name)
        assert set(d.speakers) == set(TREE[subset])
        assert len(d.utts) == len(TREE[subset]) * len(CHAPTERS) * UTTS_PER_CHAPTER  # the stray wav is left out
        for utt in d.utts:
            spk, chapter = utt.split("-")[:2]
            assert d.utt2spk[utt] == spk and chapter in CHAPTERS
            assert d.text[utt] == texts[utt]
            assert d.wav_path(utt).name == utt.replace("-", "_") + ".wav"
            assert abs(d.utt2dur[utt] - sf.info(str(d.wav_path(utt))).duration) < 1e-3
        full.update(d.utt2spk)
    # Kaldi order: utterances sorted the same way as their speakers ('-' sorts before digits)
    d = DataDir.load(data / "train_clean_100")
    assert [d.utt2spk[u] for u in d.utts] == sorted((d.utt2spk[u] for u in d.utts), key=lambda s: s.encode())
    train, held = DataDir.load(data / "train"), DataDir.load(data / "heldout_spk")
    assert len(held.speakers) == 1 and not set(held.speakers) & set(train.speakers)
    assert set(train.utts) | set(held.utts) == set(DataDir.load(data / "train_clean_100").utts)


def test_missing_subset_is_a_clear_error(tmp_path):
    sys.path.insert(0, str(RECIPE / "local"))
    try:
        from prepare_libritts import CorpusError, scan_subset
    finally:
        sys.path.remove(str(RECIPE / "local"))
    (tmp_path / "train-clean-100").mkdir()
    with pytest.raises(CorpusError, match=r"dev-clean: subset not found .*train-clean-100"):
        scan_subset(tmp_path, "dev-clean")
    bad = tmp_path / "train-clean-100" / "19" / "198"
    bad.mkdir(parents=True)
    sf.write(bad / "20_198_000001_000000.wav", np.zeros(100, np.float32), 24000)
    with pytest.raises(CorpusError, match="20_198_000001_000000.wav"):
        scan_subset(tmp_path, "train-clean-100")


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    texts = make_tree(tmp_path / "LibriTTS")
    exp, data = tmp_path / "exp", tmp_path / "data"
    common = ["--corpus", tmp_path / "LibriTTS", "--dry_run", "true", "--exp", exp, "--data", data,
              "--train_subsets", "train-clean-100", "--test_subsets", "test-clean"]
    _run([*common, "--stop_stage", 4])
    assert (exp / "aligner" / "aligner.safetensors").is_file()
    for name in ("train", "heldout_spk", "test_clean"):
        d = DataDir.load(data / name)
        words = group_by_utt(read_ctm(data / name / "words.ctm"))
        phones = group_by_utt(read_ctm(data / name / "phones.ctm"))
        units = [l.split()[0] for l in (data / name / "phones.txt").read_text().splitlines()]
        assert units[0] == "sil"
        for utt in d.utts:  # every utterance aligned: words in transcript order, within the audio
            assert [e.token for e in words[utt]] == normalise_words(texts[utt])
            assert words[utt][-1].end <= d.utt2dur[utt] + 1e-3
            labels = frame_labels(phones[utt], 22050 / 256, int(d.utt2dur[utt] * 22050) // 256, units)
            assert labels.max() > 0
    from recipes.codec.shards import Shard

    shard = Shard.load(data / "train_shard.safetensors")
    assert shard.sample_rate == 22050 and shard.hop_length == 256 and shard.phones[0] == "sil"
    assert (shard.labels > 0).any() and not (shard.labels < 0).any()  # every utterance has frame labels
    cfg = yaml.safe_load((exp / "autoencoder" / "config.yaml").read_text())
    assert cfg["stage"] == "autoencoder" and cfg["codec_preset"] == "secousti_1k"
    _run([*common, "--stage", 8, "--stop_stage", 8])
    from codec import load_codec

    codec = load_codec(exp / "codec.safetensors")
    assert codec.config.name == "secousti_1k" and codec.config.sample_rate == 22050
