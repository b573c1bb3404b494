"""Information perturbation of the codec's semantic input: what it changes, what it keeps."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recipes.codec.perturb import PerturbationConfig, change_voice, perturb
from recipes.codec.shards import build_shard
from recipes.codec.task import CodecTask, CodecTrainConfig
from tests.test_trainer import SMALL

SR = 16000


def voiced(f0: float, seconds: float = 1.0) -> np.ndarray:
    """A vowel-like tone: harmonics of f0 under a fixed two-formant envelope, with silence either side."""
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * k * f0 * t) / (1 + ((k * f0 - 700) / 300) ** 2 + ((k * f0 - 1200) / 400) ** 2)
              for k in range(1, 30))
    gap = np.zeros(SR // 4)
    return (0.3 * np.concatenate([gap, wav / np.abs(wav).max(), gap])).astype(np.float32)


def median_f0(wav: np.ndarray) -> float:
    import parselmouth

    f0 = parselmouth.Sound(wav.astype(np.float64), sampling_frequency=SR).to_pitch(
        pitch_floor=60, pitch_ceiling=600).selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


def test_change_voice_moves_the_pitch_and_keeps_the_timeline():
    x = voiced(120.0)
    y = change_voice(x, SR, pitch=1.5, pitch_range=1.0, formant=1.0)
    assert y.shape == x.shape
    assert median_f0(y) == pytest.approx(1.5 * median_f0(x), rel=0.05)
    # the silence stays where it was: PSOLA keeps the time axis, so phone labels stay aligned
    assert np.abs(y[: SR // 5]).max() < 0.01 and np.abs(y[SR // 4 + SR // 10: SR + SR // 4 - SR // 10]).mean() > 0.02


def test_perturb_is_a_function_of_its_random_generator():
    x, cfg = voiced(150.0), PerturbationConfig(enabled=True)
    a = perturb(x, SR, np.random.default_rng(3), cfg)
    b = perturb(x, SR, np.random.default_rng(3), cfg)
    c = perturb(x, SR, np.random.default_rng(4), cfg)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and not np.allclose(a, c)


def test_silence_is_no_error():
    out = perturb(np.zeros(SR // 2, np.float32), SR, np.random.default_rng(0), PerturbationConfig(enabled=True))
    assert out.shape == (SR // 2,) and np.isfinite(out).all()


def test_bad_ranges_are_named():
    with pytest.raises(ValueError, match="ratios must be >= 1"):
        PerturbationConfig(pitch_ratio=0.5)
    with pytest.raises(ValueError, match="gain_db"):
        PerturbationConfig(gain_db=-1.0)


def test_the_semantic_stage_hears_the_perturbed_crop_targets_the_clean_one_and_pulls_the_views_together(tmp_path):
    utts = [(f"u{i}", f"s{i % 2}", voiced(110.0 + 30 * i), None) for i in range(4)]
    shard = tmp_path / "train.safetensors"
    build_shard(utts, ["sil"], SR, 256).save(shard)

    def first_batch(stage, enabled):
        cfg = CodecTrainConfig(stage=stage, shard=str(shard), codec_overrides=SMALL, batch_size=2, segment_frames=32,
                               ref_frames=32, perturbation=PerturbationConfig(enabled=enabled))
        return next(CodecTask(cfg).batches(0, 0, 1))

    plain, changed = first_batch("semantic", False), first_batch("semantic", True)
    assert plain.perturbed_wav is None
    torch.testing.assert_close(changed.wav, plain.wav)  # the target crop is untouched
    assert changed.perturbed_wav.shape == plain.wav.shape
    assert changed.perturbed_history.shape == plain.history.shape
    assert not torch.allclose(changed.perturbed_wav, plain.wav, atol=1e-3)
    assert first_batch("vocoder", True).perturbed_wav is None  # only the semantic stage is perturbed
    cfg = CodecTrainConfig(stage="semantic", shard=str(shard), codec_overrides=SMALL, batch_size=2, segment_frames=32,
                           ref_frames=32, perturbation=PerturbationConfig(enabled=True))
    cfg.weights.consistency = 1.0
    cfg.weights.code_agreement = 1.0
    task = CodecTask(cfg)
    (term,) = task.losses(task.build_model(), changed, 0)
    assert term.scalars["sem/consistency"] > 0 and torch.isfinite(term.loss)
    assert term.scalars["sem/code_agreement"] >= 0
    # the branch trains on the perturbed crop's latent; the frozen encoder still gives the connector's target
    model = task.build_model()
    (term,) = task.losses(model, changed, 0)
    term.loss.backward()
    assert model.codec.semantic.inp.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.codec.encoder.parameters())
    assert term.scalars["sem/consistency"] > 0

    def loss_at(step, **weights):  # the same model and draws, other loss weights
        for k, v in weights.items():
            setattr(cfg.weights, k, v)
        torch.manual_seed(0)
        (term,) = task.losses(model, changed, step)
        return term.loss.item()

    plain = loss_at(5, consistency=0.0, code_agreement=0.0)
    assert loss_at(5, consistency=1.0, code_agreement=1.0, view_start=10, view_warmup=4) == pytest.approx(plain)
    assert loss_at(11, consistency=1.0, code_agreement=1.0) > loss_at(11, consistency=0.0, code_agreement=0.0)


def test_audio_praat_cannot_resynthesise_comes_back_unchanged(monkeypatch):
    import parselmouth
    import parselmouth.praat

    real_call = parselmouth.praat.call

    def failing(obj, command, *args):
        if command == "Change gender":
            raise parselmouth.PraatError("When rounding up the real value --undefined--, ...")
        return real_call(obj, command, *args)

    monkeypatch.setattr(parselmouth.praat, "call", failing)
    x = voiced(130.0)
    np.testing.assert_array_equal(change_voice(x, SR, 1.5, 1.0, 1.1), x)


def test_view_consistency_is_zero_for_agreeing_views_and_blind_to_scale():
    from recipes.codec.losses import view_consistency

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 50, 8, generator=g), torch.randn(2, 50, 8, generator=g)
    assert view_consistency(a, a).item() == 0.0
    assert view_consistency(a, b).item() == pytest.approx(2.0, rel=0.15)  # independent frames: twice the variance
    assert view_consistency(0.01 * a, 0.01 * b).item() == pytest.approx(view_consistency(a, b).item(), rel=1e-4)


def test_code_agreement_holds_both_views_inside_the_reference_bin():
    from kernels import fsq
    from recipes.codec.losses import code_agreement

    levels = [3, 5]
    inv = lambda bounded: torch.atanh(bounded / torch.tensor([1.001, 2.002]))  # FSQ's bound undone (odd levels)
    centred = inv(torch.tensor([[[0.1, -1.05]]]))  # digits 0 and -1, well inside their bins
    near_edge = inv(torch.tensor([[[0.45, -1.45]]]))  # same bins, but within 0.05 of the edges
    across = inv(torch.tensor([[[0.55, -1.05]]]))  # first digit in the next bin
    assert torch.equal(fsq(near_edge, levels)[1], fsq(centred, levels)[1])
    assert code_agreement(centred, centred, levels).item() == 0.0
    assert code_agreement(near_edge, centred, levels).item() > 0  # same token, but one that flips easily
    assert code_agreement(across, centred, levels).item() > code_agreement(near_edge, centred, levels).item()
    assert code_agreement(near_edge, centred, levels, margin=0.0).item() == 0.0
    moved = across.clone().requires_grad_(True)
    code_agreement(moved, centred, levels).backward()
    assert moved.grad[0, 0, 0] > 0  # a gradient step lowers the first digit, back into the reference bin
    with pytest.raises(ValueError, match="margin"):
        code_agreement(centred, centred, levels, margin=0.5)
    with pytest.raises(ValueError, match="2 FSQ levels"):
        code_agreement(centred[..., :1], centred[..., :1], levels)


def test_a_voice_change_that_does_not_return_leaves_the_crop_unchanged_and_the_next_one_works():
    from recipes.codec.perturb import GuardedVoiceChange

    x = voiced(130.0)
    guard = GuardedVoiceChange(timeout=1e-4)  # shorter than any Praat call: stands in for Praat's rare endless loop
    try:
        with pytest.warns(UserWarning, match="did not return"):
            np.testing.assert_array_equal(guard(x, SR, 1.5, 1.0, 1.1), x)
        assert guard.hangs == 1
        guard.timeout = 60.0
        np.testing.assert_array_equal(guard(x, SR, 1.5, 1.0, 1.1, seed=3), change_voice(x, SR, 1.5, 1.0, 1.1, seed=3))
    finally:
        guard.close()


def _spin_until_killed(parent: int, ready: str) -> None:  # a worker stuck in C code that never returns
    from recipes.codec.perturb import die_with_parent

    die_with_parent(parent)
    Path(ready).touch()
    while True:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_stuck_praat_worker_dies_with_its_trainer(tmp_path):
    """A trainer killed with SIGKILL runs no clean-up; its busy worker must not outlive it."""
    ready = tmp_path / "spinning"
    script = ("import multiprocessing as mp, os, sys, time\n"
              "from tests.test_codec_perturb import _spin_until_killed\n"
              "if __name__ == '__main__':\n"
              "    p = mp.get_context('spawn').Process(target=_spin_until_killed, args=(os.getpid(), sys.argv[1]),\n"
              "                                        daemon=True)\n"
              "    p.start(); print(p.pid, flush=True); time.sleep(120)\n")
    trainer = subprocess.Popen([sys.executable, "-c", script, str(ready)], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[1])
    worker = int(trainer.stdout.readline())

    def running():
        stat = Path(f"/proc/{worker}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")

    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert ready.exists() and running()  # the worker is past its start-up and spins
    trainer.kill()
    trainer.wait()
    deadline = time.time() + 10
    while running() and time.time() < deadline:
        time.sleep(0.1)
    still = running()
    if still:
        os.kill(worker, 9)
    assert not still


PHONES = {"semantic_input": {"kind": "phones", "n_units": 2, "recognizer": {"dim": 16, "num_layers": 1, "num_heads": 2}}}


def phone_input_config(tmp_path) -> CodecTrainConfig:
    """A semantic stage with a two-class phones input on four labelled tones at four pitches, perturbed."""
    def labelled(f0):  # the tone is phone 1, the silence either side phone 0 ("sil")
        wav = voiced(f0)
        lab = np.zeros(len(wav) // 256, np.int16)
        lab[SR // 4 // 256:(len(wav) - SR // 4) // 256] = 1
        return wav, lab

    utts = [(f"u{i}", f"s{i % 2}", *labelled(f)) for i, f in enumerate((100.0, 150.0, 200.0, 250.0))]
    shard = tmp_path / "train.safetensors"
    build_shard(utts, ["sil", "a"], SR, 256).save(shard)
    return CodecTrainConfig(stage="semantic", shard=str(shard), codec_overrides={**SMALL, **PHONES}, batch_size=4,
                            segment_frames=32, ref_frames=32, perturbation=PerturbationConfig(enabled=True))


def test_the_semantic_stage_trains_a_phone_input_on_the_timings_of_the_perturbed_view(tmp_path):
    from recipes.codec.losses import phone_recognition_loss, posterior_consistency

    cfg = phone_input_config(tmp_path)
    task = CodecTask(cfg)
    model = task.build_model()
    batch = next(task.batches(0, 0, 1))
    (term,) = task.losses(model, batch, 0)
    term.loss.backward()
    assert term.scalars["sem/phone_ce"] > 0 and 0 <= term.scalars["sem/phone_accuracy"] <= 1
    assert model.codec.semantic.phones.classify.weight.grad.abs().sum() > 0
    assert model.codec.semantic.phones.conv.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.codec.encoder.parameters())
    assert "sem/phone_consistency" not in term.scalars  # no clean view is computed for it unless weighted
    cfg.weights.phone_consistency = 1.0
    (term,) = task.losses(model, batch, 0)
    assert term.scalars["sem/phone_consistency"] >= 0 and 0 <= term.scalars["sem/phone_view_agreement"] <= 1
    # the clean view's cross-entropy (the sound heard at inference) adds to the loss only when weighted
    cfg.weights.phone_consistency = 0.0
    cfg.weights.phone_recognition_clean = 1.0
    torch.manual_seed(0)  # the same posterior samples in both
    (clean_too,) = task.losses(model, batch, 0)
    cfg.weights.phone_recognition_clean = 0.0
    cfg.weights.phone_consistency = 1e-9  # computes the clean view, adds nothing measurable
    torch.manual_seed(0)
    (perturbed_only,) = task.losses(model, batch, 0)
    assert 0 <= clean_too.scalars["sem/phone_accuracy_clean"] <= 1
    assert clean_too.loss.item() > perturbed_only.loss.item()
    cfg.codec_overrides = {**SMALL, "semantic_input": {**PHONES["semantic_input"], "n_units": 3}}
    with pytest.raises(ValueError, match=r"2 phones, but .*n_units = 3"):
        CodecTask(cfg)

    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [5.0, 0.0]]])
    loss, accuracy = phone_recognition_loss(logits, torch.tensor([[0, 1, -1]]))  # the untranscribed frame is left out
    assert accuracy == 1.0 and loss.item() == pytest.approx(np.log1p(np.exp(-2.0)), rel=1e-5)
    loss, accuracy = phone_recognition_loss(logits, torch.full((1, 3), -1))
    assert loss.item() == 0.0 and torch.isnan(accuracy)
    other = torch.tensor([[[0.0, 2.0], [0.0, 2.0], [5.0, 0.0]]])
    assert posterior_consistency(logits, logits + 3.0).item() == pytest.approx(0.0, abs=1e-6)  # same posteriors
    assert posterior_consistency(logits, other).item() == pytest.approx(posterior_consistency(other, logits).item())
    assert posterior_consistency(logits, other).item() > 0
    with pytest.raises(ValueError, match="views of shapes"):
        posterior_consistency(logits, other[:, :2])


def test_a_frame_phone_head_on_the_semantic_codes_trains_the_tokens_toward_the_phones(tmp_path):
    cfg = phone_input_config(tmp_path)
    cfg.codec_overrides = dict(SMALL)  # the default latent input
    cfg.perturbation = PerturbationConfig(enabled=False)
    task = CodecTask(cfg)
    assert task.build_model().phone_head is None  # off unless weighted
    cfg.weights.frame_phone = 1.0
    model = task.build_model()
    batch = next(task.batches(0, 0, 1))
    (term,) = task.losses(model, batch, 0)
    term.loss.backward()
    assert term.scalars["sem/frame_phone_ce"] > 0 and 0 <= term.scalars["sem/frame_phone_accuracy"] <= 1
    assert model.phone_head[0].weight.grad.abs().sum() > 0
    assert model.codec.semantic.posterior.weight.grad.abs().sum() > 0  # it reaches the tokens (straight-through)
