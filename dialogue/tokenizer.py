"""The inner monologue's text tokenizer: sentencepiece word pieces plus Duet's special ids.

The special ids are named constants of `TextTokenizer` (PAD, UNK, BOS, EOS, EPAD); `train_tokenizer`
makes sentencepiece assign exactly those ids and `TextTokenizer` refuses a model that does not, so no
other code ever writes a special id as a number. The model file's bytes travel inside the dialogue
checkpoint, so a checkpoint and its tokenizer cannot drift apart.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm


class TokenizerError(ValueError):
    """A sentencepiece model that does not carry Duet's special ids, or unusable training text."""


class TextTokenizer:
    """Word pieces for the text stream. Encode one word at a time (the layout places words)."""

    PAD = 0  # no text at this step (between words)
    UNK = 1
    BOS = 2  # the text stream's input before the first step
    EOS = 3
    EPAD = 4  # end of padding: the step right before a word's first piece (Moshi's convention)
    EPAD_PIECE = "<epad>"
    SPECIAL = (PAD, UNK, BOS, EOS, EPAD)

    def __init__(self, model_proto: bytes, where: str = "tokenizer") -> None:
        self.proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.proto)
        except Exception as e:
            raise TokenizerError(f"{where}: not a sentencepiece model ({e})") from e
        found = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id(),
                 self.sp.piece_to_id(self.EPAD_PIECE))
        if found != self.SPECIAL:
            raise TokenizerError(f"{where}: special ids (pad, unk, bos, eos, epad) are {found}, expected "
                                 f"{self.SPECIAL}; train it with dialogue.tokenizer.train_tokenizer")

    @classmethod
    def load(cls, path: str | Path) -> "TextTokenizer":
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: no sentencepiece model file")
        return cls(path.read_bytes(), where=str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def is_piece(self, token: int) -> bool:
        """True for a word piece (UNK included), False for PAD, BOS, EOS and EPAD."""
        return token == self.UNK or token not in self.SPECIAL

    def encode_word(self, word: str) -> list[int]:
        """One word → its pieces (never empty: an unknown word becomes [UNK])."""
        ids = [i for i in self.sp.encode(word) if self.is_piece(i)]
        return ids or [self.UNK]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids if self.is_piece(int(i))])

    def piece(self, token: int) -> str:
        return self.sp.id_to_piece(int(token))


def train_tokenizer(sentences: Iterable[str], vocab_size: int = 256, model_type: str = "unigram") -> TextTokenizer:
    """Train a sentencepiece model on `sentences` with Duet's special ids; the vocabulary may come out
    smaller than `vocab_size` on a tiny corpus (sentencepiece's soft limit)."""
    lines = [s.strip() for s in sentences if s and s.strip()]
    if not lines:
        raise TokenizerError("train_tokenizer: no training text")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type=model_type,
        pad_id=TextTokenizer.PAD, unk_id=TextTokenizer.UNK, bos_id=TextTokenizer.BOS, eos_id=TextTokenizer.EOS,
        user_defined_symbols=[TextTokenizer.EPAD_PIECE], character_coverage=1.0, hard_vocab_limit=False,
        normalization_rule_name="identity",  # no NFKC table in the model: the proto stays a few KB
        num_threads=1, minloglevel=2)
    return TextTokenizer(model.getvalue(), where="trained tokenizer")
