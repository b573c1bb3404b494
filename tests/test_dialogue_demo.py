"""dialogue.demo and codec.demo refuse what they cannot have: a codec the dialogue model was not trained on,
a missing codec or model. Each is an error that names what was found and what was expected, never an
untrained stand-in."""
import pytest
import torch

from codec import load_codec
from codec.api import default_checkpoint
from codec.demo import main as codec_demo
from dialogue.checkpoint import dialogue_codec_id
from dialogue.demo import BUNDLED_MODEL, asset, main as dialogue_demo


def test_a_codec_the_model_was_not_trained_on_is_an_error_naming_both_ids(tmp_path, capsys):
    model = asset(BUNDLED_MODEL)
    trained_on, given = dialogue_codec_id(model), load_codec(default_checkpoint()).codec_id
    if trained_on == given:
        pytest.skip("the bundled dialogue model runs on the bundled codec: no mismatched codec is shipped")
    with pytest.raises(SystemExit) as e:
        dialogue_demo(["--bundled", "--codec", str(default_checkpoint()), "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert trained_on in err and given in err and "--codec" in err
    assert not (tmp_path / "summary.json").exists()


def test_a_missing_codec_or_model_is_an_error(tmp_path, capsys):
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit) as e:
        dialogue_demo(["--bundled", "--codec", str(tmp_path / "none.safetensors"), "--out", str(tmp_path),
                       "--threads", str(threads + 1)])
    assert e.value.code == 2 and "none.safetensors: no codec checkpoint" in capsys.readouterr().err
    assert torch.get_num_threads() == threads  # --threads holds for the call only, its error path too
    with pytest.raises(SystemExit) as e:
        dialogue_demo(["--bundled", "--model", str(tmp_path / "m.safetensors"), "--out", str(tmp_path)])
    assert e.value.code == 2 and "m.safetensors: no dialogue checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        codec_demo(["--codec", str(tmp_path / "none.safetensors"), "--out", str(tmp_path)])
    assert e.value.code == 2 and "none.safetensors: no codec checkpoint" in capsys.readouterr().err
