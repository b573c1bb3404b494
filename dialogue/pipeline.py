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

    def words(self, b: int, tokenizer: TextTokenizer) -> list[Word]:
        """Conversation b's inner monologue; times = when each word's tokens were emitted."""
        return [dataclasses.replace(w, start=w.start + self.step_seconds, end=w.end + self.step_seconds)
                for w in text_stream_words(self.text_tokens[b], self.step_seconds, tokenizer)]

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


def run_duplex(codec: Codec, model: DuplexModel, user: torch.Tensor, system_voice: torch.Tensor | None,
               sampling: SamplingConfig | None = None, seeds: int | list[int] = 0, realtime: bool = False,
               on_step=None) -> DuplexRun:
    """user [B, N] at codec.sample_rate → DuplexRun. realtime: pace the steps by the wall clock (as
    a microphone would deliver them). on_step(n, text [B]) is called after every step."""
    cfg = model.cfg
    k = cfg.streams.frames_per_step
    if abs(codec.frame_rate - cfg.streams.codec_frame_rate) > 1e-6 or codec.config.codebook_size != cfg.streams.codebook_size:
        raise ValueError(f"model {cfg.name} expects {cfg.streams.codec_frame_rate} Hz tokens from a "
                         f"{cfg.streams.codebook_size}-code codec, got {codec.frame_rate} Hz / "
                         f"{codec.config.codebook_size}")
    b, n = user.shape
    step_samples = k * codec.config.samples_per_token
    steps = -(-n // step_samples)
    padded = torch.nn.functional.pad(user.float(), (0, steps * step_samples - n))
    voice = system_voice.float().reshape(-1, cfg.streams.voice_dim).expand(b, -1) if system_voice is not None else None
    user_tokens = torch.zeros(b, steps, k, dtype=torch.long)
    text_tokens = torch.zeros(b, steps, dtype=torch.long)
    system_tokens = torch.zeros(b, steps, k, dtype=torch.long)
    audio, times, late = [], [], 0
    t0 = time.perf_counter()
    with codec.streaming(b, voice=voice) as stream, DuplexSession(model, b, sampling, voice, seeds) as session:
        for i in range(steps):
            if realtime:
                time.sleep(max(0.0, t0 + (i + 1) * cfg.streams.step_seconds - time.perf_counter()))
            start = time.perf_counter()
            codes = stream.encode_step(padded[:, i * step_samples:(i + 1) * step_samples])
            text, system = session.step(codes, stream.voice if cfg.user_voice else None)
            audio.append(stream.decode_step(system)[:, 0])
            times.append(time.perf_counter() - start)
            late += realtime and time.perf_counter() > t0 + (i + 2) * cfg.streams.step_seconds
            user_tokens[:, i], text_tokens[:, i], system_tokens[:, i] = codes, text, system
            if on_step is not None:
                on_step(i, text)
        audio.append(stream.decode_flush()[:, 0])
    offset_s = cfg.streams.step_seconds + cfg.streams.codec_latency_ms / 1000
    offset = int(round(offset_s * codec.sample_rate))
    system_audio = torch.cat([torch.zeros(b, offset)] + [a.cpu() for a in audio], dim=1)[:, :n]
    system_audio = torch.nn.functional.pad(system_audio, (0, n - system_audio.shape[1]))
    return DuplexRun(codec.sample_rate, cfg.streams.step_seconds, offset_s, user.float().cpu(), system_audio,
                     user_tokens, text_tokens, system_tokens, times, int(late))
