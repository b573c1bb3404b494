"""Several conversations as the items ("slots") of one batch, stepped together: the engine under
`dialogue.serve`, free of any network framework so it can be tested and benchmarked on its own.

A dialogue step costs mostly per-call overhead, not arithmetic, so B conversations stepped as one
batch cost far less than B sessions. `SlotBatch` holds one `CodecStream` and one `DuplexSession` of
batch `slots`; a conversation that starts in a slot resets that item only (the streaming protocol's
`reset(mask)`), and the other conversations go on bit for bit. `InputBuffer` is one client's bounded
sample FIFO (bursts drop the oldest audio, stalls become silence, both counted); `PieceText` turns
a stream of text tokens into display text; `SlotTable` hands out free slots.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import time

import numpy as np
import torch

from codec.api import Codec

from ..checkpoint import DialogueBundle
from ..layout import WORD_START
from ..session import DuplexSession, SamplingConfig
from ..tokenizer import TextTokenizer


@dataclasses.dataclass
class StepOutput:
    """One step of the whole batch."""

    audio: torch.Tensor  # [B, n] float at the codec rate: each slot's system audio, decoded this step
    text: torch.Tensor  # [B] the inner monologue's token
    heard: torch.Tensor  # [B] the listening head's token (PAD without a head)
    seconds: float  # compute time of the step (encode + model + decode, the whole batch)


class SlotBatch:
    """`slots` conversations stepped as one batch of a codec stream and a duplex session."""

    def __init__(self, codec: Codec, bundle: DialogueBundle, slots: int, sampling: SamplingConfig | None = None) -> None:
        cfg = bundle.model.cfg
        if abs(codec.frame_rate - cfg.streams.codec_frame_rate) > 1e-6 or \
                codec.config.codebook_size != cfg.streams.codebook_size:
            raise ValueError(f"model {cfg.name} expects {cfg.streams.codec_frame_rate} Hz tokens from a "
                             f"{cfg.streams.codebook_size}-code codec, got {codec.frame_rate} Hz / "
                             f"{codec.config.codebook_size}")
        if slots < 1:
            raise ValueError(f"SlotBatch: slots must be >= 1, got {slots}")
        self.codec, self.bundle, self.slots = codec, bundle, slots
        self.sample_rate = codec.sample_rate
        self.frame_samples = cfg.streams.frames_per_step * codec.config.samples_per_token
        self.step_seconds = cfg.streams.step_seconds
        voice = None
        if cfg.system_voice:
            voice = bundle.system_voice.float().reshape(1, -1).expand(slots, -1)
        self._stack = contextlib.ExitStack()
        self.stream = self._stack.enter_context(codec.streaming(slots, voice=voice))
        self.session = self._stack.enter_context(DuplexSession(bundle.model, slots, sampling, voice,
                                                               seeds=list(range(slots))))
        self._user_voice = cfg.user_voice

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "SlotBatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @torch.inference_mode()
    def warmup(self, steps: int = 3) -> None:
        """Step silence a few times (first calls pay one-off allocation and dispatch costs), then
        restart every slot, so the first conversation does not begin with late steps."""
        for _ in range(steps):
            self.step(torch.zeros(self.slots, self.frame_samples))
        self.stream.reset()
        self.session.reset()

    @torch.inference_mode()
    def step(self, audio: torch.Tensor, restart: dict[int, int] | None = None) -> StepOutput:
        """audio [B, frame_samples] float at the codec rate (free slots: silence); restart {slot: seed}:
        conversations that start with this step (only those items are reset) → StepOutput."""
        if audio.shape != (self.slots, self.frame_samples):
            raise ValueError(f"SlotBatch.step: audio must be [{self.slots}, {self.frame_samples}], got {tuple(audio.shape)}")
        start = time.perf_counter()
        if restart:
            mask = torch.zeros(self.slots, dtype=torch.bool)
            for slot, seed in restart.items():
                mask[slot] = True
                self.session.set_seed(slot, seed)
            self.stream.reset(mask)
            self.session.reset(mask)
        codes = self.stream.encode_step(audio)
        text, system = self.session.step(codes, self.stream.voice if self._user_voice else None)
        out = self.stream.decode_step(system)[:, 0]
        return StepOutput(out, text.clone(), self.session.heard.clone(), time.perf_counter() - start)


class InputBuffer:
    """One client's microphone samples waiting for the clock: at most `max_samples` (beyond that the
    oldest are dropped and counted: a burst cannot add latency or memory); a step that finds less
    than a frame takes silence and counts it as missing (a stall does not stop the batch)."""

    def __init__(self, frame_samples: int, max_samples: int) -> None:
        if max_samples < frame_samples:
            raise ValueError(f"InputBuffer: max_samples {max_samples} < one frame ({frame_samples})")
        self.frame_samples, self.max_samples = frame_samples, max_samples
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self.buffered = 0
        self.received = 0  # samples pushed
        self.consumed = 0  # samples taken by steps (the client's clock: its audio up to here was heard)
        self.dropped = 0  # samples dropped from a full buffer
        self.missing_steps = 0  # steps that took silence

    def push(self, samples: np.ndarray) -> None:
        """samples [n] float32."""
        if samples.size == 0:
            return
        self._chunks.append(samples)
        self.buffered += samples.size
        self.received += samples.size
        excess = self.buffered - self.max_samples
        if excess > 0:
            self.dropped += excess
            self.consumed += excess  # dropped audio is behind the clock too
            self._take(excess)

    def pop_frame(self) -> np.ndarray | None:
        """One frame [frame_samples], or None (stall: the caller plays silence)."""
        if self.buffered < self.frame_samples:
            self.missing_steps += 1
            return None
        self.consumed += self.frame_samples
        return self._take(self.frame_samples)

    def _take(self, n: int) -> np.ndarray:
        parts, need = [], n
        while need:
            head = self._chunks[0]
            if head.size <= need:
                parts.append(self._chunks.popleft())
                need -= head.size
            else:
                parts.append(head[:need])
                self._chunks[0] = head[need:]
                need = 0
        self.buffered -= n
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class PieceText:
    """Text tokens, one per step → display text: a word piece, with a leading space where a word
    starts (a "▁" piece, or any piece after PAD/EPAD: the convention of `layout.text_stream_words`)."""

    def __init__(self, tokenizer: TextTokenizer) -> None:
        self.tokenizer = tokenizer
        self.previous = TextTokenizer.PAD

    def __call__(self, token: int) -> str:
        tok, prev = int(token), self.previous
        self.previous = tok
        if not self.tokenizer.is_piece(tok):
            return ""
        piece = self.tokenizer.piece(tok)
        if piece.startswith(WORD_START):
            return " " + piece[len(WORD_START):]
        return (" " if not self.tokenizer.is_piece(prev) else "") + piece


class SlotTable:
    """Which slots are free; the lowest free one is handed out first."""

    def __init__(self, slots: int) -> None:
        self.free = list(range(slots))

    def acquire(self) -> int | None:
        if not self.free:
            return None
        self.free.sort()
        return self.free.pop(0)

    def release(self, slot: int) -> None:
        if slot in self.free:
            raise ValueError(f"slot {slot} is already free")
        self.free.append(slot)


def pcm16_bytes(audio: torch.Tensor) -> bytes:
    """[n] float in [-1, 1] → little-endian PCM16 bytes (clipped)."""
    return (audio.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().astype("<i2").tobytes()
