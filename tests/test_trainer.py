"""Training: exact resume after interruption, and half-written checkpoints are never loaded."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recipes.checkpoint import latest_checkpoint, list_checkpoints
from recipes.codec.shards import build_shard
from recipes.codec.perturb import PerturbationConfig
from recipes.codec.task import CodecTask, CodecTrainConfig
from recipes.codec.text_encoder import FrameTextEncoder  # noqa: F401  (import check)
from recipes.trainer import TrainerConfig, train

SMALL = {"latent_dim": 16, "voice_dim": 4, "voice_hidden": 8,
         "encoder": {"dim": 16, "num_layers": 1, "num_heads": 2},
         "semantic": {"dim": 16, "num_layers": 1, "num_heads": 2},
         "connector": {"dim": 16, "num_layers": 1, "num_heads": 2},
         "decoder": {"dim": 16, "num_layers": 1, "num_heads": 2},
         "vocoder": {"dim": 16, "num_blocks": 1}}


@pytest.fixture(scope="module")
def shard_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    utts = []
    for i in range(6):
        t = np.arange(16000) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(16000)
        labels = rng.integers(0, 5, 16000 // 256) if i % 2 else None
        utts.append((f"u{i}", f"s{i % 3}", wav.astype(np.float32), labels))
    path = tmp_path_factory.mktemp("shard") / "train.safetensors"
    build_shard(utts, ["sil", "a", "b", "c", "d"], 16000, 256).save(path)
    return path


def make_cfg(shard_path, stage, steps):
    perturbed = stage == "semantic+perturbation"
    return CodecTrainConfig(stage=stage.split("+")[0], shard=str(shard_path), codec_overrides=SMALL, batch_size=2,
                            segment_frames=16, ref_frames=16, disc_filters=4, adversarial_start=1,
                            perturbation=PerturbationConfig(enabled=perturbed),
                            trainer=TrainerConfig(max_steps=steps, warmup_steps=2, log_every=1,
                                                  checkpoint_every=2, keep_checkpoints=5))


@pytest.mark.parametrize("stage", ["semantic", "semantic+perturbation", "vocoder"])
def test_resume_continues_exactly(tmp_path, shard_path, stage):
    straight = tmp_path / "straight"
    train(CodecTask(make_cfg(shard_path, stage, 4)), make_cfg(shard_path, stage, 4).trainer, straight, progress=False)
    resumed = tmp_path / "resumed"
    train(CodecTask(make_cfg(shard_path, stage, 2)), make_cfg(shard_path, stage, 2).trainer, resumed, progress=False)
    assert latest_checkpoint(resumed).name == "step-2"
    train(CodecTask(make_cfg(shard_path, stage, 4)), make_cfg(shard_path, stage, 4).trainer, resumed, progress=False)
    a = load_file(str(straight / "step-4" / "model.safetensors"))
    b = load_file(str(resumed / "step-4" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)
    assert "start_step=2" in (resumed / "cmd.txt").read_text()


def test_half_written_checkpoint_is_never_loaded(tmp_path, shard_path):
    out = tmp_path / "run"
    cfg = make_cfg(shard_path, "autoencoder", 2)
    train(CodecTask(cfg), cfg.trainer, out, progress=False)
    # a run killed while writing step 4 leaves a .partial dir (or a dir without its trainer.json)
    (out / "step-4.partial").mkdir()
    (out / "step-4.partial" / "model.safetensors").write_bytes(b"half")
    (out / "step-6").mkdir()
    (out / "step-6" / "model.safetensors").write_bytes(b"half")
    assert latest_checkpoint(out).name == "step-2"
    assert [p.name for p in list_checkpoints(out)] == ["step-2"]
    cfg = make_cfg(shard_path, "autoencoder", 4)
    train(CodecTask(cfg), cfg.trainer, out, progress=False)  # resumes from step 2, not the debris
    assert latest_checkpoint(out).name == "step-4"


def test_shard_and_codec_mismatch_is_named(tmp_path, shard_path):
    cfg = make_cfg(shard_path, "autoencoder", 1)
    cfg.codec_preset = "secousti_1k"
    with pytest.raises(ValueError, match="22050"):
        CodecTask(cfg)


def test_unknown_stage_and_config_key_are_errors():
    from codec.config_io import ConfigError, from_dict
    with pytest.raises(ValueError, match="unknown stage"):
        CodecTrainConfig(stage="nope")
    with pytest.raises(ConfigError, match="max_stesp"):
        from_dict(CodecTrainConfig, {"trainer": {"max_stesp": 3}})


def test_a_phase_with_its_own_schedule_warms_up_again_and_ends_at_the_floor():
    """trainer.schedule_start: a phase resumed at that step gets its own warm-up and cosine; 0 is the old schedule."""
    from recipes.trainer import lr_factor

    one = TrainerConfig(max_steps=1000, warmup_steps=100, min_lr_ratio=0.1)
    phase = TrainerConfig(max_steps=1600, warmup_steps=100, min_lr_ratio=0.1, schedule_start=600)
    assert lr_factor(0, one) == pytest.approx(0.01) and lr_factor(99, one) == pytest.approx(1.0)
    for step in (0, 50, 99, 100, 550, 999, 1000):  # shifted by 600 steps, the same curve
        assert lr_factor(step + 600, phase) == pytest.approx(lr_factor(step, one))
    assert lr_factor(1600, phase) == pytest.approx(0.1) and lr_factor(599, phase) == pytest.approx(0.01)


class _Toy:
    """A one-layer task whose loss turns NaN from step `nan_from` on."""

    def __new__(cls, nan_from: int):
        from recipes.trainer import LossTerm, TrainingTask

        class Toy(TrainingTask):
            def build_model(self):
                return torch.nn.Linear(3, 1)

            def batches(self, start_step, rank, world_size):
                step = start_step
                while True:
                    yield torch.full((2, 3), float(step))
                    step += 1

            def losses(self, model, batch, step):
                loss = model(batch).pow(2).mean() * (float("nan") if step >= nan_from else 1.0)
                yield LossTerm("main", loss, {"toy/loss": loss.detach(), "toy/step": float(step)})

        return Toy()


def test_a_non_finite_loss_is_caught_at_the_next_read_and_never_saved(tmp_path):
    cfg = TrainerConfig(max_steps=8, warmup_steps=1, log_every=4, checkpoint_every=2, keep_checkpoints=10)
    with pytest.raises(FloatingPointError, match=r"group\(s\) \['main'\] between step 2 and step 4.*step-2"):
        train(_Toy(nan_from=3), cfg, tmp_path / "run", progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-2"]  # step 4's weights are NaN: not saved


def test_logged_scalars_are_means_over_the_interval_with_the_loader_wait(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = TrainerConfig(max_steps=6, warmup_steps=1, log_every=3, checkpoint_every=6)
    train(_Toy(nan_from=99), cfg, tmp_path / "run", progress=False)
    acc = EventAccumulator(str(next((tmp_path / "run" / "tensorboard").glob("events.*"))))
    acc.Reload()
    assert [e.value for e in acc.Scalars("toy/step")] == [1.0, 4.0]  # steps 0-2, then 3-5
    assert {"toy/loss", "grad_norm/main", "time/step_ms", "time/loader_wait_ms", "lr"} <= set(acc.Tags()["scalars"])


def test_the_prefetcher_keeps_the_order_and_hands_over_the_source_s_error():
    from recipes.parallel import Prefetcher

    def source():
        yield from range(5)
        raise KeyError("shard gone")

    ahead = Prefetcher(source(), depth=2)
    assert [next(ahead) for _ in range(5)] == list(range(5))
    with pytest.raises(KeyError, match="shard gone"):
        next(ahead)
    endless = Prefetcher(iter(range(10**9)), depth=3)
    assert next(endless) == 0
    endless.close()
    assert not endless._thread.is_alive()


def test_a_warm_start_leaves_out_the_skipped_tensors(tmp_path):
    from recipes.checkpoint import load_checkpoint

    src, dst = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "disc": torch.nn.Linear(2, 3)}), \
        torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "disc": torch.nn.Linear(2, 5)})
    step = tmp_path / "step-1"
    step.mkdir()
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(step / "model.safetensors"))
    (step / "trainer.json").write_text('{"step": 1, "optimizers": {}}')
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(step, dst, None, strict=False)
    before = dst["disc"].weight.clone()
    load_checkpoint(step, dst, None, strict=False, skip=("disc.",))
    assert torch.equal(dst["a"].weight, src["a"].weight) and torch.equal(dst["disc"].weight, before)
