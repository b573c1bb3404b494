"""The codec token of digital silence: the fill of a dialogue's delayed audio streams.

(Per-frame tokens and running voice vectors of whole recordings come from `Codec.encode_frames`.)
"""
from __future__ import annotations

import torch

from codec.api import Codec


def silence_token(codec: Codec, seconds: float = 1.0) -> int:
    """The most frequent token of `seconds` of digital silence (after the first frames settle)."""
    codes, _ = codec.encode_frames(torch.zeros(1, int(seconds * codec.sample_rate)), codec.sample_rate)
    return int(codes[0, codes.shape[1] // 2:].mode().values)
