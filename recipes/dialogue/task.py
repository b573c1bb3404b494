"""The dialogue model's training task for the shared trainer (`recipes.trainer`).

Batches are whole conversations (cropped to `crop_steps` when longer), delayed as the model
config says, padded to the longest in the batch with a step mask; the batch for a step is a
function of (seed, step, rank), so a resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from dialogue import (Columns, DialogueConfig, DuplexModel, LossWeights, TextTokenizer, delay_tokens, dialogue_description,
                      duplex_loss, load_dialogue, save_dialogue)
from dialogue.layout import delay_rows, user_text_targets

from ..trainer import LossTerm, TrainerConfig, TrainingTask
from .prepare import TokenSet

INIT_ADAPTATIONS = ("codec", "user_voice")  # the differences DialogueTrainConfig.init_adapt may allow


@dataclasses.dataclass
class DialogueTrainConfig:
    tokens: str = "exp/tokens/train.safetensors"
    # more token files (same codec, made with the same tokenizer model) whose conversations join `tokens`' in one
    # pool, drawn uniformly: a mix of corpora, e.g. rate-varied and pitch-only styles
    more_tokens: list[str] = dataclasses.field(default_factory=list)
    tokenizer: str = "exp/tokenizer.model"
    model: DialogueConfig = dataclasses.field(default_factory=DialogueConfig)  # streams: from the token file
    loss: LossWeights = dataclasses.field(default_factory=LossWeights)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    batch_size: int = 8
    crop_steps: int = 250  # longest training sequence in dialogue steps (250 = 20 s at 12.5 Hz)
    p_crop_from_start: float = 0.5  # a crop of a long conversation starts at step 0 this often (BOS seen)
    # with model.user_text_input: this fraction of the transcript fed back is corrupted (half a random
    # word piece, half PAD), so the model learns to live with its listening head's mistakes
    heard_noise: float = 0.0
    # this fraction of the system's own audio tokens in the history the model reads is replaced by random
    # codes (the targets stay clean): free-running, that history is the model's own samples, not TTS audio
    own_audio_noise: float = 0.0
    # only at the steps where the system speaks (one of its K tokens is not the silence token), so its
    # silence stays exact (it did not win back the yielding the noise costs: egs/mini/dialogue1/RESULTS.md)
    own_audio_noise_speech_only: bool = False
    # this fraction of the spoken conversations in a batch read back, as the system's audio, the model's
    # own teacher-forced sample of it (at own_audio_sampled_temperature; an extra forward pass without
    # gradients): free-running it reads its own voice, not the corpus's (`evaluate --predicted system`)
    own_audio_sampled: float = 0.0
    own_audio_sampled_temperature: float = 0.8
    # a trained dialogue checkpoint (e.g. dialogue/assets/dialogue.safetensors) whose weights a new run starts
    # from instead of a random init: fine-tuning a released model, whose optimizer state is not released.
    # Its config, tokenizer and codec must be this run's; a run resumed from its own checkpoints ignores it.
    init_from: str = ""
    # how init_from may differ from this run, each named on purpose: "codec" (it was trained on another
    # codec's tokens; this run re-learns what the tokens mean) and "user_voice" (it hears the user's voice
    # vector and this run does not: the style ablation of a fine-tuned model, the input's weights dropped)
    init_adapt: list[str] = dataclasses.field(default_factory=list)

    def check(self) -> None:
        """Settings that cannot train, named (before the token file is read)."""
        unknown = sorted(set(self.init_adapt) - set(INIT_ADAPTATIONS))
        if unknown:
            raise ValueError(f"DialogueTrainConfig.init_adapt: unknown {unknown}, expected some of "
                             f"{list(INIT_ADAPTATIONS)}")
        for name in ("heard_noise", "own_audio_noise", "own_audio_sampled"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"DialogueTrainConfig.{name} is {getattr(self, name)}, expected a fraction in [0, 1)")
        if self.own_audio_sampled_temperature < 0:
            raise ValueError(f"DialogueTrainConfig.own_audio_sampled_temperature is "
                             f"{self.own_audio_sampled_temperature}, expected ≥ 0 (0: argmax)")


def model_config(cfg: DialogueTrainConfig, data: TokenSet, tokenizer: TextTokenizer) -> DialogueConfig:
    if data.streams.text_vocab_size != tokenizer.vocab_size:
        raise ValueError(f"{data.path}: made with a {data.streams.text_vocab_size}-piece tokenizer, "
                         f"{cfg.tokenizer} has {tokenizer.vocab_size}")
    return dataclasses.replace(cfg.model, streams=data.streams)


class DialogueTask(TrainingTask):
    def __init__(self, cfg: DialogueTrainConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.data = TokenSet(cfg.tokens)
        for path in cfg.more_tokens:
            self.data.extend(TokenSet(path))
        self.tokenizer = TextTokenizer.load(cfg.tokenizer)
        self.model_cfg = model_config(cfg, self.data, self.tokenizer)
        self.model_cfg.check()

    def build_model(self) -> nn.Module:
        model = DuplexModel(self.model_cfg)
        if self.cfg.init_from:
            model.load_state_dict(self.initial_weights())
        return model

    def initial_weights(self) -> dict[str, torch.Tensor]:
        """`init_from`'s weights, once it is checked to be a model of this run's shape, words and tokens
        (less the differences `init_adapt` names)."""
        adapt = set(self.cfg.init_adapt)
        src = load_dialogue(self.cfg.init_from, codec_id=None if "codec" in adapt else self.data.codec_id)
        here = dataclasses.asdict(self.model_cfg)
        there = dataclasses.asdict(src.model.cfg)
        if "codec" in adapt:  # another codec's silence is another token
            there["streams"]["silence_token"] = here["streams"]["silence_token"]
        drop_voice = "user_voice" in adapt and src.model.cfg.user_voice and not self.model_cfg.user_voice
        differ = [f"{k}: {v!r} there, {here[k]!r} here" for k, v in there.items()
                  if k != "name" and v != here[k] and not (k == "user_voice" and drop_voice)]
        if differ:
            raise ValueError(f"init_from {self.cfg.init_from}: another model config ({'; '.join(differ)})")
        if src.tokenizer.proto != self.tokenizer.proto:
            raise ValueError(f"init_from {self.cfg.init_from}: trained with another tokenizer than {self.cfg.tokenizer}")
        state = src.model.state_dict()
        if drop_voice:
            state = {k: v for k, v in state.items() if not k.startswith("user_voice_proj.")}
        return state

    def lineage(self) -> str:
        """What an exported model says of where its training started (empty for a random init)."""
        if not self.cfg.init_from:
            return ""
        adapted = f" [{', '.join(self.cfg.init_adapt)} changed]" if self.cfg.init_adapt else ""
        return f", fine-tuned from {self.cfg.init_from}{adapted} ({dialogue_description(self.cfg.init_from)})"

    def batches(self, start_step: int, rank: int, world_size: int) -> Iterator[dict]:
        step = start_step
        while True:
            yield self.batch(step, rank)
            step += 1

    def _step_generator(self, step: int, salt: int) -> torch.Generator:
        """The random stream of one step's draws (a function of seed and step, so a resume is exact);
        `salt` keeps the streams of a step's batch (per rank) and its loss-time sampling apart."""
        return torch.Generator().manual_seed(self.cfg.trainer.seed * 1_000_003 + step * 7919 + salt)

    def batch(self, step: int, rank: int = 0) -> dict:
        """The batch of a training step (deterministic in seed, step and rank)."""
        g = self._step_generator(step, rank * 104_729)
        picks = torch.randint(0, len(self.data), (self.cfg.batch_size,), generator=g).tolist()
        batch = collate(self.data, picks, self.model_cfg, self.cfg.crop_steps, self.cfg.p_crop_from_start, g)
        if self.model_cfg.user_text_input and self.cfg.heard_noise > 0:
            batch["heard"] = corrupt_transcript(batch["user_text"], self.cfg.heard_noise,
                                                self.model_cfg.streams.text_vocab_size, g)
        if self.cfg.own_audio_noise > 0:
            history = corrupt_own_audio(batch["tokens"], Columns(self.model_cfg.streams.frames_per_step),
                                        self.cfg.own_audio_noise, self.model_cfg.streams.codebook_size, g,
                                        self.model_cfg.streams.silence_token
                                        if self.cfg.own_audio_noise_speech_only else None)
            batch["history"] = history
        return batch

    def losses(self, model: DuplexModel, batch: dict, step: int) -> Iterator[LossTerm]:
        heard = batch.get("heard", batch.get("user_text"))  # the transcript fed back (user_text_input)
        history = batch.get("history")
        if self.cfg.own_audio_sampled > 0:
            g = self._step_generator(step, 17)
            draws = torch.rand(len(batch["tokens"]), generator=g) < self.cfg.own_audio_sampled  # CPU: the generator's
            history = own_audio_history(model, batch, heard, history, draws.to(batch["tokens"].device),
                                        self.cfg.own_audio_sampled_temperature, g)
        logits = model(batch["tokens"], batch["user_voice"], batch["system_voice"], heard, history)
        loss, scalars = duplex_loss(model, logits, batch["tokens"], batch["mask"], self.cfg.loss, batch.get("user_text"))
        yield LossTerm("main", loss, scalars)

    def system_voice(self) -> torch.Tensor:
        """The G_sys a trained model is saved with: the mean over the training conversations."""
        return self.data.system_voice.mean(0)


def collate(data: TokenSet, picks: list[int], model_cfg: DialogueConfig, crop_steps: int,
            p_crop_from_start: float = 1.0, g: torch.Generator | None = None) -> dict:
    """Conversations `picks` (indices) of `data` → a model batch: delayed grids cropped to `crop_steps` (a long one
    from a random start drawn from `g` unless it starts at 0, with probability `p_crop_from_start`; always from 0
    without `g`), padded to the longest with a step mask. With a listening head, also the user's words on the head's
    clock ("user_text")."""
    cols = Columns(model_cfg.streams.frames_per_step)
    delays, fills = cols.delays(model_cfg.delays), cols.fills(model_cfg.streams)
    listen = model_cfg.user_text_delay is not None
    if listen and data.user_text is None:
        raise ValueError(f"{data.path} has no user_text stream (made before the listening head existed): "
                         f"rerun recipes.dialogue.prepare tokens, or train with model.user_text_delay=null")
    items, heard = [], []
    for pick in picks:
        grid, user_voice, g_sys = data.tokens[pick], data.user_voice[pick], data.system_voice[pick]
        user_text = data.user_text[pick] if listen else None
        tokens = delay_tokens(grid, delays, fills)
        voice = delay_rows(user_voice, model_cfg.delays.user, tokens.shape[0])
        if listen:
            heard.append(user_text_targets(user_text, model_cfg.delays, model_cfg.user_text_delay, tokens.shape[0]))
        start = 0
        extra = tokens.shape[0] - crop_steps
        if extra > 0 and g is not None and float(torch.rand((), generator=g)) >= p_crop_from_start:
            start = int(torch.randint(0, extra + 1, (), generator=g))
        end = start + min(tokens.shape[0], crop_steps)
        items.append((tokens[start:end], voice[start:end], g_sys))
        if listen:
            heard[-1] = heard[-1][start:end]
    length = max(t.shape[0] for t, _, _ in items)
    b = len(items)
    out_tokens = torch.tensor(fills).expand(b, length, cols.width).clone()
    out_voice = torch.zeros(b, length, model_cfg.streams.voice_dim)
    mask = torch.zeros(b, length, dtype=torch.bool)
    for j, (t, v, _) in enumerate(items):
        out_tokens[j, :t.shape[0]] = t
        out_voice[j, :t.shape[0]] = v
        out_voice[j, t.shape[0]:] = v[-1]
        mask[j, :t.shape[0]] = True
    batch = {"tokens": out_tokens, "user_voice": out_voice, "mask": mask,
             "system_voice": torch.stack([s for _, _, s in items])}
    if listen:
        batch["user_text"] = torch.full((b, length), TextTokenizer.PAD, dtype=torch.long)
        for j, u in enumerate(heard):
            batch["user_text"][j, :u.shape[0]] = u
    return batch


def corrupt_transcript(text: torch.Tensor, p: float, vocab_size: int, g: torch.Generator | None = None) -> torch.Tensor:
    """A copy of a text stream [B, S] with each step replaced, with probability p/2 each, by a random word
    piece or by PAD: the mistakes a listening head makes (substitutions, insertions, deletions)."""
    r = torch.rand(text.shape, generator=g)
    pieces = torch.randint(max(TextTokenizer.SPECIAL) + 1, vocab_size, text.shape, generator=g)
    out = torch.where(r < p / 2, pieces, text)
    return torch.where((r >= p / 2) & (r < p), TextTokenizer.PAD, out)


def corrupt_own_audio(tokens: torch.Tensor, cols: Columns, p: float, codebook_size: int,
                      g: torch.Generator | None = None, silence_token: int | None = None) -> torch.Tensor:
    """A copy of a delayed grid [B, S, 1 + 2K] with each of the system's audio tokens replaced, with
    probability p, by a random code: the history a sampling model reads back is not the clean TTS audio.
    With silence_token, steps whose K system tokens are all silence are left as they are."""
    out = tokens.clone()
    system = out[..., cols.system]
    r = torch.rand(system.shape, generator=g)
    codes = torch.randint(0, codebook_size, system.shape, generator=g)
    hit = r < p
    if silence_token is not None:
        hit &= (system != silence_token).any(dim=-1, keepdim=True)
    out[..., cols.system] = torch.where(hit, codes, system)
    return out


def sample_codes(logits: torch.Tensor, temperature: float, g: torch.Generator | None = None) -> torch.Tensor:
    """logits [..., V] → codes [...]: sampled at `temperature` (argmax at 0)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = (logits.float() / temperature).softmax(-1)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=g).view(probs.shape[:-1])


@torch.no_grad()
def own_audio_history(model: DuplexModel, batch: dict, heard: torch.Tensor | None, history: torch.Tensor | None,
                      rows: torch.Tensor, temperature: float, g: torch.Generator | None = None) -> torch.Tensor:
    """The grid the temporal transformer reads (`history`, default the batch's tokens) with the system
    audio of `rows` [B] (bool) replaced by the model's teacher-forced sample of it (from the clean grid)."""
    base = batch["tokens"] if history is None else history
    if not rows.any():
        return base
    picked = rows.nonzero().squeeze(1)
    logits = model(batch["tokens"][picked], batch["user_voice"][picked], batch["system_voice"][picked],
                   None if heard is None else heard[picked])
    out = base.clone()
    sys_cols = model.columns.system
    out[picked, :, sys_cols] = sample_codes(logits.system, temperature, g).to(out.dtype)
    return out


def export(task: DialogueTask, model: DuplexModel, out: Path, description: str) -> None:
    save_dialogue(out, model, task.tokenizer, task.data.codec_id, task.system_voice(), description)
