"""Weighted cross-entropy of the dialogue model, per stream.

Text and audio are weighted apart; within the text stream PAD targets (most steps) get their own
factor, and so may EPAD targets (one per word: the decision that a word starts at the next step, e.g.
whether a count goes on); within a step's K audio tokens the first (the step's onset frame, which carries the
decision to start or stop speaking) and the later ones are weighted apart; the optional user
prediction and the listening head (the user's words, `user_text_delay`) have their own weights.
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
    text_epad: float | None = None  # factor on EPAD targets of the system's text (None: text_padding)
    audio_first: float = 1.0  # the first of a step's K system tokens
    audio_rest: float = 1.0  # the other K - 1
    user: float = 0.5  # the user's next-step tokens (only with predict_user)
    user_text: float = 0.5  # the listening head's transcript of the user (only with user_text_delay)


def duplex_loss(model: DuplexModel, logits: DuplexLogits, tokens: torch.Tensor, mask: torch.Tensor,
                weights: LossWeights, user_text: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """tokens: the delayed grid [B, S, 1 + 2K] the logits were computed from; mask [B, S] (bool) marks
    real steps; user_text [B, S]: the listening head's targets (`dialogue.layout.user_text_targets`),
    required when the model has the head.
    Returns (loss, scalars: per-stream cross-entropy and accuracy)."""
    targets = model.depth_targets(tokens)
    m = mask.float()
    k = model.columns.k
    loss_text, text_scalars = _text_loss(logits.text, targets[..., 0], m, weights.text_padding, "text",
                                         weights.text_epad)
    pos_w = torch.full((k,), weights.audio_rest, device=m.device)
    pos_w[0] = weights.audio_first
    sys_t = targets[..., 1:1 + k]
    sys_ce = F.cross_entropy(logits.system.flatten(0, 2), sys_t.flatten(), reduction="none").view_as(sys_t)
    sys_w = m[..., None] * pos_w
    loss_sys = (sys_ce * sys_w).sum() / sys_w.sum().clamp(min=1e-6)
    loss = weights.text * loss_text + loss_sys
    scalars = text_scalars | {"loss/system": float(loss_sys.detach()),
                              "acc/system": _accuracy(logits.system, sys_t, m[..., None].expand_as(sys_t))}
    if logits.user is not None:
        user_t = targets[..., 1 + k:]
        user_m = torch.cat([m[:, 1:], torch.zeros_like(m[:, :1])], dim=1)[..., None].expand_as(user_t)
        user_ce = F.cross_entropy(logits.user.flatten(0, 2), user_t.flatten(), reduction="none").view_as(user_t)
        loss_user = (user_ce * user_m).sum() / user_m.sum().clamp(min=1)
        loss = loss + weights.user * loss_user
        scalars["loss/user"] = float(loss_user.detach())
    if logits.user_text is not None:
        if user_text is None or user_text.shape != mask.shape:
            raise ValueError(f"{model.cfg.name} has a listening head (user_text_delay="
                             f"{model.cfg.user_text_delay}): pass user_text targets shaped like the mask "
                             f"{tuple(mask.shape)}, got {None if user_text is None else tuple(user_text.shape)}")
        loss_heard, heard = _text_loss(logits.user_text, user_text, m, weights.text_padding, "user_text")
        loss = loss + weights.user_text * loss_heard
        scalars |= heard
    scalars["loss"] = float(loss.detach())
    return loss, scalars


def _text_loss(logits: torch.Tensor, target: torch.Tensor, m: torch.Tensor, padding: float,
               name: str, epad: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of a text stream with PAD/EPAD targets weighted by `padding` (EPAD by `epad`
    when given); scalars: loss, accuracy over all steps, over word pieces only and over EPADs."""
    is_epad = target == TextTokenizer.EPAD
    pad = (target == TextTokenizer.PAD) | is_epad
    w = m * torch.where(pad, padding, 1.0)
    if epad is not None:
        w = torch.where(is_epad, m * epad, w)
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(m)
    loss = (ce * w).sum() / w.sum().clamp(min=1)
    with torch.no_grad():
        scalars = {f"loss/{name}": float(loss), f"acc/{name}": _accuracy(logits, target, m),
                   f"acc/{name}_words": _accuracy(logits, target, m * (~pad).float()),
                   f"acc/{name}_epad": _accuracy(logits, target, m * is_epad.float())}
    return loss, scalars


def _accuracy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> float:
    hit = (logits.argmax(-1) == target).float() * weight
    return float(hit.sum() / weight.sum().clamp(min=1))
