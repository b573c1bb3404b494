"""Weighted cross-entropy of the dialogue model, per stream.

Text and audio are weighted apart; within the text stream PAD/EPAD targets (most steps) get their
own factor; within a step's K audio tokens the first (the step's onset frame, which carries the
decision to start or stop speaking) and the later ones are weighted apart; the optional user
prediction has its own weight.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .model import DuplexLogits, DuplexModel
from .tokenizer import TextTokenizer


@dataclasses.dataclass
class LossWeights:
    text: float = 1.0
    text_padding: float = 0.5  # factor on PAD / EPAD targets
    audio_first: float = 1.0  # the first of a step's K system tokens
    audio_rest: float = 1.0  # the other K - 1
    user: float = 0.5  # the user's next-step tokens (only with predict_user)


def duplex_loss(model: DuplexModel, logits: DuplexLogits, tokens: torch.Tensor, mask: torch.Tensor,
                weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """tokens: the delayed grid [B, S, 1 + 2K] the logits were computed from; mask [B, S] (bool) marks
    real steps. Returns (loss, scalars: per-stream cross-entropy and accuracy)."""
    targets = model.depth_targets(tokens)
    m = mask.float()
    k = model.columns.k
    text_t = targets[..., 0]
    pad = (text_t == TextTokenizer.PAD) | (text_t == TextTokenizer.EPAD)
    text_w = m * torch.where(pad, weights.text_padding, 1.0)
    text_ce = F.cross_entropy(logits.text.flatten(0, 1), text_t.flatten(), reduction="none").view_as(m)
    loss_text = (text_ce * text_w).sum() / text_w.sum().clamp(min=1)
    pos_w = torch.full((k,), weights.audio_rest, device=m.device)
    pos_w[0] = weights.audio_first
    sys_t = targets[..., 1:1 + k]
    sys_ce = F.cross_entropy(logits.system.flatten(0, 2), sys_t.flatten(), reduction="none").view_as(sys_t)
    sys_w = m[..., None] * pos_w
    loss_sys = (sys_ce * sys_w).sum() / sys_w.sum().clamp(min=1e-6)
    loss = weights.text * loss_text + loss_sys
    with torch.no_grad():
        scalars = {"loss/text": float(loss_text), "loss/system": float(loss_sys),
                   "acc/text": _accuracy(logits.text, text_t, m),
                   "acc/text_words": _accuracy(logits.text, text_t, m * (~pad).float()),
                   "acc/system": _accuracy(logits.system, sys_t, m[..., None].expand_as(sys_t))}
    if logits.user is not None:
        user_t = targets[..., 1 + k:]
        user_m = torch.cat([m[:, 1:], torch.zeros_like(m[:, :1])], dim=1)[..., None].expand_as(user_t)
        user_ce = F.cross_entropy(logits.user.flatten(0, 2), user_t.flatten(), reduction="none").view_as(user_t)
        loss_user = (user_ce * user_m).sum() / user_m.sum().clamp(min=1)
        loss = loss + weights.user * loss_user
        scalars["loss/user"] = float(loss_user.detach())
    scalars["loss"] = float(loss.detach())
    return loss, scalars


def _accuracy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> float:
    hit = (logits.argmax(-1) == target).float() * weight
    return float(hit.sum() / weight.sum().clamp(min=1))
