"""The CTC acoustic model behind the forced aligner, and how it is saved.

A deliberately small character CTC model: log-mel (torchaudio) → per-utterance normalisation →
a few 1-D convolutions (the first may stride to subsample) → bidirectional GRU → linear over the
CTC classes. It only has to put each character's emission peak near the right frame, not to
recognise speech well, so a few million parameters trained for a few GPU hours suffice on
LibriTTS. Everything that defines the model (feature settings, frame rate, alphabet) is its
`AlignerConfig`, saved as JSON in the safetensors metadata beside the weights.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from .text import DEFAULT_ALPHABET, CharTokenizer

__all__ = ["AlignerConfig", "CtcAligner", "save_aligner", "load_aligner", "AlignerLoadError"]


@dataclasses.dataclass
class AlignerConfig:
    sample_rate: int = 16000  # Hz; audio is resampled to this
    n_fft: int = 400
    hop_length: int = 160  # samples per mel frame (10 ms at 16 kHz)
    n_mels: int = 80
    subsample: int = 1  # mel frames per output frame (stride of the first conv)
    alphabet: str = DEFAULT_ALPHABET
    conv_channels: int = 256
    conv_layers: int = 2
    kernel_size: int = 5
    rnn_hidden: int = 256
    rnn_layers: int = 2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0 or self.conv_layers < 1 or self.subsample < 1:
            raise ValueError(f"AlignerConfig: need an odd kernel_size, conv_layers >= 1 and subsample >= 1; got "
                             f"{self.kernel_size}, {self.conv_layers}, {self.subsample}")

    @property
    def frame_seconds(self) -> float:
        """Seconds per output (emission) frame."""
        return self.hop_length * self.subsample / self.sample_rate

    def num_frames(self, num_samples: int) -> int:
        """Emission frames for `num_samples` samples at `sample_rate`."""
        mel = num_samples // self.hop_length + 1  # centred STFT
        return (mel - 1) // self.subsample + 1


class CtcAligner(nn.Module):
    """wav [B, N] at cfg.sample_rate (+ lengths in samples) → CTC log-probs [B, T, classes] (+ lengths in frames)."""

    def __init__(self, cfg: AlignerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = CharTokenizer(cfg.alphabet)
        self.mel = torchaudio.transforms.MelSpectrogram(cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                                        n_mels=cfg.n_mels, center=True, power=2.0)
        convs = []
        for i in range(cfg.conv_layers):
            convs += [nn.Conv1d(cfg.n_mels if i == 0 else cfg.conv_channels, cfg.conv_channels, cfg.kernel_size,
                                stride=cfg.subsample if i == 0 else 1, padding=cfg.kernel_size // 2),
                      nn.GroupNorm(1, cfg.conv_channels), nn.GELU(), nn.Dropout(cfg.dropout)]
        self.convs = nn.Sequential(*convs)
        self.rnn = nn.GRU(cfg.conv_channels, cfg.rnn_hidden, num_layers=cfg.rnn_layers, batch_first=True,
                          bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
        self.head = nn.Linear(2 * cfg.rnn_hidden, self.tokenizer.vocab_size)

    def features(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel normalised per utterance over its valid frames: [B, n_mels, T_mel], lengths [B]."""
        with torch.autocast(wav.device.type, enabled=False):
            mel = self.mel(wav.float()).clamp_min(1e-10).log()
        frames = lengths // self.cfg.hop_length + 1
        mask = (torch.arange(mel.shape[-1], device=mel.device)[None] < frames[:, None]).to(mel.dtype)[:, None]
        count = mask.sum(-1, keepdim=True).clamp_min(1.0)
        mean = (mel * mask).sum(-1, keepdim=True) / count
        var = (((mel - mean) * mask) ** 2).sum(-1, keepdim=True) / count
        return (mel - mean) / (var + 1e-5).sqrt() * mask, frames

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                augment: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wav [B, N] float at cfg.sample_rate, lengths [B] in samples (None = all N) →
        (log_probs [B, T, vocab_size] float32, out_lengths [B] frames). `augment` (training only):
        SpecAugment masks {freq_masks, freq_width, time_masks, time_width} drawn from torch's RNG."""
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long, device=wav.device)
        x, frames = self.features(wav, lengths)
        if augment and self.training:
            x = _spec_augment(x, **augment)
        x = self.convs(x).transpose(1, 2)  # [B, T, C]
        out_lengths = ((frames - 1) // self.cfg.subsample + 1).clamp(max=x.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return F.log_softmax(self.head(y).float(), dim=-1), out_lengths


def _spec_augment(x: torch.Tensor, freq_masks: int = 0, freq_width: int = 0, time_masks: int = 0,
                  time_width: int = 0) -> torch.Tensor:
    """Zero random frequency bands and time spans of normalised features x [B, F, T] (per item)."""
    b, nf, nt = x.shape
    keep = torch.ones_like(x)
    for n, width, size, dim in ((freq_masks, freq_width, nf, 1), (time_masks, time_width, nt, 2)):
        for _ in range(n):
            w = (torch.rand(b, device=x.device) * (width + 1)).long().clamp(max=size)
            start = (torch.rand(b, device=x.device) * (size - w + 1)).long()
            idx = torch.arange(size, device=x.device)[None]
            band = (idx >= start[:, None]) & (idx < (start + w)[:, None])  # [B, size]
            keep = keep * (~(band[:, :, None] if dim == 1 else band[:, None, :])).to(x.dtype)
    return x * keep


class AlignerLoadError(ValueError):
    """An aligner checkpoint that cannot be used; the message names the path and what is missing."""


def save_aligner(model: CtcAligner, path: str | Path, extra: dict | None = None) -> Path:
    """One self-contained file: weights + AlignerConfig (JSON metadata)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    meta = {"aligner_config": json.dumps(dataclasses.asdict(model.cfg)), "extra": json.dumps(extra or {})}
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_aligner(path: str | Path, device: str | torch.device = "cpu") -> CtcAligner:
    """Load an aligner from `aligner.safetensors` (save_aligner), a trainer checkpoint dir `step-N/`
    (config from the stage's `config.yaml` one level up) or a training dir (its latest step)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir() and (path / "aligner.safetensors").is_file():
        path = path / "aligner.safetensors"
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "aligner_config" not in meta:
            raise AlignerLoadError(f"{path}: no 'aligner_config' in the safetensors metadata "
                                   f"(not written by recipes.align; expected save_aligner's output)")
        cfg = AlignerConfig(**json.loads(meta["aligner_config"]))
        weights = path
    elif path.is_dir():
        from ..checkpoint import latest_checkpoint

        step = path if (path / "model.safetensors").is_file() else latest_checkpoint(path)
        if step is None:
            raise AlignerLoadError(f"{path}: no aligner.safetensors, model.safetensors or step-N/ checkpoint")
        conf = step.parent / "config.yaml"
        if not conf.is_file():
            raise AlignerLoadError(f"{step}: training config {conf} is missing (needed for the model settings)")
        from codec.config_io import load

        from .task import AlignerTrainConfig

        cfg = load(AlignerTrainConfig, conf).model
        weights = step / "model.safetensors"
    else:
        raise AlignerLoadError(f"{path}: no such aligner file or directory")
    model = CtcAligner(cfg)
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        raise AlignerLoadError(f"{weights}: weights do not match the aligner config ({e})") from None
    return model.to(device).eval()
