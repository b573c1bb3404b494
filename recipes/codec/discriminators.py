"""The vocoder's discriminators: encodec's multi-scale STFT discriminator (reused, not rewritten) beside a
multi-period waveform discriminator (HiFi-GAN, Kong et al. 2020), which judges the periodic structure (pitch
harmonics, glottal pulses) that the STFT discriminator's fixed resolutions blur. Every discriminator maps a
waveform [B, 1, T] to (a list of logits, a list of feature-map lists), so the GAN losses treat them alike."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["PeriodDiscriminator", "MultiPeriodDiscriminator", "CombinedDiscriminator", "build_discriminator"]


class PeriodDiscriminator(nn.Module):
    """The waveform folded into [T/p, p] columns, 2-D convolutions along time within each phase of period p."""

    def __init__(self, period: int, channels: tuple[int, ...] = (16, 64, 128, 256)) -> None:
        super().__init__()
        self.period = period
        layers, c_in = [], 1
        for c in channels:
            layers.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), (3, 1), padding=(2, 0))))
            c_in = c
        layers.append(weight_norm(nn.Conv2d(c_in, c_in, (5, 1), 1, padding=(2, 0))))
        self.convs = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = wav.shape
        if t % self.period:
            wav = F.pad(wav, (0, self.period - t % self.period), mode="reflect")
        x = wav.view(b, c, -1, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmap.append(x)
        x = self.out(x)
        fmap.append(x)
        return x.flatten(1), fmap


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channels: tuple[int, ...] = (16, 64, 128, 256)):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, fmaps = zip(*(d(wav) for d in self.discriminators))
        return list(logits), list(fmaps)


class CombinedDiscriminator(nn.Module):
    """Several discriminators as one: their logits and feature maps concatenated."""

    def __init__(self, *discriminators: nn.Module) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, fmaps = [], []
        for d in self.discriminators:
            lo, fm = d(wav)
            logits += list(lo)
            fmaps += list(fm)
        return logits, fmaps


def build_discriminator(hop: int, filters: int, periods: tuple[int, ...] = ()) -> nn.Module:
    """encodec's MS-STFT discriminator at three resolutions around the codec's hop, plus a multi-period
    discriminator when `periods` is not empty (its channels scale with `filters`)."""
    from encodec.msstftd import MultiScaleSTFTDiscriminator

    stft = MultiScaleSTFTDiscriminator(filters=filters, n_ffts=[4 * hop, 2 * hop, hop],
                                       hop_lengths=[hop, hop // 2, hop // 4], win_lengths=[4 * hop, 2 * hop, hop])
    if not periods:
        return stft
    channels = tuple(filters * k for k in (1, 4, 8, 16))
    return CombinedDiscriminator(stft, MultiPeriodDiscriminator(tuple(periods), channels))
