"""Codec training losses that are the project's own: frame-level symmetric InfoNCE, hinged KL and the
perturbed/clean view consistency, FSQ code agreement and the frame phone classifier's cross-entropy.
Spectral and adversarial losses come from auraloss and encodec (see task.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_infonce(speech: torch.Tensor, text: torch.Tensor, valid: torch.Tensor, temperature: float = 0.1,
                  max_frames: int = 1024) -> torch.Tensor:
    """Symmetric InfoNCE between speech frames [B, T, D] and text frames [B, T, D] over the valid
    frames of the batch (each frame's positive is its own text frame; every other frame is a negative)."""
    s = F.normalize(speech[valid], dim=-1)
    t = F.normalize(text[valid], dim=-1)
    if s.shape[0] < 2:
        return speech.sum() * 0.0
    if s.shape[0] > max_frames:  # bound the N×N similarity matrix
        keep = torch.randperm(s.shape[0], device=s.device)[:max_frames]
        s, t = s[keep], t[keep]
    logits = s @ t.T / temperature
    target = torch.arange(s.shape[0], device=s.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def hinged_kl(mu: torch.Tensor, logvar: torch.Tensor, free_nats: float) -> torch.Tensor:
    """KL(N(mu, σ²) || N(0, 1)) per element, averaged, with the part below `free_nats` not penalised."""
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return F.relu(kl.mean() - free_nats)


def view_consistency(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between two time-aligned views' latents [B, T, L], over their mean per-dimension
    variance across frames (detached): 0 when the views agree, 1 for as far apart as two random frames'
    halves; shrinking both latents leaves it unchanged."""
    spread = 0.5 * (a.detach().flatten(0, 1).var(0) + b.detach().flatten(0, 1).var(0)).mean().clamp_min(1e-6)
    return (a - b).pow(2).mean() / spread


def code_agreement(mu: torch.Tensor, mu_reference: torch.Tensor, levels, margin: float = 0.25) -> torch.Tensor:
    """Token-level invariance for FSQ: both views' bounded latents [B, T, L] are pulled inside the reference
    view's bin, to within `margin` of its centre (bins are 1 wide on FSQ's grid), with a squared hinge.
    Zero once every frame's digits of both views sit well inside the same bin, so small changes of the input
    (another pitch, -50 dB of noise) no longer flip tokens; the mean-squared `view_consistency` alone lets
    the latents sit on bin boundaries, where they flip at random."""
    from kernels.reference import fsq_bound

    lv = torch.tensor(list(levels), device=mu.device, dtype=torch.float32)
    if mu.shape != mu_reference.shape or mu.shape[-1] != len(lv):
        raise ValueError(f"code_agreement: views of shapes {tuple(mu.shape)} and {tuple(mu_reference.shape)} for "
                         f"{len(lv)} FSQ levels")
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"code_agreement: margin {margin} must be in [0, 0.5)")
    b, b_ref = fsq_bound(mu.float(), lv), fsq_bound(mu_reference.float(), lv)
    centre = b_ref.detach().round()
    slack = 0.5 - margin
    return 0.5 * (F.relu((b - centre).abs() - slack).pow(2).mean() + F.relu((b_ref - centre).abs() - slack).pow(2).mean())


def phone_recognition_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of frame phone logits [B, T, U] against the phone timings [B, T] (-1: no transcript, left
    out), and the frame accuracy (NaN without transcripts), both 0-d tensors: no host sync. A batch without
    transcripts gives zero with a gradient path. Phone ids are checked against U once, by the task."""
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"phone_recognition_loss: logits {tuple(logits.shape)} for labels {tuple(labels.shape)}")
    valid = labels >= 0
    ce = F.cross_entropy(logits.float().transpose(1, 2), labels.clamp_min(0).long(), reduction="none")
    count = valid.sum()
    loss = (ce * valid).sum() / count.clamp_min(1)
    correct = ((logits.argmax(-1) == labels) & valid).sum()
    accuracy = torch.where(count > 0, correct / count.clamp_min(1), torch.full_like(loss, float("nan")))
    return loss, accuracy.detach()


def posterior_consistency(logits: torch.Tensor, logits_reference: torch.Tensor) -> torch.Tensor:
    """Symmetric KL between two time-aligned views' frame posteriors [B, T, U], averaged over frames: 0 when
    the classifier says the same thing, with the same confidence, whichever view it hears."""
    if logits.shape != logits_reference.shape:
        raise ValueError(f"posterior_consistency: views of shapes {tuple(logits.shape)} and {tuple(logits_reference.shape)}")
    a, b = F.log_softmax(logits.float(), -1), F.log_softmax(logits_reference.float(), -1)
    return 0.5 * ((a.exp() * (a - b)).sum(-1) + (b.exp() * (b - a)).sum(-1)).mean()


def warmup(step: int, start: int, length: int) -> float:
    """0 before `start`, then a linear ramp to 1 over `length` steps."""
    if step < start:
        return 0.0
    return min(1.0, (step - start + 1) / max(1, length))
