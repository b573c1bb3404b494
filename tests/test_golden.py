"""The bundled models still give their golden outputs (tests/golden/bundled.json): codec tokens of a fixed
input per bundled codec, and the bundled dialogue model's greedy inner monologue and listening-head
transcript. After replacing a bundled codec or model on purpose: `python -m tests.golden --update`."""
import json

from tests.golden.__main__ import GOLDEN, compute

HOW = "if the bundled model was replaced on purpose, regenerate: python -m tests.golden --update"


def test_bundled_models_give_their_golden_outputs():
    want, got = json.loads(GOLDEN.read_text()), compute()
    assert sorted(got["codecs"]) == sorted(want["codecs"]), HOW
    for path, codec in want["codecs"].items():
        assert got["codecs"][path]["codec_id"] == codec["codec_id"], f"{path}: another codec; {HOW}"
        assert got["codecs"][path]["codes"] == codec["codes"], f"{path}: same codec id, other tokens; {HOW}"
        assert abs(got["codecs"][path]["voice_sum"] - codec["voice_sum"]) < 0.05, f"{path}: voice vector; {HOW}"
    assert got["dialogue"] == want["dialogue"], HOW
