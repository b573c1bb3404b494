"""A pitch adversary for the semantic stage: a small causal conv net reads the semantic codes (or a
phones input's frame decisions, `straight_through_decisions`) and predicts log-F0, of each voiced frame
and of the whole crop; its gradient reaches the semantic branch reversed (gradient reversal, Ganin &
Lempitsky 2015), so the tokens lose what tells one pitch from another.

The view losses only ask each crop's tokens to match its own perturbed copy; a downstream model
still reads pitch from tokens that change *systematically* with it (the style ablation: 91 % of
styles found without the voice input). The adversary targets that dependence directly.

F0 comes from a batched autocorrelation tracker over the codec's own causal frames (frame t ends at
sample (t + 1)·hop), computed on the training step's tensors: torchaudio's `detect_pitch_frequency`
gives no voicing decision and its own framing.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_F0_CENTRE = math.log(150.0)  # the target is (log F0 − centre) / scale, about unit variance over voices
LOG_F0_SCALE = 0.4


def frame_f0(wav: torch.Tensor, n_fft: int, hop: int, sample_rate: int, f_min: float = 60.0, f_max: float = 400.0,
             voicing: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """wav [B, n_fft − hop + N] (a crop with its left context) → (F0 in Hz [B, N / hop], voiced [B, N / hop]).

    Per frame: the Hann-windowed autocorrelation, normalised by the window's own, and the shortest lag in
    [1/f_max, 1/f_min] whose peak is within 10 % of the highest (which avoids octave-down errors). A
    frame is voiced when that peak exceeds `voicing` and its energy is within 40 dB of the crop's loudest.
    """
    if wav.shape[-1] < n_fft or (wav.shape[-1] - n_fft) % hop:
        raise ValueError(f"frame_f0: {wav.shape[-1]} samples is not n_fft ({n_fft}) + a multiple of hop ({hop})")
    lo, hi = math.ceil(sample_rate / f_max), min(math.floor(sample_rate / f_min), n_fft // 2)
    frames = wav.unfold(-1, n_fft, hop)  # [B, T, n_fft]
    frames = frames - frames.mean(-1, keepdim=True)
    window = torch.hann_window(n_fft, periodic=False, device=wav.device, dtype=wav.dtype)
    n = 2 * n_fft
    ac = torch.fft.irfft(torch.fft.rfft(frames * window, n=n).abs().pow(2), n=n)[..., :hi + 1]
    window_ac = torch.fft.irfft(torch.fft.rfft(window, n=n).abs().pow(2), n=n)[:hi + 1]
    energy = ac[..., :1]
    r = ac / energy.clamp_min(1e-12) / (window_ac / window_ac[0]).clamp_min(1e-3)
    band = r[..., lo:]
    peak = band.max(-1, keepdim=True).values
    lag = lo + (band >= 0.9 * peak).float().argmax(-1)  # the first lag near the best peak
    loud = energy[..., 0] > energy[..., 0].amax(-1, keepdim=True) * 1e-4
    voiced = (peak[..., 0] > voicing) & loud
    return sample_rate / lag.to(wav.dtype), voiced


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient times −scale backward."""
    return _ReverseGradient.apply(x, scale)


def straight_through_decisions(logits: torch.Tensor) -> torch.Tensor:
    """Frame logits [B, T, U] → one-hot decisions [B, T, U] forward, the softmax's gradient backward: the
    adversary sees what the tokens are made of (the argmax), and the classifier still gets its gradient."""
    soft = logits.softmax(-1)
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


class PitchAdversary(nn.Module):
    """Codes (or decisions) [B, T, L] → normalised log-F0 per frame [B, T] (from a causal window of `context` frames) and
    per crop [B] (from those frames' features averaged over the crop). The crop head matters most: a
    per-frame trace of pitch too weak for the frame head adds up over an utterance, which is how a
    dialogue model told the user's style from the tokens alone."""

    def __init__(self, code_dim: int, hidden: int = 64, context: int = 5) -> None:
        super().__init__()
        self.context = context
        self.features = nn.Sequential(nn.Conv1d(code_dim, hidden, context), nn.GELU(), nn.Conv1d(hidden, hidden, 1),
                                      nn.GELU())
        self.frame_head = nn.Conv1d(hidden, 1, 1)
        self.crop_head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(F.pad(codes.transpose(1, 2), (self.context - 1, 0)))  # [B, H, T]
        return self.frame_head(h)[:, 0], self.crop_head(h.mean(-1))[:, 0]


def pitch_adversary_loss(adversary: PitchAdversary, codes: torch.Tensor, f0: torch.Tensor, voiced: torch.Tensor,
                         reversal: float, frame_weight: float = 1.0, min_voiced: int = 4
                         ) -> tuple[torch.Tensor, dict[str, float]]:
    """The adversary's MSE on normalised log-F0: per voiced frame (times `frame_weight`; 0 leaves the
    pitch contour alone and takes only the level), plus per crop (its voiced frames' median, for crops
    with at least `min_voiced`). The adversary descends it; through the reversed gradient (times
    `reversal`) the codes ascend it. Returns the loss (zero, with a graph, when nothing is voiced) and the
    share of the targets' variance each head explains (1 − MSE / variance: 0 for codes that carry no pitch)."""
    if codes.shape[:2] != f0.shape or f0.shape != voiced.shape:
        raise ValueError(f"pitch_adversary_loss: codes {tuple(codes.shape)}, f0 {tuple(f0.shape)} and voiced "
                         f"{tuple(voiced.shape)} must share [B, T]")
    frame_pred, crop_pred = adversary(reverse_gradient(codes, reversal))
    loss = frame_pred.sum() * 0.0
    explained = {}
    target = (f0.clamp_min(1.0).log() - LOG_F0_CENTRE) / LOG_F0_SCALE
    crops = voiced.sum(-1) >= min_voiced
    crop_target = target.masked_fill(~voiced, float("nan")).nanmedian(-1).values  # NaN where nothing is voiced
    heads = (("frame", frame_weight, frame_pred[voiced], target[voiced]),
             ("crop", 1.0, crop_pred[crops], crop_target[crops]))
    for name, weight, pred, y in heads:
        if y.numel() == 0:
            continue
        mse = F.mse_loss(pred, y)
        loss = loss + weight * mse
        if y.numel() > 1:
            explained[name] = 1.0 - mse.item() / max(y.var().item(), 1e-6)
    return loss, explained


def views_pitch_adversary_loss(adversary: PitchAdversary, views: list, codec_cfg, reversal: float,
                               frame_weight: float, reads_decisions: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """The adversary's loss averaged over views [(SemanticOutput, wav with its left context)] (the perturbed
    crop's and the clean crop's), and the share of log-F0 variance each head explains, averaged likewise. It
    reads each view's codes (a token's F0: its last mel frame's) or, with `reads_decisions`, its phone
    classifier's decisions (every mel frame's F0)."""
    mel, ds = codec_cfg.mel, codec_cfg.downsample
    loss, explained = 0.0, {}
    for out, wav in views:
        with torch.no_grad():
            f0, voiced = frame_f0(wav, mel.n_fft, mel.hop_length, mel.sample_rate)
        if reads_decisions:
            features = straight_through_decisions(out.unit_logits)
        else:
            features, f0, voiced = out.codes, f0[:, ds - 1::ds], voiced[:, ds - 1::ds]
        view_loss, view_explained = pitch_adversary_loss(adversary, features, f0, voiced, reversal, frame_weight)
        loss = loss + view_loss / len(views)
        for k, v in view_explained.items():
            explained[k] = explained.get(k, 0.0) + v / len(views)
    return loss, explained
