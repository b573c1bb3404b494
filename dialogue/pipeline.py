"""Full-duplex streaming, end to end: microphone audio → streaming codec encoder → DuplexSession →
streaming codec decoder, one dialogue step (K codec frames, 80 ms) at a time, for B conversations.

The system channel is placed on the wall clock: what the model emits after hearing the user's
step n can only play once step n has ended and the codec decoder has produced it, so the system
audio starts one step plus the codec's algorithmic latency after time 0 (`output_offset`); the
inner monologue's words carry the time their first token was emitted (end of its step).
"""
from __future__ import annotations

import dataclasses
import time

import torch

from codec.api import Codec

from .layout import Word, text_stream_words
from .model import DuplexModel
from .session import DuplexSession, SamplingConfig
from .tokenizer import TextTokenizer


@dataclasses.dataclass
class DuplexRun:
    sample_rate: int
    step_seconds: float
    output_offset: float  # seconds between the user's clock and the system channel's first sample
    user_audio: torch.Tensor  # [B, N] at sample_rate
    system_audio: torch.Tensor  # [B, N] at sample_rate, on the user's clock (offset included)
    user_tokens: torch.Tensor  # [B, S, K]
    text_tokens: torch.Tensor  # [B, S]
    system_tokens: torch.Tensor  # [B, S, K]
    step_times: list[float]  # compute seconds per step (encode + model + decode, whole batch)
    late_steps: int = 0  # realtime only: steps whose output was not ready when the next step's audio arrived
    heard_tokens: torch.Tensor | None = None  # [B, S] the listening head's transcript of the user (or None)
    heard_delay_steps: int = 0  # how many steps the heard stream lags the user's audio
    text_probs: torch.Tensor | None = None  # [B, S, 3] with trace_text: p(token chosen), p(PAD), p(EPAD)

    def heard_words(self, b: int, tokenizer: TextTokenizer) -> list[Word]:
        """Conversation b's user words as the listening head heard them, on the user's clock (the
        head's lag taken off); empty without a listening head."""
        if self.heard_tokens is None:
            return []
        return text_stream_words(self.heard_tokens[b], self.step_seconds, tokenizer, lead=-self.heard_delay_steps)

    def words(self, b: int, tokenizer: TextTokenizer) -> list[Word]:
        """Conversation b's inner monologue; times = when each word's tokens were emitted."""
        return text_stream_words(self.text_tokens[b], self.step_seconds, tokenizer, lead=1)  # emitted at step end

    @property
    def latency_ms(self) -> tuple[float, float]:
        """(mean, p95) compute time per step in ms."""
        t = torch.tensor(self.step_times) * 1000
        return float(t.mean()), float(t.quantile(0.95))

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time / audio time (< 1 keeps up with the microphone)."""
        return sum(self.step_times) / (len(self.step_times) * self.step_seconds)

    def stereo(self, b: int) -> torch.Tensor:
        """[N, 2]: user left, system right."""
        return torch.stack([self.user_audio[b], self.system_audio[b]], dim=-1)


class RecordingSource:
    """A recording [B, N] delivered one step at a time; realtime: at the pace a microphone would
    deliver it (step i's audio is available once i + 1 steps of wall time have passed)."""

    def __init__(self, user: torch.Tensor, step_samples: int, step_seconds: float, realtime: bool = False) -> None:
        if user.dim() != 2 or user.shape[1] == 0:
            raise ValueError(f"RecordingSource: user audio must be [batch, samples] with samples > 0, got "
                             f"{tuple(user.shape)}")
        self.user, self.step_samples, self.step_seconds, self.realtime = user.float(), step_samples, step_seconds, realtime
        self.batch_size = user.shape[0]
        self.late_steps = 0

    def __iter__(self):
        n = self.user.shape[1]
        steps = -(-n // self.step_samples)
        padded = torch.nn.functional.pad(self.user, (0, steps * self.step_samples - n))
        t0 = time.perf_counter()
        for i in range(steps):
            if self.realtime:
                now = time.perf_counter()
                self.late_steps += i > 0 and now > t0 + (i + 1) * self.step_seconds  # step i-1 overran
                time.sleep(max(0.0, t0 + (i + 1) * self.step_seconds - now))
            yield padded[:, i * self.step_samples:(i + 1) * self.step_samples]

    def play(self, audio: torch.Tensor) -> None:
        """A recording has no loudspeaker: the system audio is only collected."""

    def recorded(self) -> torch.Tensor:
        return self.user


def run_duplex(codec: Codec, model: DuplexModel, user: torch.Tensor, system_voice: torch.Tensor | None,
               sampling: SamplingConfig | None = None, seeds: int | list[int] = 0, realtime: bool = False,
               on_step=None, trace_text: bool = False) -> DuplexRun:
    """user [B, N] at codec.sample_rate → DuplexRun. realtime: pace the steps by the wall clock (as
    a microphone would deliver them). on_step(n, text [B]) is called after every step. trace_text:
    keep the text distribution's probabilities per step (`DuplexRun.text_probs`)."""
    source = RecordingSource(user, model.cfg.streams.frames_per_step * codec.config.samples_per_token,
                             model.cfg.streams.step_seconds, realtime)
    return stream_duplex(codec, model, source, system_voice, sampling, seeds, on_step, trace_text)


def stream_duplex(codec: Codec, model: DuplexModel, source, system_voice: torch.Tensor | None,
                  sampling: SamplingConfig | None = None, seeds: int | list[int] = 0, on_step=None,
                  trace_text: bool = False) -> DuplexRun:
    """The duplex loop over any step source: iterating `source` gives [B, step_samples] user audio
    at codec.sample_rate, `source.play(audio [B, step_samples])` receives each step's system audio
    as soon as it is decoded, `source.recorded()` returns all user audio heard and
    `source.late_steps` counts steps that missed their deadline (`RecordingSource`, or
    `dialogue.live.MicrophoneSource`)."""
    cfg = model.cfg
    k = cfg.streams.frames_per_step
    if abs(codec.frame_rate - cfg.streams.codec_frame_rate) > 1e-6 or codec.config.codebook_size != cfg.streams.codebook_size:
        raise ValueError(f"model {cfg.name} expects {cfg.streams.codec_frame_rate} Hz tokens from a "
                         f"{cfg.streams.codebook_size}-code codec, got {codec.frame_rate} Hz / "
                         f"{codec.config.codebook_size}")
    b = source.batch_size
    voice = system_voice.float().reshape(-1, cfg.streams.voice_dim).expand(b, -1) if system_voice is not None else None
    user_tokens, text_tokens, system_tokens, heard, text_probs = [], [], [], [], []
    audio, times = [], []
    with codec.streaming(b, voice=voice) as stream, \
            DuplexSession(model, b, sampling, voice, seeds, trace_text=trace_text) as session:
        for i, chunk in enumerate(source):
            start = time.perf_counter()
            codes = stream.encode_step(chunk)
            text, system = session.step(codes, stream.voice if cfg.user_voice else None)
            out = stream.decode_step(system)[:, 0]
            times.append(time.perf_counter() - start)
            source.play(out)
            audio.append(out.cpu())
            user_tokens.append(codes.clone())  # the session returns views of its buffers: keep copies
            text_tokens.append(text.clone())
            system_tokens.append(system.clone())
            heard.append(session.heard.clone())
            if trace_text:
                text_probs.append(session.text_probs.clone())
            if on_step is not None:
                on_step(i, text)
        audio.append(stream.decode_flush()[:, 0].cpu())
    if not times:
        raise ValueError("stream_duplex: the source delivered no audio")
    user = source.recorded().float().cpu()
    n = user.shape[1]
    offset_s = cfg.streams.step_seconds + cfg.streams.codec_latency_ms / 1000
    offset = int(round(offset_s * codec.sample_rate))
    system_audio = torch.cat([torch.zeros(b, offset)] + audio, dim=1)[:, :n]
    system_audio = torch.nn.functional.pad(system_audio, (0, n - system_audio.shape[1]))
    return DuplexRun(codec.sample_rate, cfg.streams.step_seconds, offset_s, user, system_audio,
                     torch.stack(user_tokens, 1).cpu(), torch.stack(text_tokens, 1).cpu(),
                     torch.stack(system_tokens, 1).cpu(), times, int(source.late_steps),
                     torch.stack(heard, 1).cpu() if cfg.user_text_delay is not None else None,
                     session.heard_lag, torch.stack(text_probs, 1).cpu() if trace_text else None)
