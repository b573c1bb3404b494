import numpy as np
import pytest
import torch

from recipes.score.invariance import codec_readout, invariance, token_agreement
from tests.test_codec import make_codec


def harmonic(text: str, pitch: float, sr: int = 16000) -> np.ndarray:
    """A 'voice' whose length follows the text and whose F0 follows the pitch factor."""
    t = np.arange(int(0.05 * sr * len(text.split()))) / sr
    return 0.05 * sum(np.sin(2 * np.pi * k * 120.0 * pitch * t) / k for k in range(1, 6))


def frame_levels(y: np.ndarray) -> dict[str, torch.Tensor]:
    """A readout whose tokens are each 256-sample frame's level in 3 dB steps: blind to pitch, not to gain."""
    frames = torch.as_tensor(y[: len(y) // 256 * 256]).reshape(-1, 256).double()
    db = 10 * frames.pow(2).mean(-1).clamp_min(1e-12).log10()
    return {"tokens": (db / 3).round().long()}


def test_token_agreement_counts_equal_frames_over_the_common_length():
    assert token_agreement(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="empty"):
        token_agreement(torch.tensor([]), torch.tensor([1]))


def test_invariance_scores_each_condition_against_the_reference_rendering():
    codec = make_codec("duet_cpu16k")
    sentences = ("one two three", "four five six seven")
    read = codec_readout(codec)
    blind = invariance(read, lambda text, pitch: harmonic(text, 1.0), sentences, pitches=(0.8, 1.5), gains_db=(-6.0,))
    assert set(blind) == {"pitch x0.8", "pitch x1.5", "level -6 dB", "noise -50 dB"}
    assert blind["pitch x0.8"] == blind["pitch x1.5"] == 1.0  # a synthesiser that ignores the pitch: nothing changes
    loud = invariance(frame_levels, harmonic, sentences, pitches=(1.5,), gains_db=(-6.0,))
    assert loud["pitch x1.5"] == 1.0 and loud["level -6 dB"] == 0.0  # a codec whose tokens are the frame level
    with pytest.raises(ValueError, match="no sentences"):
        invariance(read, harmonic, ())
    with pytest.raises(ValueError, match="no audio"):
        invariance(read, lambda text, pitch: np.zeros(0), sentences)


def test_a_phone_input_codec_also_reports_its_classifier_decisions():
    from tests.test_codec import PHONES

    codec = make_codec("duet_cpu16k", overrides=PHONES)
    sentences = ("one two three",)
    result = invariance(codec_readout(codec), harmonic, sentences, pitches=(1.5,), gains_db=())
    assert set(result) == {"pitch x1.5", "pitch x1.5 (phone decisions)", "noise -50 dB", "noise -50 dB (phone decisions)"}
    assert all(0.0 <= v <= 1.0 for v in result.values())
    assert set(codec_readout(make_codec("duet_cpu16k"))(harmonic("one", 1.0))) == {"tokens"}
