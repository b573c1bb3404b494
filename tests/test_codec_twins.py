import numpy as np
import pytest
import torch

from recipes.codec.perturb import PerturbationConfig
from recipes.codec.shards import CropSampler, Shard, build_shard
from recipes.codec.task import CodecTask, CodecTrainConfig
from recipes.codec.twins import build_twins, twin_pitch
from recipes.synth import Speaker, build_corpus, flite
from recipes.synth.text import Sentence
from tests.test_trainer import SMALL

SR = 16000


def tone_shard(scale: float = 1.0) -> Shard:
    t = np.arange(SR) / SR
    utts = [(f"u{i}", f"s{i % 2}", scale * 0.1 * np.sin(2 * np.pi * (150 + 40 * i) * t).astype(np.float32), None)
            for i in range(4)]
    return build_shard(utts, ["sil"], SR, 256)


def test_twin_crops_are_cut_where_the_crops_are_and_change_nothing_else():
    shard, twin = tone_shard(), tone_shard(0.5)
    plain = CropSampler(shard, 3, 16, 1, 768, seed=2).batch(5)
    paired = CropSampler(shard, 3, 16, 1, 768, seed=2, twin=twin).batch(5)
    assert plain.twin_wav is None
    torch.testing.assert_close(paired.wav, plain.wav)  # the same draws with or without twins (exact resume)
    torch.testing.assert_close(paired.ref_wav, plain.ref_wav)
    torch.testing.assert_close(paired.twin_wav, 0.5 * paired.wav, atol=1e-4, rtol=0)
    torch.testing.assert_close(paired.twin_history, 0.5 * paired.history, atol=1e-4, rtol=0)
    other = build_shard([("x", "s", np.zeros(SR, np.float32), None)], ["sil"], SR, 256)
    with pytest.raises(ValueError, match="twin shard does not hold"):
        CropSampler(shard, 3, 16, 1, 768, twin=other)


def test_the_semantic_stage_starts_from_the_twin_and_only_colours_it(tmp_path):
    tone_shard().save(tmp_path / "train.safetensors")
    tone_shard(0.5).save(tmp_path / "twins.safetensors")
    pert = PerturbationConfig(enabled=True, eq_bands=0, gain_db=0.0, twin_shard=str(tmp_path / "twins.safetensors"),
                              twin_rate=1.0)
    cfg = CodecTrainConfig(stage="semantic", shard=str(tmp_path / "train.safetensors"), codec_overrides=SMALL,
                           batch_size=2, segment_frames=16, ref_frames=16, perturbation=pert)
    batch = next(CodecTask(cfg).batches(0, 0, 1))
    torch.testing.assert_close(batch.perturbed_wav, batch.twin_wav)  # no EQ, no gain: the twin itself
    with pytest.raises(ValueError, match="twin_rate"):
        PerturbationConfig(twin_rate=1.5)


def test_twin_pitch_is_log_uniform_in_the_ratio_and_clipped():
    assert twin_pitch(1.0, 1.8, 0.5) == pytest.approx(1.0)
    assert twin_pitch(1.0, 1.8, 0.0) == pytest.approx(1 / 1.8)
    assert twin_pitch(1.5, 1.8, 1.0) == 2.0  # 2.7 clipped to what the engines accept


def test_pitch_twins_are_the_same_sentences_spoken_higher_or_lower_with_the_same_length(tmp_path):
    if not flite.available()[0]:
        pytest.skip("flite not installed")
    texts = ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background."]
    sentences = [Sentence(t, t.lower().strip(".").replace(",", ""), "test") for t in texts]
    d = build_corpus(tmp_path / "synth", 2, [Speaker("flite", "kal16"), Speaker("flite", "slt")], seed=0,
                     num_workers=1, sentences=sentences, progress=False)
    from recipes.codec.prepare import load_utterance

    utts = [(u, d.utt2spk[u], load_utterance(d, u, SR), None) for u in d.utts]
    utts.append(("real", "rec", 0.05 * np.ones(SR, np.float32), None))  # not synthetic: keeps its audio
    shard = build_shard(utts, ["sil"], SR, 256)
    twins, counts = build_twins(shard, [tmp_path / "synth"], 1.8, seed=1, sentences=sentences, progress=False)
    assert counts["twinned"] == 2 and counts["real"] == 1 and counts["length_changed"] == 0
    assert twins.utt_ids == shard.utt_ids and np.array_equal(twins.utt_offsets, shard.utt_offsets)
    assert not np.array_equal(twins.wav(0), shard.wav(0)) and np.array_equal(twins.wav(2), shard.wav(2))
    again, _ = build_twins(shard, [tmp_path / "synth"], 1.8, seed=1, sentences=sentences, progress=False)
    assert np.array_equal(again.audio, twins.audio)  # deterministic
