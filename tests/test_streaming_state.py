"""CodecStream on the streaming protocol: per-item reset, strict snapshots that include the buffered
partial frame, and one item restarted while the others go on bit-exactly."""
import pytest
import torch

from codec import Codec, preset
from codec.config_io import merge
from codec.model import SpeechCodec
from codec.streaming import StreamingError
from tests.test_codec import SMALL


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return Codec(SpeechCodec(merge(preset("duet_cpu16k"), SMALL)))


def run(stream, wav, step):
    """Encode + decode `wav` [B, N] in chunks of `step` samples → (codes [B, T], audio [B, n])."""
    codes, audio = [], []
    for i in range(0, wav.shape[-1], step):
        c = stream.encode_step(wav[:, i:i + step])
        codes.append(c)
        audio.append(stream.decode_step(c)[:, 0])
    return torch.cat(codes, 1), torch.cat(audio, 1)


def test_one_item_restarts_while_the_others_go_on_bit_exactly(codec):
    """Three conversations at whole-frame steps; item 1 ends after 6 steps and a new one starts in its
    slot. Items 0 and 2 equal the same batch without the restart, bit for bit; the new item 1 equals
    a fresh stream of its audio, delayed by the vocoder's lag (its leading silence)."""
    step = 5 * codec.config.samples_per_token
    gen = torch.Generator().manual_seed(0)
    first, second = 0.1 * torch.randn(3, 12 * step, generator=gen), 0.1 * torch.randn(3, 6 * step, generator=gen)
    restarted = first.clone()
    restarted[1, 6 * step:] = second[1]
    voice = torch.randn(3, codec.config.voice_dim, generator=gen)
    with codec.streaming(3, voice=voice) as s:
        ref_codes, ref_audio = run(s, first, step)
    with codec.streaming(3, voice=voice) as s:
        c0, a0 = run(s, restarted[:, :6 * step], step)
        s.reset(torch.tensor([False, True, False]))
        assert s.encoded_frames.tolist() == [30, 0, 30]
        c1, a1 = run(s, restarted[:, 6 * step:], step)
    codes, audio = torch.cat([c0, c1], 1), torch.cat([a0, a1], 1)
    for b in (0, 2):
        assert torch.equal(codes[b], ref_codes[b]) and torch.equal(audio[b], ref_audio[b])
    with codec.streaming(3, voice=voice) as s:  # the new conversation alone, fresh, in the same slot
        fresh_codes, fresh_audio = run(s, torch.stack([second[0], second[1], second[2]]), step)
    lag = codec.model.vocoder.lag
    assert torch.equal(c1[1], fresh_codes[1])
    assert torch.equal(a1[1, :lag], torch.zeros(lag))
    assert torch.equal(a1[1, lag:], fresh_audio[1, :a1.shape[1] - lag])
    with codec.streaming(1, voice=voice[1:2]) as s:  # and in a stream of its own (other kernels: tolerance)
        alone_codes, alone_audio = run(s, second[1:2], step)
    assert torch.equal(alone_codes[0], c1[1])
    torch.testing.assert_close(alone_audio[0, :a1.shape[1] - lag], a1[1, lag:], atol=1e-5, rtol=0)


def test_snapshot_holds_the_buffered_partial_frame(codec):
    spt = codec.config.samples_per_token
    wav = 0.1 * torch.randn(2, 40 * spt, generator=torch.Generator().manual_seed(1))
    with codec.streaming(2) as s:
        s.encode_step(wav[:, :3 * spt + 100])  # 100 samples wait for their frame
        snap = s.get_state()
        assert int(snap["stream/pending_len"][0]) == 100
        assert torch.equal(snap["stream/pending"][:, :100], wav[:, 3 * spt:3 * spt + 100])
        first = run(s, wav[:, 3 * spt + 100:], 777)
        s.set_state(snap)
        again = run(s, wav[:, 3 * spt + 100:], 777)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_set_state_is_strict(codec):
    with codec.streaming(2) as s:
        snap = s.get_state()
        assert any(k.startswith("model/") for k in snap) and "stream/to_skip" in snap
        with pytest.raises(StreamingError, match=r"unknown keys \['bogus/x'\]"):
            s.set_state({**snap, "bogus/x": torch.zeros(2)})
        with pytest.raises(StreamingError, match=r"missing keys \['stream/pending'\]"):
            s.set_state({k: v for k, v in snap.items() if k != "stream/pending"})
        with pytest.raises(StreamingError, match="stream/voice has shape"):
            s.set_state({**snap, "stream/voice": torch.zeros(3, codec.config.voice_dim)})
    with codec.streaming(3) as s3, pytest.raises(StreamingError, match="shape"):
        s3.set_state(snap)


def test_mid_frame_reset_keeps_the_batch_in_phase(codec):
    """A per-item reset between frames silences that item's buffered samples but keeps their count:
    every item still emits the same number of tokens per chunk."""
    spt = codec.config.samples_per_token
    wav = 0.1 * torch.randn(2, 6 * spt, generator=torch.Generator().manual_seed(2))
    with codec.streaming(2) as s:
        s.encode_step(wav[:, :spt + 50])
        s.reset(torch.tensor([True, False]))
        assert s.state.pending_len.tolist() == [50, 50]
        assert torch.equal(s.state.pending[0, :50], torch.zeros(50))
        assert s.encode_step(wav[:, spt + 50:3 * spt]).shape == (2, 2)
        s.reset()  # the whole batch: a fresh stream, phase included
        assert s.state.pending_len.tolist() == [0, 0] and s.state.to_skip.tolist() == [codec.model.vocoder.lag] * 2
