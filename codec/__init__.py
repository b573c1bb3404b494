"""Duet codec: streaming single-codebook semantic tokens + a paralinguistic voice vector.

    from codec import load_codec
    codec = load_codec()
"""
from .api import Codec, CodecStream, CodecTokens, load_codec
from .audio import AudioError, load_audio
from .config import CodecConfig, preset
from .container import CodecFormatError, read_tokens, write_tokens
from .streaming import StreamingError, StreamingModule

__all__ = ["Codec", "CodecStream", "CodecTokens", "load_codec", "AudioError", "load_audio", "CodecConfig",
           "preset", "CodecFormatError", "read_tokens", "write_tokens", "StreamingError", "StreamingModule"]
