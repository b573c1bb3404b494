"""Where a codec's quality goes: its partial paths, scored by the same scorer as any system.

    vocoder      true log-mel → vocoder: the ceiling of everything downstream of the mel
    autoencoder  log-mel → encoder → mel decoder → vocoder: the mel path without the token bottleneck
    (whole)      the codec itself, tokens + voice vector: the codec's own row

`python -m recipes.score --stages ...` adds the first two rows beside the codec's. A stage has no bitrate (its
bottleneck is continuous) and no tokens; like a baseline it maps audio to audio.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import metrics

__all__ = ["CodecStage", "STAGES", "codec_stages"]

STAGES = ("vocoder", "autoencoder")


@dataclasses.dataclass
class CodecStage:
    codec: object  # codec.api.Codec
    path: str
    bitrate: float | None = None

    def __post_init__(self) -> None:
        if self.path not in STAGES:
            raise ValueError(f"codec stage {self.path!r}: expected one of {STAGES}")

    @property
    def name(self) -> str:
        return {"vocoder": "vocoder on the true mel", "autoencoder": "mel autoencoder (no tokens)"}[self.path]

    @torch.inference_mode()
    def process(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        codec, model = self.codec, self.codec.model
        x = torch.from_numpy(metrics.resample(audio, sr, codec.sample_rate)).float()[None]
        mel = codec._mel(x)
        if self.path == "autoencoder":
            mel = model.decoder(model.encoder(mel))
        y = model.vocoder.synthesize(mel)[0, :x.shape[-1]].float().cpu().numpy()
        return metrics.resample(y, codec.sample_rate, sr), 0


def codec_stages(codec) -> list[tuple[str, CodecStage]]:
    return [(s.name, s) for s in (CodecStage(codec, p) for p in STAGES)]
