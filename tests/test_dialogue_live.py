"""Live duplex mode (dialogue.live) against a fake sounddevice: the microphone's audio reaches the
model unchanged, the loudspeaker plays exactly the decoded system audio in order once a block is
buffered, and the result equals the same recording streamed from a file."""
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dialogue.demo import BUNDLED_MODEL, asset, load_bundle, load_demo_codec
from dialogue.live import MicrophoneSource
from dialogue.pipeline import run_duplex, stream_duplex
from dialogue.session import SamplingConfig


class FakeStream:
    """sounddevice.Stream stand-in: a thread calls the callback with the next microphone block and
    records what the callback wrote to the loudspeaker. `ready(i)` says when block i may come (a
    device that never runs ahead of the loop: the test is then independent of machine speed)."""

    def __init__(self, mic: np.ndarray, ready, speaker: list, samplerate, blocksize, channels, dtype,
                 device, callback) -> None:
        assert channels == 1 and dtype == "float32" and len(mic) % blocksize == 0
        self.blocks = mic.reshape(-1, blocksize)
        self.ready, self.speaker, self.callback = ready, speaker, callback
        self.done = threading.Event()

    def _run(self) -> None:
        ok = SimpleNamespace(input_overflow=False)
        for i, block in enumerate(self.blocks):
            while not (self.ready(i) or self.done.is_set()):
                time.sleep(0.001)
            if self.done.is_set():
                return
            out = np.full((len(block), 1), np.nan, dtype=np.float32)
            self.callback(block[:, None].copy(), out, len(block), None, ok)
            self.speaker.append(out[:, 0].copy())

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def fake_sounddevice(mic, ready, speaker):
    return SimpleNamespace(Stream=lambda **kw: FakeStream(mic, ready, speaker, **kw))


@pytest.fixture(scope="module")
def bundled():
    codec = load_demo_codec(None, asset(BUNDLED_MODEL))
    bundle = load_bundle(SimpleNamespace(model=None), codec)
    return codec, bundle


def test_live_source_plays_decoded_blocks_and_matches_file_streaming(bundled):
    codec, bundle = bundled
    model = bundle.model
    step = model.cfg.streams.frames_per_step * codec.config.samples_per_token
    gen = torch.Generator().manual_seed(0)
    mic = (0.05 * torch.randn(12 * step, generator=gen)).numpy().astype(np.float32)
    speaker: list[np.ndarray] = []
    played: list[torch.Tensor] = []
    source = MicrophoneSource(codec.sample_rate, step, seconds=len(mic) / codec.sample_rate,
                              sounddevice=fake_sounddevice(mic, lambda i: len(played) >= i, speaker))
    source_play = source.play
    source.play = lambda a: (source_play(a), played.append(a.clone()))  # queued before the device may ask
    sampling = SamplingConfig(0.8, 25, 0.8, 250)
    voice = bundle.system_voice if model.cfg.system_voice else None
    live = stream_duplex(codec, model, source, voice, sampling, seeds=3)

    assert torch.equal(live.user_audio, torch.from_numpy(mic)[None])  # nothing lost on the way in
    assert len(live.step_times) == 12
    assert all(np.isfinite(b).all() for b in speaker)  # the callback always wrote the whole block
    assert source.late_steps == 0  # this device never runs ahead of the loop
    first = next(i for i, b in enumerate(speaker) if not np.all(b == 0))
    assert all(np.all(b == 0) for b in speaker[:first])  # silence until a whole block was buffered
    heard = np.concatenate(speaker[first:])
    decoded = torch.cat(played, dim=1)[0].numpy()
    assert len(heard) > 0.5 * len(decoded)
    np.testing.assert_array_equal(heard, decoded[:len(heard)])  # the decoded audio, in order, unchanged

    offline = run_duplex(codec, model, torch.from_numpy(mic)[None], voice, sampling, seeds=3)
    assert torch.equal(live.user_tokens, offline.user_tokens)
    assert torch.equal(live.text_tokens, offline.text_tokens)
    assert torch.equal(live.system_tokens, offline.system_tokens)
    torch.testing.assert_close(live.system_audio, offline.system_audio)


def test_live_mode_errors_name_the_problem(bundled):
    codec, _ = bundled

    def no_device(**kw):
        raise OSError("Error querying device -1")

    source = MicrophoneSource(codec.sample_rate, 1280, 1.0, sounddevice=SimpleNamespace(Stream=no_device))
    with pytest.raises(RuntimeError, match="cannot open the audio device .default. at 16000 Hz"):
        next(iter(source))
    with pytest.raises(ValueError, match="seconds must be > 0"):
        MicrophoneSource(codec.sample_rate, 1280, 0.0, sounddevice=SimpleNamespace())


def test_stop_ends_a_live_conversation_early(bundled):
    codec, _ = bundled
    mic = np.zeros(10 * 1280, dtype=np.float32)
    source = MicrophoneSource(codec.sample_rate, 1280, 10 * 1280 / codec.sample_rate,
                              sounddevice=fake_sounddevice(mic, lambda i: True, []))
    got = []
    for block in source:
        got.append(block)
        if len(got) == 3:
            source.stop()
    assert len(got) == 3 and source.recorded().shape == (1, 3 * 1280)


def test_run_duplex_keeps_every_steps_tokens(bundled):
    """The pipeline's token record equals a hand-written loop over the streaming codec and the
    session (whose returned tensors are views of buffers that the next step overwrites)."""
    from dialogue.session import DuplexSession

    codec, bundle = bundled
    model = bundle.model
    k = model.cfg.streams.frames_per_step
    step = k * codec.config.samples_per_token
    user = 0.05 * torch.randn(1, 10 * step, generator=torch.Generator().manual_seed(1))
    sampling = SamplingConfig(1.0, 0, 1.0, 0)  # full sampling: consecutive steps differ
    voice = bundle.system_voice if model.cfg.system_voice else None
    run = run_duplex(codec, model, user, voice, sampling, seeds=5)
    texts, systems = [], []
    g = voice.reshape(1, -1) if voice is not None else None
    with codec.streaming(1, voice=g) as stream, DuplexSession(model, 1, sampling, g, 5) as session:
        for i in range(10):
            codes = stream.encode_step(user[:, i * step:(i + 1) * step])
            text, system = session.step(codes, stream.voice if model.cfg.user_voice else None)
            stream.decode_step(system)
            texts.append(text.clone())
            systems.append(system.clone())
    assert torch.equal(run.text_tokens, torch.stack(texts, 1))
    assert torch.equal(run.system_tokens, torch.stack(systems, 1))
    assert len({tuple(s[0].tolist()) for s in systems}) > 1  # the check can tell steps apart
