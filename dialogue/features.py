"""Codec features of a dialogue's channels, computed offline exactly as the streaming codec sees them.

Training grids need, per codec frame, the token and the user's *running* paralinguistic vector (the
codec's voice vector over everything heard so far), which `CodecStream.voice` reports after each
streamed chunk at inference. `encode_channels` computes both for whole recordings in one pass
(tests check it against the streaming API); `silence_token` finds the codec token of digital
silence, the fill of delayed audio streams.
"""
from __future__ import annotations

import torch

from codec.api import Codec


@torch.inference_mode()
def encode_channels(codec: Codec, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """wav [C, N] at codec.sample_rate → (codes [C, F], running voice [C, F, voice_dim]),
    F = ceil(N / samples_per_token) (the last frame zero-padded, as `encode_flush` does)."""
    if wav.dim() != 2:
        raise ValueError(f"encode_channels: wav must be [channels, samples], got {tuple(wav.shape)}")
    spt = codec.config.samples_per_token
    x = wav.float().to(codec.device)
    x = torch.nn.functional.pad(x, (0, (-x.shape[-1]) % spt))
    mel = codec.model.frontend(x)
    codes = codec.model.tokens_from_mel(mel).indices
    voice = codec.model.paralinguistic(mel)[0]
    return codes.cpu(), voice.float().cpu()


def silence_token(codec: Codec, seconds: float = 1.0) -> int:
    """The most frequent token of `seconds` of digital silence (after the first frames settle)."""
    codes, _ = encode_channels(codec, torch.zeros(1, int(seconds * codec.sample_rate)))
    return int(codes[0, codes.shape[1] // 2:].mode().values)
