"""Turn splicing: new training conversations made of the turns of others, cut where both channels are silent.

Why: the corpus asks each arithmetic question in about a dozen conversations, and the model learns
those conversations rather than the table. Teacher-forced, it gets the sum right in 1.00 of
training conversations and 0.55 of held-out ones that ask the same questions. A spliced
conversation puts each exchange after other exchanges, so what precedes a question stops telling
the answer. Splicing works on the token grids and needs no new audio. The codec is causal, and every
cut lies in a silence of both channels at least `min_gap` long (between a reply or backchannel and
the next question), so each piece starts from silence, as the corpus does. Pieces come from
conversations in the same user style, so the user's running voice vector stays in place.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from .prepare import TokenSet


@dataclasses.dataclass
class SpliceConfig:
    p: float = 0.0  # probability that a training row is a spliced conversation (0: never)
    min_gap: float = 0.5  # seconds of silence on both channels to cut in (the corpus's turn gaps: 0.5–1.1 s)

    def check(self) -> None:
        if not 0.0 <= self.p <= 1.0 or self.min_gap <= 0:
            raise ValueError(f"splice: p={self.p} must be in [0, 1] and min_gap={self.min_gap} > 0")


@dataclasses.dataclass
class SplicedConversation:
    tokens: torch.Tensor  # undelayed grid [S, 1 + 2K]
    user_text: torch.Tensor  # [S]
    user_voice: torch.Tensor  # [S, D]
    pieces: list[tuple[int, int, int]]  # (conversation, first step, end step) of each piece, in order
    text_only: bool = False


def turn_cuts(meta: dict, step_seconds: float, num_steps: int, min_gap: float) -> list[int]:
    """Steps where a conversation can be cut: 0, the middle of every silence of both channels at least
    `min_gap` long between a turn's end (its reply, or a backchannel over it) and the next question,
    and num_steps. An interrupted reply runs into the next question: no cut there."""
    turns = meta["turns"]
    backchannel_ends = [b["end"] for b in meta["events"].get("backchannels", [])]
    cuts = [0]
    for turn, nxt in zip(turns, turns[1:]):
        if turn["interrupted"]:
            continue
        quiet = max([turn["reply_end"], turn["question_end"]]
                    + [e for e in backchannel_ends if turn["question_start"] < e <= nxt["question_start"]])
        if nxt["question_start"] - quiet >= min_gap:
            step = round((quiet + nxt["question_start"]) / 2 / step_seconds)
            if cuts[-1] < step < num_steps:
                cuts.append(step)
    return cuts + [num_steps]


class TurnSplicer:
    """Pieces of every conversation of a token file, by user style; `draw` joins some into one."""

    def __init__(self, data: TokenSet, cfg: SpliceConfig) -> None:
        meta_dir = Path(data.data_dir) / "meta"
        if not meta_dir.is_dir():
            raise FileNotFoundError(f"{meta_dir}: turn splicing needs the corpus metadata (turn times, style) "
                                    f"of the data dir {data.path} was made from")
        if data.user_text is None:
            raise ValueError(f"{data.path} has no user_text stream: rerun recipes.dialogue.prepare tokens")
        self.data, self.cfg = data, cfg
        self.first: list[tuple[int, int, int]] = []  # each conversation's first piece
        self.by_style: dict[str, list[tuple[int, int, int]]] = {}
        self.style: list[str] = []
        for i, utt in enumerate(data.ids):
            meta = json.loads((meta_dir / f"{utt}.json").read_text())
            cuts = turn_cuts(meta, data.streams.step_seconds, data.tokens[i].shape[0], cfg.min_gap)
            pieces = [(i, a, b) for a, b in zip(cuts, cuts[1:])]
            self.first.append(pieces[0])
            self.by_style.setdefault(meta["style"], []).extend(pieces[1:])
            self.style.append(meta["style"])

    def draw(self, g: torch.Generator, max_steps: int) -> SplicedConversation:
        """A conversation's first piece, then pieces of other conversations in its style (drawn from `g`)
        while the whole stays within max_steps (at least one more when there is any)."""
        start = int(torch.randint(0, len(self.first), (), generator=g))
        pool = self.by_style.get(self.style[start], [])
        pieces = [self.first[start]]
        length = pieces[0][2] - pieces[0][1]
        while pool:
            piece = pool[int(torch.randint(0, len(pool), (), generator=g))]
            if length + piece[2] - piece[1] > max_steps and len(pieces) > 1:
                break
            pieces.append(piece)
            length += piece[2] - piece[1]
        d = self.data
        return SplicedConversation(torch.cat([d.tokens[i][a:b] for i, a, b in pieces]),
                                   torch.cat([d.user_text[i][a:b] for i, a, b in pieces]),
                                   torch.cat([d.user_voice[i][a:b] for i, a, b in pieces]), pieces)
