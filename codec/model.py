"""The codec network: what is said (semantic tokens) apart from how it is said (voice vector G).

    wav → MelFrontend → SpeechEncoder → A ─► SemanticProjector (VAE μ/logσ² → FSQ) → tokens
          (or, with semantic_input.kind "cepstrum": log-mel → CepstralInput ─► SemanticProjector,
           with "phones": log-mel → PhoneInput (frame classifier's one-hot decisions) ─► SemanticProjector)
    reference wav → MelFrontend → ParalinguisticEncoder (running VAE vector) → G
    tokens → FSQ codes (+G) → Connector → Â → MelDecoder → mel → Vocoder → wav

Every part is causal and a StreamingModule tree, so `SpeechCodec.streaming(B)` streams all of it.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

import kernels

from .config import CodecConfig, MelConfig, SemanticInputConfig
from .conv import StreamingConv1d, StreamingConvTranspose1d
from .frontend import MelFrontend
from .streaming import StreamingModule, StreamingState, check_batch
from .transformer import CausalTransformer
from .vocoder import Vocoder


class SpeechEncoder(nn.Module):
    """log-mel [B, n_mels, T·ds] → A [B, T, latent_dim] at the token rate."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        dim = cfg.encoder.dim
        self.inp = StreamingConv1d(cfg.mel.n_mels, dim, 3)
        self.transformer = CausalTransformer(cfg.encoder)
        self.down = StreamingConv1d(dim, cfg.latent_dim, cfg.downsample, stride=cfg.downsample) \
            if cfg.downsample > 1 else nn.Conv1d(dim, cfg.latent_dim, 1)

    def forward(self, mel):
        x = self.transformer(F.gelu(self.inp(mel)).transpose(1, 2))
        return self.down(x.transpose(1, 2)).transpose(1, 2)


@dataclasses.dataclass
class SemanticOutput:
    codes: torch.Tensor  # [B, T, L] quantised, in [-1, 1], straight-through gradient
    indices: torch.Tensor  # [B, T] int64 token ids
    mu: torch.Tensor  # [B, T, L]
    logvar: torch.Tensor  # [B, T, L]
    unit_logits: torch.Tensor | None = None  # [B, T·ds, n_units], from a "phones" input's frame classifier


class CepstralInput(nn.Module):
    """log-mel [B, n_mels, T·ds] → [B, T, dim]: cepstrum c1..c_n (orthonormal DCT) of the mel bands
    centred at or above `min_hz`, then a causal conv over ds + 2 frames with stride ds. Level (c0), the
    F0 region and most of the harmonic ripple across bands (high quefrency) are dropped here, whatever
    the training does; a pitch change's effect on the envelope is not (see SemanticInputConfig)."""

    def __init__(self, mel: MelConfig, inp: SemanticInputConfig, dim: int, downsample: int) -> None:
        super().__init__()
        fbanks = torchaudio.functional.melscale_fbanks(
            mel.n_fft // 2 + 1, mel.f_min, mel.f_max or mel.sample_rate / 2, mel.n_mels, mel.sample_rate,
            norm="slaney", mel_scale="slaney")  # the same bands as MelFrontend
        centres = fbanks.argmax(0).double() * mel.sample_rate / mel.n_fft
        first = int((centres < inp.min_hz).sum())
        kept = mel.n_mels - first
        if kept <= inp.n_ceps:
            raise ValueError(f"semantic_input: {kept} mel bands above {inp.min_hz} Hz cannot give {inp.n_ceps} "
                             f"cepstral coefficients")
        self.first_band = first
        dct = torchaudio.functional.create_dct(inp.n_ceps + 1, kept, norm="ortho")[:, 1:]  # [kept, n_ceps]
        self.register_buffer("dct", dct.T.contiguous(), persistent=False)  # derived from the config
        self.conv = StreamingConv1d(inp.n_ceps, dim, downsample + 2, stride=downsample)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        ceps = torch.einsum("cm,bmt->bct", self.dct.to(mel.dtype), mel[:, self.first_band:])
        return self.conv(ceps).transpose(1, 2)


class PhoneInput(nn.Module):
    """log-mel [B, n_mels, T·ds] → ([B, T, dim], frame phone logits [B, T·ds, n_units]): a causal frame
    classifier, then its one-hot decisions (no gradient, no confidences: nothing of how the frame
    sounded passes but the class) through a causal conv over ds + 2 frames with stride ds. The
    classifier learns from the phone timings alone (`SemanticOutput.unit_logits`)."""

    def __init__(self, mel: MelConfig, inp: SemanticInputConfig, dim: int, downsample: int) -> None:
        super().__init__()
        self.n_units = inp.n_units
        self.inp = StreamingConv1d(mel.n_mels, inp.recognizer.dim, 3)
        self.transformer = CausalTransformer(inp.recognizer)
        self.classify = nn.Linear(inp.recognizer.dim, inp.n_units)
        self.conv = StreamingConv1d(inp.n_units, dim, downsample + 2, stride=downsample)

    def frame_logits(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, n_mels, T·ds] → the classifier's frame logits [B, T·ds, n_units]."""
        return self.classify(self.transformer(F.gelu(self.inp(mel)).transpose(1, 2)))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.frame_logits(mel)
        decisions = F.one_hot(logits.detach().argmax(-1), self.n_units).to(mel.dtype).transpose(1, 2)
        return self.conv(decisions).transpose(1, 2), logits


class SemanticProjector(nn.Module):
    """A [B, T, latent_dim] (or log-mel, for a cepstral input) → VAE posterior over an L-dim latent →
    FSQ (one token per frame)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.levels = list(cfg.fsq_levels)
        self.kind = kind = cfg.semantic_input.kind
        if kind == "cepstrum":
            self.cepstrum = CepstralInput(cfg.mel, cfg.semantic_input, cfg.semantic.dim, cfg.downsample)
        elif kind == "phones":
            self.phones = PhoneInput(cfg.mel, cfg.semantic_input, cfg.semantic.dim, cfg.downsample)
        else:
            self.inp = nn.Linear(cfg.latent_dim, cfg.semantic.dim)
        self.transformer = CausalTransformer(cfg.semantic)
        self.posterior = nn.Linear(cfg.semantic.dim, 2 * len(self.levels))

    @property
    def reads_mel(self) -> bool:
        """Whether the input is the log-mel (every kind but "latent") rather than the encoder's A."""
        return self.kind != "latent"

    def forward(self, x: torch.Tensor, sample: bool = False) -> SemanticOutput:
        """x: A [B, T, latent_dim], or log-mel [B, n_mels, T·ds] when `reads_mel`."""
        unit_logits = None
        if self.kind == "phones":
            h, unit_logits = self.phones(x)
        else:
            h = self.cepstrum(x) if self.kind == "cepstrum" else self.inp(x)
        mu, logvar = self.posterior(self.transformer(h)).chunk(2, dim=-1)
        logvar = logvar.clamp(-10, 5)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        codes, indices = kernels.fsq(z, self.levels)
        return SemanticOutput(codes, indices, mu, logvar, unit_logits)


@dataclasses.dataclass
class PoolState(StreamingState):
    weighted_sum: torch.Tensor  # [B, C]
    weight_total: torch.Tensor  # [B, 1]


class ParalinguisticEncoder(StreamingModule):
    """log-mel [B, n_mels, T] → (μ, logσ²) [B, T, voice_dim]: a running, attention-weighted pool of
    frame features, so the vector at frame t summarises the voice heard so far (the last frame's is
    the utterance's G). Streams with two running sums."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        h = cfg.voice_hidden
        self.convs = nn.ModuleList([StreamingConv1d(cfg.mel.n_mels, h, 5), StreamingConv1d(h, h, 5, dilation=2),
                                    StreamingConv1d(h, h, 5, dilation=4)])
        self.score = nn.Linear(h, 1)
        self.posterior = nn.Linear(h, 2 * cfg.voice_dim)

    def init_state(self, batch_size, device):
        h = self.score.in_features
        return PoolState(torch.zeros(batch_size, h, device=device), torch.zeros(batch_size, 1, device=device))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = mel
        for i, conv in enumerate(self.convs):
            y = F.gelu(conv(x))
            x = y if i == 0 else x + y
        h = x.transpose(1, 2)  # [B, T, C]
        w = F.softplus(self.score(h)) + 1e-4  # [B, T, 1]
        num, den = (w * h).cumsum(1), w.cumsum(1)
        if self.is_streaming:
            state: PoolState = self.state
            check_batch(self, mel, state.weighted_sum.shape[0])
            num, den = num + state.weighted_sum[:, None], den + state.weight_total[:, None]
            if h.shape[1]:
                state.weighted_sum.copy_(num[:, -1])
                state.weight_total.copy_(den[:, -1])
        mu, logvar = self.posterior(num / den).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 5)


class Connector(nn.Module):
    """FSQ codes [B, T, L] + voice G [B, voice_dim] → Â [B, T, latent_dim]."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(len(cfg.fsq_levels), cfg.connector.dim)
        self.voice = nn.Linear(cfg.voice_dim, cfg.connector.dim)
        self.transformer = CausalTransformer(cfg.connector)
        self.out = nn.Linear(cfg.connector.dim, cfg.latent_dim)

    def forward(self, codes, voice):
        return self.out(self.transformer(self.inp(codes) + self.voice(voice)[:, None]))


class MelDecoder(nn.Module):
    """A or Â [B, T, latent_dim] → log-mel [B, n_mels, T·ds]."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        dim = cfg.decoder.dim
        self.up = StreamingConvTranspose1d(cfg.latent_dim, dim, 2 * cfg.downsample, stride=cfg.downsample) \
            if cfg.downsample > 1 else nn.Conv1d(cfg.latent_dim, dim, 1)
        self.transformer = CausalTransformer(cfg.decoder)
        self.out = StreamingConv1d(dim, cfg.mel.n_mels, 3)

    def forward(self, a):
        x = self.transformer(self.up(a.transpose(1, 2)).transpose(1, 2))
        return self.out(x.transpose(1, 2))


class SpeechCodec(StreamingModule):
    """All codec parts; `codec.api.Codec` wraps it with audio handling and the streaming API."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = MelFrontend(cfg.mel)
        self.encoder = SpeechEncoder(cfg)
        self.semantic = SemanticProjector(cfg)
        self.paralinguistic = ParalinguisticEncoder(cfg)
        self.connector = Connector(cfg)
        self.decoder = MelDecoder(cfg)
        self.vocoder = Vocoder(cfg.vocoder, cfg.mel)

    def semantic_source(self, mel: torch.Tensor) -> torch.Tensor:
        """What the semantic projector reads: the log-mel itself (cepstral input) or the encoder's A."""
        return mel if self.semantic.reads_mel else self.encoder(mel)

    def tokens_from_mel(self, mel: torch.Tensor, sample: bool = False) -> SemanticOutput:
        return self.semantic(self.semantic_source(mel), sample=sample)

    def codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return kernels.fsq_decode(indices, self.cfg.fsq_levels)

    def mel_from_codes(self, codes: torch.Tensor, voice: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.connector(codes, voice))
