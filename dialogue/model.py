"""The full-duplex dialogue model: a temporal transformer over dialogue steps and a depth transformer
inside each step (Moshi's RQ-Transformer layout).

Step t's temporal input is the sum of embeddings of the previous step's text token and system audio
tokens, the current step's user audio tokens (K per-position tables each, or with `user_encoder` a
causal encoding of them at the codec frame rate), and optionally projections
of the user's running paralinguistic vector and of the system voice G_sys. The depth transformer
then predicts, position by position, the text token and the system's K audio tokens of step t (and,
with `predict_user`, the user's K tokens of step t + 1), with per-position input projections, input
embeddings and output heads. An optional listening head (`user_text_delay`) transcribes the user from
the temporal state alone; with `user_text_input` its previous piece is also an input of the next
step. Offline (`forward`) everything is teacher-forced; streaming (`step_hidden` + `depth_step`
inside `model.streaming(B)`) the temporal transformer keeps a ring KV cache across steps and the
depth transformer a K+1-slot cache that is cleared every step.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from codec.streaming import StreamingModule
from codec.transformer import CausalTransformer

from .config import DialogueConfig
from .layout import Columns
from .tokenizer import TextTokenizer
from .user_encoder import UserFrameEncoder


def previous_steps(stream: torch.Tensor, first: int) -> torch.Tensor:
    """A stream [B, S, ...] shifted one step later: step t holds step t - 1, step 0 holds `first`."""
    return torch.cat([stream.new_full((stream.shape[0], 1, *stream.shape[2:]), first), stream[:, :-1]], dim=1)


class CodeEmbedding(nn.Module):
    """Codec tokens at P positions → per-position embeddings. Full (Moshi): one table per position.
    Factorised (`rank`): one codebook table of width `rank`, shared by every position and stream
    (the K tokens of a step are the same single codebook at consecutive frames), then a
    per-position projection — per-position weights at a fraction of the parameters."""

    def __init__(self, num_codes: int, positions: int, dim: int, rank: int | None, shared: nn.Embedding | None):
        super().__init__()
        if rank is None:
            self.tables = nn.ModuleList(nn.Embedding(num_codes, dim) for _ in range(positions))
        else:
            self.shared = [shared]  # a list: the table is registered once, by its owner
            self.proj = nn.ModuleList(nn.Linear(rank, dim, bias=False) for _ in range(positions))

    def embed(self, p: int, tokens: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "tables"):
            return self.tables[p](tokens)
        return self.proj[p](self.shared[0](tokens))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [..., P] → the sum of the P position embeddings [..., dim]."""
        return sum(self.embed(p, tokens[..., p]) for p in range(tokens.shape[-1]))


class CodeHead(nn.Module):
    """Per-position output heads over the codebook: full (a Linear per position) or factorised
    (a per-position Linear to `rank`, then one shared Linear to the codebook)."""

    def __init__(self, dim: int, num_codes: int, positions: int, rank: int | None) -> None:
        super().__init__()
        width = num_codes if rank is None else rank
        self.heads = nn.ModuleList(nn.Linear(dim, width, bias=False) for _ in range(positions))
        self.out = nn.Linear(rank, num_codes) if rank is not None else None

    def forward(self, p: int, h: torch.Tensor) -> torch.Tensor:
        y = self.heads[p](h)
        return y if self.out is None else self.out(y)


@dataclasses.dataclass
class DuplexLogits:
    text: torch.Tensor  # [B, S, text_vocab]
    system: torch.Tensor  # [B, S, K, codebook]
    user: torch.Tensor | None  # [B, S, K, codebook] predictions of the user's next step (predict_user)
    user_text: torch.Tensor | None = None  # [B, S, text_vocab] the listening head (user_text_delay)


class DuplexModel(StreamingModule):
    def __init__(self, cfg: DialogueConfig) -> None:
        super().__init__()
        cfg.check()
        self.cfg = cfg
        s = cfg.streams
        k, c, dt, dd = s.frames_per_step, s.codebook_size, cfg.temporal.dim, cfg.depth.dim
        self.columns = Columns(k)
        self.audio_bos = c  # input-only audio id: "before the first step"
        r = cfg.audio_rank
        self.codes = nn.Embedding(c + 1, r) if r is not None else None  # shared codebook table (factorised)
        self.text_emb = nn.Embedding(s.text_vocab_size, dt)
        self.system_emb = CodeEmbedding(c + 1, k, dt, r, self.codes)
        self.user_emb = CodeEmbedding(c, k, dt, r, self.codes) if cfg.user_encoder is None \
            else UserFrameEncoder(cfg.user_encoder, c, k, dt, r, self.codes)
        self.user_voice_proj = nn.Linear(s.voice_dim, dt) if cfg.user_voice else None
        self.system_voice_proj = nn.Linear(s.voice_dim, dt) if cfg.system_voice else None
        self.temporal = CausalTransformer(cfg.temporal)
        p = cfg.depth_positions
        self.depth_in = nn.ModuleList(nn.Linear(dt, dd) for _ in range(p))
        self.depth_text_emb = nn.Embedding(s.text_vocab_size, dd)  # input of position 1
        self.depth_audio_emb = CodeEmbedding(c, p - 2, dd, r, self.codes)  # inputs of positions 2 .. P-1
        self.depth = CausalTransformer(dataclasses.replace(cfg.depth, window=p, max_step=p))
        self.text_head = nn.Linear(dd, s.text_vocab_size, bias=False)
        self.audio_head = CodeHead(dd, c, p - 1, r)
        # listening: what the user said, read off the temporal state (an auxiliary target that makes
        # the state carry the user's words; in a session, a streaming transcript of the user)
        self.user_text_head = nn.Linear(dt, s.text_vocab_size, bias=False) if cfg.user_text_delay is not None else None
        self.heard_emb = nn.Embedding(s.text_vocab_size, dt) if cfg.user_text_input else None  # its previous output

    # --- temporal ---------------------------------------------------------------------------------
    def embed_steps(self, prev_text: torch.Tensor, prev_system: torch.Tensor, user: torch.Tensor,
                    user_voice: torch.Tensor | None, system_voice: torch.Tensor | None,
                    prev_heard: torch.Tensor | None = None) -> torch.Tensor:
        """prev_text [B, S], prev_system [B, S, K], user [B, S, K], user_voice [B, S, D], system_voice
        [B, D], prev_heard [B, S] (the listening head's previous piece, with `user_text_input`) →
        temporal input [B, S, dim]."""
        x = self.text_emb(prev_text) + self.system_emb(prev_system) + self.user_emb(user)
        if self.heard_emb is not None:
            if prev_heard is None:
                raise ValueError(f"{self.cfg.name} reads its transcript of the user back (user_text_input=True); "
                                 f"pass heard [B, S]: the user's word pieces on the listening head's clock")
            x = x + self.heard_emb(prev_heard)
        if self.user_voice_proj is not None:
            if user_voice is None:
                raise ValueError(f"{self.cfg.name} is conditioned on the user's voice (user_voice=True); "
                                 f"pass user_voice [B, S, {self.cfg.streams.voice_dim}]")
            x = x + self.user_voice_proj(user_voice)
        if self.system_voice_proj is not None:
            if system_voice is None:
                raise ValueError(f"{self.cfg.name} is conditioned on the system voice (system_voice=True); "
                                 f"pass system_voice [B, {self.cfg.streams.voice_dim}]")
            x = x + self.system_voice_proj(system_voice)[:, None]
        return x

    def temporal_inputs(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Delayed grid [B, S, 1 + 2K] → (prev_text [B, S], prev_system [B, S, K], user [B, S, K]):
        text and system shifted one step later behind BOS, the user's current step as is."""
        col = self.columns
        return (previous_steps(tokens[..., col.text], TextTokenizer.BOS),
                previous_steps(tokens[..., col.system], self.audio_bos), tokens[:, :, col.user])

    # --- depth ------------------------------------------------------------------------------------
    def depth_targets(self, tokens: torch.Tensor) -> torch.Tensor:
        """Delayed grid [B, S, 1 + 2K] → what each depth position predicts [B, S, P]; the user's
        next step at the last step is the silence fill."""
        col = self.columns
        parts = [tokens[..., col.text, None], tokens[..., col.system]]
        if self.cfg.predict_user:
            nxt = torch.cat([tokens[:, 1:, col.user],
                             tokens.new_full((tokens.shape[0], 1, col.k), self.cfg.streams.silence_token)], dim=1)
            parts.append(nxt)
        return torch.cat(parts, dim=-1)

    def _depth_input(self, q: int, h: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        x = self.depth_in[q](h)
        if q == 0:
            return x
        return x + (self.depth_text_emb(prev) if q == 1 else self.depth_audio_emb.embed(q - 2, prev))

    def _depth_logits(self, q: int, y: torch.Tensor) -> torch.Tensor:
        return self.text_head(y) if q == 0 else self.audio_head(q - 1, y)

    def forward(self, tokens: torch.Tensor, user_voice: torch.Tensor | None = None,
                system_voice: torch.Tensor | None = None, heard: torch.Tensor | None = None,
                history: torch.Tensor | None = None) -> DuplexLogits:
        """Teacher-forced logits for a delayed grid [B, S, 1 + 2K] (user_voice [B, S, D] delayed like
        the user stream, system_voice [B, D]; heard [B, S]: the transcript fed back with
        `user_text_input`, on the listening head's clock, i.e. `dialogue.layout.user_text_targets`).
        history: the grid the temporal transformer reads (default `tokens`), e.g. with its own audio
        corrupted as sampling will make it, while the targets stay `tokens`."""
        if self.is_streaming:
            raise RuntimeError("DuplexModel.forward is the offline path; inside streaming(...) use "
                               "step_hidden + depth_step (dialogue.session.DuplexSession)")
        if tokens.dim() != 3 or tokens.shape[-1] != self.columns.width:
            raise ValueError(f"tokens must be [B, S, {self.columns.width}], got {tuple(tokens.shape)}")
        prev_heard = None  # step t reads what the head heard at t - 1
        if heard is not None and self.heard_emb is not None:
            prev_heard = previous_steps(heard, TextTokenizer.PAD)
        if history is not None and history.shape != tokens.shape:
            raise ValueError(f"history must be shaped like tokens {tuple(tokens.shape)}, got {tuple(history.shape)}")
        inputs = self.temporal_inputs(tokens if history is None else history)
        h = self.temporal(self.embed_steps(*inputs, user_voice, system_voice, prev_heard))
        targets = self.depth_targets(tokens)
        b, s, p = targets.shape
        x = torch.stack([self._depth_input(q, h, targets[..., q - 1] if q else None) for q in range(p)], dim=2)
        y = self.depth(x.view(b * s, p, -1)).view(b, s, p, -1)
        k = self.columns.k
        text = self._depth_logits(0, y[:, :, 0])
        system = torch.stack([self._depth_logits(q, y[:, :, q]) for q in range(1, 1 + k)], dim=2)
        user = torch.stack([self._depth_logits(q, y[:, :, q]) for q in range(1 + k, p)], dim=2) if p > 1 + k else None
        return DuplexLogits(text, system, user, self.listen(h))

    def listen(self, h: torch.Tensor) -> torch.Tensor | None:
        """Temporal states [..., dim] → logits of the user's word pieces [..., text_vocab], on the grid's
        user clock delayed by `user_text_delay` steps (None without the listening head)."""
        return self.user_text_head(h) if self.user_text_head is not None else None

    # --- streaming --------------------------------------------------------------------------------
    def step_hidden(self, prev_text: torch.Tensor, prev_system: torch.Tensor, user: torch.Tensor,
                    user_voice: torch.Tensor | None = None, system_voice: torch.Tensor | None = None,
                    prev_heard: torch.Tensor | None = None) -> torch.Tensor:
        """One step through the temporal transformer's ring cache: prev_text [B], prev_system [B, K],
        user [B, K], user_voice [B, D], prev_heard [B] (the head's piece of the previous step) → hidden [B, dim]."""
        uv = user_voice[:, None] if user_voice is not None else None
        ph = prev_heard[:, None] if prev_heard is not None else None
        x = self.embed_steps(prev_text[:, None], prev_system[:, None], user[:, None], uv, system_voice, ph)
        return self.temporal(x)[:, 0]

    def depth_step(self, h: torch.Tensor, choose: Callable[[int, torch.Tensor], torch.Tensor],
                   out: torch.Tensor, positions: int | None = None) -> torch.Tensor:
        """Autoregress the depth transformer over one step: for q < positions, logits [B, V_q] →
        `choose(q, logits)` → token [B], written to out[:, q] ([B, ≥ positions] long). Returns out."""
        self.depth.reset()
        prev = None
        for q in range(positions or self.cfg.depth_positions):
            y = self.depth(self._depth_input(q, h, prev)[:, None])[:, 0]
            prev = choose(q, self._depth_logits(q, y))
            out[:, q] = prev
        return out
