"""Duet dialogue: a full-duplex spoken-dialogue model over the codec's token streams.

    from dialogue import load_dialogue, DuplexSession
    bundle = load_dialogue("model.safetensors", codec_id=codec.codec_id)
    with DuplexSession(bundle.model, batch_size=1, system_voice=bundle.system_voice) as session:
        text, system_tokens = session.step(user_tokens, user_voice)   # one 80 ms step

`python -m dialogue.demo --bundled --out exp/demo` streams a conversation end to end.
"""
from .checkpoint import DialogueBundle, dialogue_description, load_dialogue, save_dialogue
from .config import DelayConfig, DialogueConfig, DialogueConfigError, StreamConfig
from .layout import (Columns, DialogueGrid, Word, build_grid, delay_tokens, grid_words, text_stream,
                     text_stream_words, undelay_tokens, user_text_targets)
from .losses import LossWeights, duplex_loss
from .model import DuplexLogits, DuplexModel
from .session import DuplexSession, SamplingConfig
from .tokenizer import TextTokenizer, TokenizerError, train_tokenizer
from .user_encoder import UserEncoderConfig, UserFrameEncoder

__all__ = ["DialogueBundle", "dialogue_description", "load_dialogue", "save_dialogue", "DelayConfig", "DialogueConfig",
           "DialogueConfigError", "StreamConfig", "Columns", "DialogueGrid", "Word", "build_grid", "delay_tokens",
           "grid_words", "text_stream", "text_stream_words", "undelay_tokens", "user_text_targets",
           "LossWeights", "duplex_loss", "DuplexLogits", "DuplexModel", "DuplexSession", "SamplingConfig",
           "TextTokenizer", "TokenizerError", "train_tokenizer", "UserEncoderConfig", "UserFrameEncoder"]
