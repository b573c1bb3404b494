"""Streaming full-duplex inference: one `step` per dialogue step for B parallel conversations.

    with DuplexSession(model, batch_size=2, system_voice=g_sys) as session:
        text, system = session.step(user_tokens, user_voice)   # [B, K] in → [B], [B, K] out

`step` feeds the user's K codec tokens of the step that just ended (teacher-forced from the
microphone) together with the text and system tokens the session emitted last step, advances the
temporal transformer's ring KV cache by one step (the codec streaming protocol), and samples the
next text token and the system's K audio tokens through the depth transformer. Sampling uses one
random generator per conversation, so a batch of B gives the same result as B single runs; every
buffer is allocated once, in the constructor. `reset(mask)` restarts chosen conversations only.
With a listening head, `session.heard` [B] holds the user's word piece (or PAD) it read off the
temporal state this step: a streaming transcript of the user, `delays.user + user_text_delay` steps
behind the user's audio (PAD until that lag has passed); with `user_text_input` it is read back as
the next step's input. With `trace_text`, `session.text_probs` [B, 3] holds the text distribution's
probability (temperature 1, before top-k) of the token chosen, of PAD and of EPAD: where a reply
stopped or a word was chosen, how sure the model was. Delays: the first `delays.system` steps of
system audio (and `delays.text` of text) are the stream's fill, as in training; the user stream's
delay is a small FIFO here. State follows `codec.streaming`: the model's ring caches plus the
session's own `SessionState`, with per-item `reset(mask)` (which also reseeds those items' random
generators) and strict `get_state`/`set_state` (generator states included), so a server can end one
conversation of a batch while the others go on.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Sequence

import torch

from codec.streaming import StateHolder, StreamingError, StreamingState

from .model import DuplexModel
from .tokenizer import TextTokenizer


@dataclasses.dataclass
class SamplingConfig:
    """Temperature ≤ 0 means greedy; top_k ≤ 0 means the whole vocabulary."""

    text_temperature: float = 0.7
    text_top_k: int = 25
    audio_temperature: float = 0.8
    audio_top_k: int = 250

    @classmethod
    def add_arguments(cls, parser) -> None:
        """The sampling options of every CLI (demo, server, scorer), defaulting to these settings: scored as shipped."""
        shipped = cls()
        parser.add_argument("--text-temperature", type=float, default=shipped.text_temperature, help="0: greedy")
        parser.add_argument("--text-top-k", type=int, default=shipped.text_top_k)
        parser.add_argument("--audio-temperature", type=float, default=shipped.audio_temperature)
        parser.add_argument("--audio-top-k", type=int, default=shipped.audio_top_k)

    @classmethod
    def from_args(cls, args) -> "SamplingConfig":
        return cls(args.text_temperature, args.text_top_k, args.audio_temperature, args.audio_top_k)


@dataclasses.dataclass
class SessionState(StreamingState):
    """The session's own per-conversation state (the model's ring caches hold the rest)."""

    prev_text: torch.Tensor  # [B] the text token emitted last step (BOS before the first)
    prev_system: torch.Tensor  # [B, K] the system tokens emitted last step (audio BOS before the first)
    steps: torch.Tensor  # [B] steps since the conversation's (re)start
    heard: torch.Tensor  # [B] the listening head's piece this step (PAD)
    user_fifo: torch.Tensor  # [B, delays.user + 1, K] the user stream's delay line (silence)
    voice_fifo: torch.Tensor  # [B, delays.user + 1, D] the user voice's delay line (zeros)
    fills: dict = dataclasses.field(default_factory=dict)  # field → its value in a fresh conversation

    def reset_value(self, name: str) -> float:
        return self.fills.get(name, 0)


class DuplexSession(StateHolder):
    def __init__(self, model: DuplexModel, batch_size: int = 1, sampling: SamplingConfig | None = None,
                 system_voice: torch.Tensor | None = None, seeds: int | Sequence[int] = 0,
                 trace_text: bool = False) -> None:
        self.model = model.eval()
        cfg = model.cfg
        self.cfg, self.batch_size = cfg, batch_size
        self.sampling = sampling or SamplingConfig()
        s = cfg.streams
        k, dev = s.frames_per_step, next(model.parameters()).device
        seeds = [seeds + b for b in range(batch_size)] if isinstance(seeds, int) else list(seeds)
        if len(seeds) != batch_size:
            raise ValueError(f"DuplexSession: {len(seeds)} seeds for batch_size={batch_size}")
        self.seeds = seeds
        self.generators = [torch.Generator(device=dev).manual_seed(int(x)) for x in seeds]
        self.system_voice = self._check_system_voice(system_voice, dev)
        # every per-step buffer, allocated once
        bos, pad, silence = TextTokenizer.BOS, TextTokenizer.PAD, s.silence_token
        self.state = SessionState(
            torch.full((batch_size,), bos, dtype=torch.long, device=dev),
            torch.full((batch_size, k), model.audio_bos, dtype=torch.long, device=dev),
            torch.zeros(batch_size, dtype=torch.long, device=dev),
            torch.full((batch_size,), pad, dtype=torch.long, device=dev),
            torch.full((batch_size, cfg.delays.user + 1, k), silence, dtype=torch.long, device=dev),
            torch.zeros(batch_size, cfg.delays.user + 1, s.voice_dim, device=dev),
            {"prev_text": bos, "prev_system": model.audio_bos, "heard": pad, "user_fifo": silence})
        self.heard_lag = cfg.delays.user + (cfg.user_text_delay or 0)  # steps before the head has heard anything
        self.out = torch.zeros(batch_size, cfg.depth_positions, dtype=torch.long, device=dev)
        self.text_probs = torch.zeros(batch_size, 3, device=dev) if trace_text else None  # chosen, PAD, EPAD
        self._noise = {"text": torch.empty(batch_size, s.text_vocab_size, device=dev),
                       "audio": torch.empty(batch_size, s.codebook_size, device=dev)}
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(model.streaming(batch_size))

    def _check_system_voice(self, voice: torch.Tensor | None, dev: torch.device) -> torch.Tensor | None:
        if not self.cfg.system_voice:
            return None
        d, b = self.cfg.streams.voice_dim, self.batch_size
        if voice is None or voice.shape[-1] != d or voice.numel() not in (d, b * d):
            raise ValueError(f"{self.cfg.name} is conditioned on a system voice: pass system_voice [{d}] or "
                             f"[{b}, {d}], got {None if voice is None else tuple(voice.shape)}")
        return voice.to(dev, torch.float32).reshape(-1, d).expand(b, d).clone()

    # the state's tensors, by their old names (views: read them, do not keep them across steps)
    prev_text = property(lambda self: self.state.prev_text)
    prev_system = property(lambda self: self.state.prev_system)
    steps = property(lambda self: self.state.steps)
    heard = property(lambda self: self.state.heard)
    user_fifo = property(lambda self: self.state.user_fifo)
    voice_fifo = property(lambda self: self.state.voice_fifo)

    # --- context ------------------------------------------------------------------------------
    def __enter__(self) -> "DuplexSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    # --- stepping -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, user_tokens: torch.Tensor, user_voice: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """user_tokens [B, K] (codec tokens of the user's last step), user_voice [B, D] (the codec's
        running voice vector after that step; needed when the model uses it) → (text token [B],
        system tokens [B, K]). The returned tensors are views of session buffers: copy to keep."""
        s = self.cfg.streams
        k = s.frames_per_step
        if user_tokens.shape != (self.batch_size, k):
            raise ValueError(f"user_tokens must be [{self.batch_size}, {k}], got {tuple(user_tokens.shape)}")
        self.user_fifo[:, :-1] = self.user_fifo[:, 1:].clone()
        self.user_fifo[:, -1] = user_tokens
        if self.cfg.user_voice:
            if user_voice is None:
                raise ValueError(f"{self.cfg.name} uses the user's voice: pass user_voice [{self.batch_size}, {s.voice_dim}]")
            self.voice_fifo[:, :-1] = self.voice_fifo[:, 1:].clone()
            self.voice_fifo[:, -1] = user_voice
            first = self.steps == 0  # the running vector holds its first value through the delay
            self.voice_fifo[first] = user_voice[first, None]
        h = self.model.step_hidden(self.prev_text, self.prev_system, self.user_fifo[:, 0],
                                   self.voice_fifo[:, 0] if self.cfg.user_voice else None, self.system_voice,
                                   self.heard if self.cfg.user_text_input else None)  # the previous step's
        if self.model.user_text_head is not None:  # nothing to hear before the head's lag has passed
            heard = self.model.listen(h).argmax(-1)
            self.heard.copy_(torch.where(self.steps < self.heard_lag, TextTokenizer.PAD, heard))
        self.model.depth_step(h, self._choose, self.out, positions=1 + k)
        self.prev_text.copy_(self.out[:, 0])
        self.prev_system.copy_(self.out[:, 1:1 + k])
        self.state.steps.add_(1)
        return self.prev_text, self.prev_system

    def _choose(self, q: int, logits: torch.Tensor) -> torch.Tensor:
        sp, d = self.sampling, self.cfg.delays
        if q == 0:
            token = self._sample(logits, sp.text_temperature, sp.text_top_k, self._noise["text"])
            token = torch.where(self.steps < d.text, TextTokenizer.PAD, token)
            if self.text_probs is not None:
                probs = logits.float().softmax(-1)
                ids = torch.stack([token, torch.full_like(token, TextTokenizer.PAD),
                                   torch.full_like(token, TextTokenizer.EPAD)], -1)
                self.text_probs.copy_(probs.gather(-1, ids))
            return token
        token = self._sample(logits, sp.audio_temperature, sp.audio_top_k, self._noise["audio"])
        return torch.where(self.steps < d.system, self.cfg.streams.silence_token, token)

    def _sample(self, logits: torch.Tensor, temperature: float, top_k: int, noise: torch.Tensor) -> torch.Tensor:
        if temperature <= 0:
            return logits.argmax(-1)
        logits = logits.float() / temperature
        if 0 < top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        for b, g in enumerate(self.generators):  # one stream of randomness per conversation
            noise[b].exponential_(generator=g)
        return (logits.softmax(-1) / noise).argmax(-1)  # exponential race: a sample from the softmax

    # --- per-conversation control (the streaming protocol) ---------------------------------------
    def named_states(self):
        yield "session", self.state
        for name, state in self.model.named_states():
            yield f"model/{name}", state

    @torch.no_grad()
    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Restart the conversations where mask [B] is True (all when None): their caches, previous
        tokens and delay FIFOs are cleared and their random generators reseeded (`seeds`), so a
        restarted conversation samples as a fresh session would; the others continue untouched."""
        m = torch.ones(self.batch_size, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool).cpu()
        if m.shape != (self.batch_size,):
            raise ValueError(f"reset: mask must be [{self.batch_size}] bool, got shape {tuple(m.shape)}")
        super().reset(None if mask is None else m.to(self.state.steps.device))
        for b in m.nonzero().flatten().tolist():
            self.generators[b].manual_seed(int(self.seeds[b]))

    def set_seed(self, b: int, seed: int) -> None:
        """Conversation b samples from `seed` from its next reset on (a server gives each new
        conversation its own)."""
        self.seeds[b] = int(seed)

    def get_state(self) -> dict[str, torch.Tensor]:
        """Snapshot of caches, buffers and random generators (for rewinding and replay)."""
        state = super().get_state()
        for b, g in enumerate(self.generators):
            state[f"rng/{b}"] = g.get_state()
        return state

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a `get_state` snapshot; unknown or missing keys (generators included) are an error."""
        rng = {f"rng/{b}" for b in range(self.batch_size)}
        missing = sorted(rng - set(state))
        if missing:
            raise StreamingError(f"DuplexSession.set_state: missing keys {missing[:5]} (the random generators)")
        super().set_state({k: v for k, v in state.items() if k not in rng})
        for b, g in enumerate(self.generators):
            g.set_state(state[f"rng/{b}"])
