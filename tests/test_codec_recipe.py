"""The mini codec recipe end to end in --tiny mode: corpus → shard → 4 stages → export → scoring."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "mini" / "codec1"


def load_file_codec(step_dir: Path, name: str) -> torch.Tensor:
    from safetensors.torch import load_file
    return load_file(str(step_dir / "model.safetensors"))[f"codec.{name}"]


@pytest.mark.slow
@pytest.mark.needs("espeak-ng", "flite", "festival", "codec2", "ffmpeg", "asterisk-sounds")
def test_tiny_recipe_runs_end_to_end(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), "--tiny", "true", "--stage", "1",
                           "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp")],
                          cwd=RECIPE, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = (tmp_path / "exp" / "RESULTS.md").read_text()
    for column in ["pesq_wb", "pesq_nb", "stoi", "mel_dist", "wer", "wer_ref", "codebook_util", "entropy",
                   "top_share", "probe_tokens_acc", "probe_voice_acc", "chance", "bitrate"]:
        assert column in results, column
    assert "codec2_1200" in results and "synth_valid" in results and "real_valid" in results
    stages = (tmp_path / "exp" / "score" / "real_valid" / "RESULTS.md").read_text()
    assert "vocoder on the true mel" in stages and "mel autoencoder (no tokens)" in stages
    for stage in ["autoencoder", "semantic", "vocoder", "finetune"]:
        assert (tmp_path / "exp" / stage / ".done").is_file()
        assert (tmp_path / "exp" / stage / "cmd.txt").is_file()
    for stage in ["semantic", "vocoder"]:  # each resumed for a second phase with a schedule of its own
        assert (tmp_path / "exp" / stage / ".done.more").is_file()
        assert (tmp_path / "exp" / stage / "step-5" / "model.safetensors").is_file()
    from codec import load_codec
    codec = load_codec(tmp_path / "exp" / "codec.safetensors")
    assert codec.config.frame_rate == 62.5
    # the semantic stage's learning curve, its codec taking the trained vocoder (its own is untrained)
    from recipes.codec.curve import checkpoint_codec, score_checkpoints
    rows = score_checkpoints(tmp_path / "exp" / "semantic", tmp_path / "data" / "real_valid", "codec", every=5,
                             max_utts=2, vocoder=tmp_path / "exp" / "vocoder" / "step-5")
    assert [r["step"] for r in rows] == [5] and rows[0]["pesq_wb"] > 0
    assert (tmp_path / "exp" / "semantic" / "curve_real_valid.png").is_file()
    with_vocoder = checkpoint_codec(tmp_path / "exp" / "semantic", tmp_path / "exp" / "semantic" / "step-5",
                                    tmp_path / "exp" / "vocoder" / "step-5").model.state_dict()
    assert torch.equal(with_vocoder["vocoder.head.weight"], load_file_codec(tmp_path / "exp" / "vocoder" / "step-5",
                                                                              "vocoder.head.weight"))
    not_a_codec = tmp_path / "not_a_codec"
    not_a_codec.mkdir()
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(2)}, str(not_a_codec / "model.safetensors"))
    with pytest.raises(ValueError, match="holds no vocoder"):
        checkpoint_codec(tmp_path / "exp" / "semantic", tmp_path / "exp" / "semantic" / "step-5", not_a_codec)
    # re-running skips finished stages (marker files) and is quick
    again = subprocess.run(["bash", str(RECIPE / "run.sh"), "--tiny", "true", "--stage", "3", "--stop_stage", "6",
                            "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp")],
                           cwd=RECIPE, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "autoencoder: done" in again.stdout
    # a trained codec's semantic branch retrained with perturbed input: no autoencoder or vocoder stage
    retrained = tmp_path / "exp_perturbed"
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), "--tiny", "true", "--stage", "4", "--stop_stage", "7",
                           "--init_codec", str(tmp_path / "exp" / "codec.safetensors"), "--perturb", "true",
                           "--twins", "true", "--data", str(tmp_path / "data"),
                           "--exp", str(retrained)],
                          cwd=RECIPE, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (retrained / "autoencoder").exists() and not (retrained / "vocoder").exists()
    semantic_cfg = (retrained / "semantic" / "config.yaml").read_text()
    assert "enabled: true" in semantic_cfg and "twins.safetensors" in semantic_cfg
    assert (tmp_path / "data" / "twins.safetensors").is_file()
    new = load_codec(retrained / "codec.safetensors")
    assert "semantic stage retrained from" in new.description and "perturbed" in new.description
    assert "pitch twins" in new.description
    old = codec.model.state_dict()  # the encoder is kept; the semantic branch is trained again
    assert all(torch.equal(v, old[k]) for k, v in new.model.state_dict().items() if k.startswith("encoder."))
    state = new.model.state_dict()
    assert not torch.equal(state["semantic.posterior.weight"], old["semantic.posterior.weight"])
    # ... or hears a frame phone classifier's decisions, its classes the corpus's phone inventory
    phones = tmp_path / "exp_phones"
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), "--tiny", "true", "--stage", "4", "--stop_stage", "4",
                           "--init_codec", str(tmp_path / "exp" / "codec.safetensors"), "--perturb", "true",
                           "--semantic_input", "phones", "--data", str(tmp_path / "data"), "--exp", str(phones)],
                          cwd=RECIPE, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    n_phones = sum(1 for line in (tmp_path / "data" / "synth_train" / "phones.txt").read_text().splitlines() if line.strip())
    semantic_cfg = yaml.safe_load((phones / "semantic" / "config.yaml").read_text())
    assert semantic_cfg["codec_overrides"]["semantic_input"] == {"kind": "phones", "n_units": n_phones}
    # ... of a classifier trained apart (a PhoneInput state dict), loaded into the seed and kept frozen
    from codec.config import SemanticInputConfig, preset
    from codec.model import PhoneInput
    from safetensors.torch import load_file, save_file
    torch.manual_seed(0)
    trained_apart = PhoneInput(preset("duet_cpu16k").mel, SemanticInputConfig(kind="phones", n_units=n_phones), 16, 4)
    save_file(trained_apart.state_dict(), str(tmp_path / "classifier.safetensors"))
    frozen = tmp_path / "exp_phones_frozen"
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), "--tiny", "true", "--stage", "4", "--stop_stage", "7",
                           "--init_codec", str(tmp_path / "exp" / "codec.safetensors"), "--semantic_input", "phones",
                           "--phone_classifier", str(tmp_path / "classifier.safetensors"),
                           "--data", str(tmp_path / "data"), "--exp", str(frozen)],
                          cwd=RECIPE, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert yaml.safe_load((frozen / "semantic" / "config.yaml").read_text())["freeze_phone_classifier"] is True
    trained = load_file(str(next((frozen / "semantic").glob("step-*")) / "model.safetensors"))
    exported = load_codec(frozen / "codec.safetensors").model.state_dict()  # stored in half precision
    for k, v in trained_apart.state_dict().items():
        if k.startswith("conv."):  # the branch's conv over the decisions is the codec's own, trained
            assert trained[f"codec.semantic.phones.{k}"].shape != v.shape
        else:
            assert torch.equal(trained[f"codec.semantic.phones.{k}"], v), k
            assert torch.allclose(exported[f"semantic.phones.{k}"], v, atol=1e-3), k
    seed = load_file(str(frozen / "init_codec" / "step-0" / "model.safetensors"))
    assert not torch.equal(trained["codec.semantic.posterior.weight"], seed["codec.semantic.posterior.weight"])
    # the flag without the rest is refused before anything runs
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), "--tiny", "true", "--stage", "4", "--stop_stage", "4",
                           "--phone_classifier", str(tmp_path / "classifier.safetensors"),
                           "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp_refused")],
                          cwd=RECIPE, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "--phone_classifier needs --init_codec" in proc.stderr


def test_a_frozen_phone_classifier_refuses_the_losses_that_would_train_it(tmp_path):
    from safetensors.torch import save_file

    from recipes.codec.task import _check_holds_phone_classifier
    from recipes.codec.train_config import CodecTrainConfig, LossWeights

    phones = {"semantic_input": {"kind": "phones", "n_units": 42}}
    CodecTrainConfig(stage="semantic", codec_overrides=phones, freeze_phone_classifier=True)
    with pytest.raises(ValueError, match="needs a phones semantic input"):
        CodecTrainConfig(stage="semantic", freeze_phone_classifier=True)
    for weights in ({"phone_consistency": 1.0}, {"phone_recognition_clean": 1.0}):
        with pytest.raises(ValueError, match="train the classifier"):
            CodecTrainConfig(stage="semantic", codec_overrides=phones, freeze_phone_classifier=True,
                             weights=LossWeights(**weights))
    # ... and a seed without a classifier, which the non-strict init_from load would leave random
    seed = tmp_path / "step-0"
    seed.mkdir()
    save_file({"codec.semantic.posterior.weight": torch.zeros(2, 2)}, str(seed / "model.safetensors"))
    with pytest.raises(ValueError, match="holds no phone classifier"):
        _check_holds_phone_classifier(str(seed))
    with pytest.raises(ValueError, match="none is set"):
        _check_holds_phone_classifier(None)
    save_file({"codec.semantic.phones.classify.weight": torch.zeros(2, 2)}, str(seed / "model.safetensors"))
    _check_holds_phone_classifier(str(seed))


def test_the_fine_tune_trains_the_vocoder_only_when_asked():
    from recipes.codec.task import CodecTrainingModel, _trainable
    from recipes.codec.train_config import CodecTrainConfig

    names = {}
    for with_vocoder in (True, False):
        cfg = CodecTrainConfig(stage="finetune", finetune_vocoder=with_vocoder, disc_filters=0)
        model = CodecTrainingModel(cfg, num_phones=10)
        assert model.discriminator is None  # disc_filters 0: none built
        names[with_vocoder] = {type(m).__name__ for m in _trainable(model, cfg)}
    assert names[True] == {"Connector", "MelDecoder", "Vocoder"}
    assert names[False] == {"Connector", "MelDecoder"}
