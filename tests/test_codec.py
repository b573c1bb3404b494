"""Codec API: streaming == offline for every preset, bad input errors, bitrate arithmetic, files."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import AudioError, Codec, CodecTokens, load_codec, preset
from codec.config_io import merge
from codec.model import SpeechCodec

SMALL = {"latent_dim": 32, "voice_dim": 8, "voice_hidden": 16,
         "encoder": {"dim": 32, "num_layers": 1, "num_heads": 2},
         "semantic": {"dim": 32, "num_layers": 1, "num_heads": 2},
         "connector": {"dim": 32, "num_layers": 1, "num_heads": 2},
         "decoder": {"dim": 32, "num_layers": 1, "num_heads": 2},
         "vocoder": {"dim": 32, "num_blocks": 1}}


CEPSTRAL = {"semantic_input": {"kind": "cepstrum"}}
PHONES = {"semantic_input": {"kind": "phones", "n_units": 6, "recognizer": {"dim": 16, "num_layers": 1, "num_heads": 2}}}


def make_codec(name, small=True, seed=0, overrides=None):
    torch.manual_seed(seed)
    cfg = preset(name)
    if small:  # the preset's stream structure (rates, hop, downsampling, windows) at test width
        cfg = merge(cfg, SMALL)
    return Codec(SpeechCodec(merge(cfg, overrides or {})))


def stream(codec, wav, voice, seed):
    r = random.Random(seed)
    spt = codec.config.samples_per_token
    codes, audio, i = [], [], 0
    with codec.streaming(wav.shape[0], voice=voice) as s:
        while i < wav.shape[-1]:
            n = r.choice([1, r.randint(1, spt), r.randint(spt, 4 * spt)])
            c = s.encode_step(wav[:, i:i + n])
            i += n
            codes.append(c)
            audio.append(s.decode_step(c))
        c = s.encode_flush()
        codes.append(c)
        audio.append(s.decode_step(c))
        audio.append(s.decode_flush())
        running_voice = s.voice
    return torch.cat(codes, 1), torch.cat(audio, -1), running_voice


@pytest.mark.parametrize("name,overrides", [("duet_cpu16k", None), ("secousti_1k", None), ("secousti_027k", None),
                                            ("duet_cpu16k", CEPSTRAL), ("secousti_027k", CEPSTRAL),
                                            ("duet_cpu16k", PHONES), ("secousti_027k", PHONES)])
def test_streaming_equals_offline(name, overrides):
    codec = make_codec(name, overrides=overrides)
    sr = codec.sample_rate
    wav = 0.1 * torch.randn(2, int(0.9 * sr) + 37)
    tokens = codec.encode(wav, sr)
    ref = codec.decode(tokens)
    assert tokens.codes.shape == (2, -(-wav.shape[-1] // codec.config.samples_per_token))
    for seed in range(2):
        codes, audio, voice = stream(codec, wav, tokens.voice, seed)
        assert torch.equal(codes, tokens.codes)
        torch.testing.assert_close(audio[..., :wav.shape[-1]], ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(voice, tokens.voice, atol=1e-5, rtol=1e-4)


def test_full_size_preset_streams_like_offline():
    codec = make_codec("secousti_027k", small=False)
    wav = 0.1 * torch.randn(1, 8000)
    tokens = codec.encode(wav, codec.sample_rate)
    codes, audio, _ = stream(codec, wav, tokens.voice, 0)
    assert torch.equal(codes, tokens.codes)
    torch.testing.assert_close(audio[..., :8000], codec.decode(tokens), atol=1e-5, rtol=1e-4)


def test_bitrate_arithmetic():
    assert preset("secousti_1k").bitrate == pytest.approx(1092.4, abs=0.5)  # 86.13 Hz × 12.68 bits
    assert preset("secousti_027k").bitrate == pytest.approx(273.1, abs=0.5)
    assert preset("duet_cpu16k").bitrate == pytest.approx(792.5, abs=0.1)
    assert preset("duet_cpu16k").frame_rate == 62.5
    assert preset("secousti_1k").codebook_size == 6561


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(1, 0), "empty"),
    (torch.tensor([[0.1, float("nan"), 0.2]]), "NaN"),
    (torch.tensor([[0.1, float("inf")]]), "NaN or infinite"),
    (torch.zeros(1, 100, dtype=torch.int16), "not floating point"),
    (torch.zeros(1, 1, 1, 100), "shape"),
    ([0.1, 0.2], "torch.Tensor"),
])
def test_bad_audio_is_named(bad, match):
    codec = make_codec("duet_cpu16k")
    with pytest.raises(AudioError, match=match):
        codec.encode(bad, 16000)


def test_bad_sample_rate_and_unreadable_file(tmp_path):
    codec = make_codec("duet_cpu16k")
    with pytest.raises(AudioError, match="sample_rate"):
        codec.encode(torch.zeros(1, 100), 0)
    from codec import load_audio
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioError, match="unreadable"):
        load_audio(junk)
    with pytest.raises(AudioError, match="no such"):
        load_audio(tmp_path / "missing.wav")


def test_any_rate_and_channels_are_resampled_and_downmixed():
    codec = make_codec("duet_cpu16k")
    stereo = 0.1 * torch.randn(1, 2, 44100)
    tokens = codec.encode(stereo, 44100)
    assert tokens.codes.shape[1] == -(-16000 // 256)
    assert tokens.num_samples == 16000
    assert codec.decode(tokens).shape == (1, 1, 16000)


def test_decode_rejects_bad_codes_and_voice():
    codec = make_codec("duet_cpu16k")
    with pytest.raises(ValueError, match="out of range"):
        codec.decode(CodecTokens(torch.tensor([[6561]]), torch.zeros(1, 8), 62.5, codec.codec_id))
    with pytest.raises(ValueError, match="voice"):
        codec.decode(CodecTokens(torch.tensor([[1]]), torch.zeros(1, 3), 62.5, codec.codec_id))
    with pytest.raises(ValueError, match="made by codec"):
        codec.decode(CodecTokens(torch.tensor([[1]]), torch.zeros(1, 8), 62.5, "someoneelse"))


def test_save_load_round_trip(tmp_path):
    codec = make_codec("duet_cpu16k")
    path = tmp_path / "c.safetensors"
    codec_id = codec.save(path, half=False)
    again = load_codec(path)
    assert again.codec_id == codec_id and again.config == codec.config
    wav = 0.1 * torch.randn(1, 4000)
    assert torch.equal(again.encode(wav, 16000).codes, codec.encode(wav, 16000).codes)
    with pytest.raises(FileNotFoundError):
        load_codec(tmp_path / "nothing.safetensors")
    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        load_codec(tmp_path / "x.safetensors")


def test_codec_id_names_the_token_space_not_the_decoder():
    codec = make_codec("duet_cpu16k")
    from codec.api import codec_identity
    before = codec_identity(codec.model)
    with torch.no_grad():
        codec.model.vocoder.head.bias.add_(0.1)  # decoder-side training keeps tokens decodable
        codec.model.connector.out.bias.add_(0.1)
    assert codec_identity(codec.model) == before
    with torch.no_grad():
        codec.model.encoder.inp.conv.bias.add_(0.1)  # a new encoder makes a new token space
    assert codec_identity(codec.model) != before


def harmonic_vowel(f0):
    """The perturbation tests' vowel-like tone (the same envelope at any pitch) over a noise floor that
    keeps every mel band above the log floor; its tone spans frames 16-55."""
    from tests.test_codec_perturb import voiced

    x = voiced(f0, seconds=0.64)
    x = x[:len(x) // 256 * 256] + 1e-3 * np.random.default_rng(0).standard_normal(len(x) // 256 * 256)
    return torch.from_numpy(x).float()[None]


def test_cepstral_semantic_input_drops_level_and_most_of_the_pitch():
    codec = make_codec("duet_cpu16k", overrides=CEPSTRAL)
    m = codec.model
    wav = harmonic_vowel(120.0)
    with torch.no_grad():
        mel = m.frontend(wav)
        assert mel.min() > np.log(1e-5)
        tokens = m.tokens_from_mel(mel).indices
        assert torch.equal(m.tokens_from_mel(m.frontend(0.3 * wav)).indices, tokens)  # c0 is left out
        cepstrum = m.semantic.cepstrum
        ceps = {}
        for f0 in (120.0, 170.0):
            mel = m.frontend(harmonic_vowel(f0))[..., 20:52]  # inside the tone
            ceps[f0] = (mel, torch.einsum("cm,bmt->bct", cepstrum.dct, mel[:, cepstrum.first_band:]))

    def relative_change(a, b):
        return ((a - b).norm() / b.norm()).item()

    mel_change = relative_change(ceps[170.0][0] - ceps[170.0][0].mean(1, keepdim=True),
                                 ceps[120.0][0] - ceps[120.0][0].mean(1, keepdim=True))
    assert relative_change(ceps[170.0][1], ceps[120.0][1]) < 0.5 * mel_change


def test_semantic_input_config_errors_and_codec_id():
    from codec.api import codec_identity
    from codec.config import SemanticInputConfig

    with pytest.raises(ValueError, match="semantic_input.kind 'pitch'"):
        SemanticInputConfig(kind="pitch")
    with pytest.raises(ValueError, match="n_units must be >= 2"):
        SemanticInputConfig(kind="phones", n_units=1)
    with pytest.raises(ValueError, match="cannot give 90 cepstral"):
        make_codec("duet_cpu16k", overrides={"semantic_input": {"kind": "cepstrum", "n_ceps": 90}})
    latent, cepstral = make_codec("duet_cpu16k"), make_codec("duet_cpu16k", overrides=CEPSTRAL)
    assert codec_identity(latent.model) != codec_identity(cepstral.model)
    wav = 0.1 * torch.randn(1, 4000)
    before = cepstral.encode(wav, 16000).codes
    with torch.no_grad():
        cepstral.model.encoder.inp.conv.bias.add_(1.0)  # the encoder does not feed a cepstral codec's tokens
    assert torch.equal(cepstral.encode(wav, 16000).codes, before)
    # only the fields a kind uses name its token space: a cepstral codec's id ignores the phone classifier's shape
    assert SemanticInputConfig(kind="cepstrum").defining_fields() == {"kind": "cepstrum", "n_ceps": 24, "min_hz": 250.0}
    other = make_codec("duet_cpu16k", overrides={"semantic_input": {"kind": "cepstrum", "n_units": 7}})
    assert codec_identity(other.model) == codec_identity(make_codec("duet_cpu16k", overrides=CEPSTRAL).model)
    phones = make_codec("duet_cpu16k", overrides=PHONES)
    assert codec_identity(phones.model) not in (codec_identity(latent.model), codec_identity(cepstral.model))


def test_phone_input_passes_only_the_classifier_decisions():
    codec = make_codec("secousti_027k", overrides=PHONES)
    m = codec.model
    mel = m.frontend(0.1 * torch.randn(1, 88 * 256))
    with torch.no_grad():
        out = m.tokens_from_mel(mel)
        assert out.unit_logits.shape == (1, mel.shape[-1], 6)
        m.semantic.phones.classify.weight.mul_(3.0)  # sharper confidences, the same decisions
        m.semantic.phones.classify.bias.mul_(3.0)
        sharper = m.tokens_from_mel(mel)
    assert not torch.allclose(sharper.unit_logits, out.unit_logits)
    assert torch.equal(sharper.indices, out.indices)
    # the token losses do not reach the classifier: it learns from the phone timings alone
    m.zero_grad()
    m.tokens_from_mel(mel).mu.sum().backward()
    assert m.semantic.phones.classify.weight.grad is None
    assert m.semantic.phones.conv.conv.weight.grad.abs().sum() > 0


def test_semantic_output_gives_the_encoded_tokens_and_the_classifier_frames():
    codec = make_codec("duet_cpu16k", overrides=PHONES)
    wav = 0.1 * torch.randn(1, 10 * codec.config.samples_per_token + 100)  # a partial last frame: zero-padded
    out = codec.semantic_output(wav, 16000)
    assert torch.equal(out.indices, codec.encode(wav, 16000).codes)
    assert out.unit_logits.shape == (1, 11 * codec.config.downsample, 6)
    assert make_codec("duet_cpu16k").semantic_output(wav, 16000).unit_logits is None


def test_the_bundled_codec_streams_like_offline_on_speech():
    """Trained weights, real speech: codes identical and audio to float tolerance (random weights could hide an
    FSQ boundary that chunking moves)."""
    import soundfile as sf
    from importlib import resources

    codec = load_codec()
    sample = Path(str(resources.files("codec").joinpath("assets/sample_en.wav")))
    wav, sr = sf.read(sample, dtype="float32")
    wav = torch.from_numpy(wav[: 3 * sr]).reshape(1, -1)
    if sr != codec.sample_rate:
        import torchaudio.functional as AF
        wav, sr = AF.resample(wav, sr, codec.sample_rate), codec.sample_rate
    tokens = codec.encode(wav, sr)
    for seed in range(2):
        codes, audio, voice = stream(codec, wav, tokens.voice, seed)
        assert torch.equal(codes, tokens.codes)
        torch.testing.assert_close(audio[..., :wav.shape[-1]], codec.decode(tokens), atol=1e-4, rtol=1e-3)


def test_streaming_runs_one_intra_op_thread_and_restores_torch_s_setting():
    codec = make_codec("duet_cpu16k")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with codec.streaming(1) as s:
            assert torch.get_num_threads() == 1
            s.decode_step(s.encode_step(torch.zeros(1, 1280)))
        assert torch.get_num_threads() == 2
        with codec.streaming(1, threads=None):
            assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="threads must be >= 1"):
            with codec.streaming(1, threads=0):
                pass
    finally:
        torch.set_num_threads(before)
