"""Text-only conversations for dialogue training: the corpus's tasks laid out on the grid, audio silent.

Why: trained on the 6000 synthetic conversations alone, the model learns the arithmetic of the
conversations it saw rather than the table. Teacher-forced, it gets the sum right in 1.00 of
training conversations and 0.55 of held-out ones, although those ask questions that the training
set asks too, and the words before the sum ("four plus two is") are the same tokens. The audio
tokens summed into every step let it recognise a conversation. Text-only conversations are drawn
fresh every step, so every table entry comes with nothing to recognise but the words. (Moshi gets
its text knowledge from starting with a text LM. We have no text LM, so we mix text into the
training batches.)

A text-only conversation is a few question → reply exchanges of `recipes.dialogue.tasks`. Word
durations are drawn from the corpus's own CTMs, per channel and word. The user's words are in the
user text stream (the listening head's targets and, with `user_text_input`, what the model reads
back). The system's words go in the inner monologue. Every audio column holds the silence token, and
the user's voice vector is zero. The loss keeps only the system text of these rows
(`duplex_loss(text_only=...)`): there is no audio to predict and nothing to transcribe.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from statistics import median

import torch

from dialogue import StreamConfig, TextTokenizer, Word, text_stream, text_stream_words

from ..ctm import read_ctm
from .synth import CorpusConfig, corpus_config
from .tasks import STYLES, TASKS, answer_positions, draw_exchange, reply_for


@dataclasses.dataclass
class TextDialogueConfig:
    per_batch: int = 0  # conversations of every training batch that are text-only (0: none)
    tasks: list[str] = dataclasses.field(default_factory=lambda: list(TASKS))
    min_turns: int = 2
    max_turns: int = 3

    def check(self, batch_size: int) -> None:
        if not 0 <= self.per_batch < batch_size:
            raise ValueError(f"text_dialogues.per_batch={self.per_batch}: must be in [0, batch_size="
                             f"{batch_size}), a batch keeps at least one spoken conversation")
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise ValueError(f"text_dialogues.tasks={self.tasks}: unknown {unknown}, known {sorted(TASKS)}")
        if not 1 <= self.min_turns <= self.max_turns:
            raise ValueError(f"text_dialogues: need 1 <= min_turns ({self.min_turns}) <= max_turns "
                             f"({self.max_turns})")


class WordDurations:
    """Durations (seconds) of each word as the corpus's TTS voices said it, per channel, and the gaps
    between the words of an utterance; a word the channel never said takes the channel's median."""

    def __init__(self, ctm_path: Path, max_gap: float = 0.25) -> None:
        if not ctm_path.is_file():
            raise FileNotFoundError(f"{ctm_path}: text-only conversations take their word durations from the "
                                    f"corpus's CTMs (the data dir of the token file)")
        self.words: dict[str, list[float]] = {}
        self.gaps: list[float] = []
        prev = None
        for e in read_ctm(ctm_path):
            self.words.setdefault(e.token, []).append(e.dur)
            if prev is not None and prev.utt == e.utt and 0 <= e.start - prev.end < max_gap:
                self.gaps.append(e.start - prev.end)
            prev = e
        if not self.words:
            raise ValueError(f"{ctm_path}: no words")
        self.fallback = median(d for ds in self.words.values() for d in ds)
        self.gaps = self.gaps or [0.05]

    def lay_out(self, words: tuple[str, ...], start: float, rng: random.Random) -> list[Word]:
        out, t = [], start
        for w in words:
            d = rng.choice(self.words[w]) if w in self.words else self.fallback
            out.append(Word(w, t, t + d))
            t += d + rng.choice(self.gaps)
        return out


@dataclasses.dataclass
class TextConversation:
    tokens: torch.Tensor  # the undelayed grid [S, 1 + 2K]: the inner monologue, every audio column silent
    user_text: torch.Tensor  # the user's words as a text stream [S] (the listening head's targets)
    answers: list[tuple[str, int]]  # (task, step of the answer word's first piece in the text column)


class TextDialogues:
    """Draws text-only conversations as undelayed grids (`draw`)."""

    def __init__(self, cfg: TextDialogueConfig, data_dir: str | Path, streams: StreamConfig,
                 tokenizer: TextTokenizer, corpus: CorpusConfig | None = None) -> None:
        data_dir = Path(data_dir)
        self.cfg, self.streams, self.tokenizer = cfg, streams, tokenizer
        self.corpus = corpus or corpus_config(data_dir)  # gaps and task draws as in the spoken corpus
        self.user = WordDurations(data_dir / "user.ctm")
        self.system = WordDurations(data_dir / "system.ctm")

    def words(self, rng: random.Random) -> tuple[list[Word], list[Word], list[tuple[str, int]]]:
        """(user words, system words, answer words as (task, index into the system words)) of one
        conversation: questions, each answered in the style drawn for the conversation."""
        style = STYLES[rng.choice(sorted(STYLES))]
        user, system, answers = [], [], []
        t = rng.uniform(0.4, 0.8)
        for _ in range(rng.randint(self.cfg.min_turns, self.cfg.max_turns)):
            ex = draw_exchange(rng.choice(self.cfg.tasks), rng, self.corpus.arithmetic_entries,
                               self.corpus.counting_reply, self.corpus.count_lengths)
            reply = reply_for(ex, style).words
            q = self.user.lay_out(ex.question.words, t, rng)
            r = self.system.lay_out(reply, q[-1].end + rng.uniform(*self.corpus.response_gap), rng)
            answers += [(ex.task, len(system) + i) for i in answer_positions(reply, ex.answer_words)]
            user += q
            system += r
            t = r[-1].end + rng.uniform(*self.corpus.turn_gap)
        return user, system, answers

    def draw(self, rng: random.Random, max_steps: int) -> TextConversation:
        """One conversation, S ≤ max_steps steps (its end plus 0.6 s, cut at max_steps)."""
        user, system, answers = self.words(rng)
        step = self.streams.step_seconds
        steps = min(max_steps, int((max(user[-1].end, system[-1].end) + 0.6) / step) + 1)
        k = self.streams.frames_per_step
        tokens = torch.full((steps, 1 + 2 * k), self.streams.silence_token, dtype=torch.long)
        tokens[:, 0] = text_stream(system, steps, step, self.tokenizer, self.streams.text_lead)
        onsets = [round(w.start / step) for w in text_stream_words(tokens[:, 0], step, self.tokenizer)]
        return TextConversation(tokens, text_stream(user, steps, step, self.tokenizer),
                                [(task, onsets[i]) for task, i in answers if i < len(onsets)])
