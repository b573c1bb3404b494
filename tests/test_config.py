"""Configs are typed dataclasses that round-trip through YAML and JSON, strictly."""
import pytest

from codec.config import CodecConfig, preset
from codec.config_io import ConfigError, from_dict, load, merge, save, to_dict


@pytest.mark.parametrize("name", ["duet_cpu16k", "secousti_1k", "secousti_027k"])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, name, suffix):
    cfg = preset(name)
    save(cfg, tmp_path / f"c{suffix}")
    assert load(CodecConfig, tmp_path / f"c{suffix}") == cfg


def test_merge_is_a_delta_and_errors_name_the_key():
    cfg = merge(preset("duet_cpu16k"), {"encoder": {"num_layers": 1}})
    assert cfg.encoder.num_layers == 1 and cfg.decoder == preset("duet_cpu16k").decoder
    with pytest.raises(ConfigError, match=r"encoder: unknown key.*num_layer"):
        from_dict(CodecConfig, {"encoder": {"num_layer": 1}})
    with pytest.raises(ConfigError, match="downsample: expected int"):
        from_dict(CodecConfig, {"downsample": "four"})
    with pytest.raises(KeyError, match="unknown codec preset"):
        preset("nope")
    assert to_dict(cfg)["encoder"]["num_layers"] == 1


def test_optional_fields_are_typed_when_set():
    """`X | None` fields: None stays None, a value is coerced and checked like X (nested dataclasses too)."""
    from dialogue.config import DialogueConfig
    from dialogue.user_encoder import UserEncoderConfig
    assert from_dict(DialogueConfig, {"user_encoder": None}).user_encoder is None
    assert from_dict(DialogueConfig, {"user_encoder": {"dim": 8}}).user_encoder == UserEncoderConfig(dim=8)
    with pytest.raises(ConfigError, match="audio_rank: expected int"):
        from_dict(DialogueConfig, {"audio_rank": "big"})
