"""A learned reader of the user's style from the user's token *sequence*: a stronger test than the linear probe.

    python -m recipes.dialogue.sequence_probe --train exp/tokens/train.safetensors \
        --test exp/tokens/test.safetensors [--epochs 12] [--out exp/sequence_probe.json]

`style_probe` fits a linear map to the tokens pooled over a conversation. A dialogue model reads the
sequence, and on a phone-decision codec it read more than the pooled probe found (54 % of first
replies against the probe's 44 %, `egs/mini/dialogue1/RESULTS.md`). This probe is a small
convolutional reader over the user's speech tokens (token embeddings, two convolutions, a mean over
the sequence, a linear layer to the styles), trained on one token file (a tenth held out to choose the
epoch) and scored on another: minutes instead of a dialogue fine-tune to see whether a codec's
tokens still tell the styles apart.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dialogue import Columns

from .prepare import TokenSet
from .style_probe import conversation_styles, speech_only


def user_speech_tokens(data: TokenSet, max_len: int) -> list[torch.Tensor]:
    """Per conversation: the user channel's tokens in time order, silence left out, the first `max_len`."""
    cols = Columns(data.streams.frames_per_step)
    return [speech_only(grid[:, cols.user].reshape(-1), data.streams.silence_token)[:max_len] for grid in data.tokens]


class SequenceReader(nn.Module):
    """Token ids [B, T] (padding = `vocab`) → style logits [B, C]."""

    def __init__(self, vocab: int, num_classes: int, dim: int = 32, hidden: int = 64, kernel: int = 5) -> None:
        super().__init__()
        self.pad = vocab
        self.embed = nn.Embedding(vocab + 1, dim, padding_idx=vocab)
        self.convs = nn.Sequential(nn.Conv1d(dim, hidden, kernel, padding=kernel // 2), nn.GELU(),
                                   nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2), nn.GELU())
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad).float()[:, None]  # [B, 1, T]
        h = self.convs(self.embed(ids).transpose(1, 2)) * mask
        return self.out(h.sum(-1) / mask.sum(-1).clamp_min(1.0))


def _batch(seqs: list[torch.Tensor], pad: int) -> torch.Tensor:
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad)


def reader_accuracy(model: SequenceReader, seqs: list[torch.Tensor], labels: torch.Tensor, batch: int = 64) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(_batch(seqs[i:i + batch], model.pad)).argmax(-1) for i in range(0, len(seqs), batch)])
    model.train()
    return float((pred == labels).float().mean())


def fit_reader(seqs: list[torch.Tensor], labels: torch.Tensor, vocab: int, num_classes: int, epochs: int = 12,
               batch: int = 32, lr: float = 3e-3, seed: int = 0, progress: bool = False
               ) -> tuple[SequenceReader, float, int, int]:
    """Train a `SequenceReader` on id sequences with class labels, a tenth held out: → (the model at the epoch
    with the best held-out accuracy, that accuracy, that epoch, the number of sequences trained on)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(seqs), generator=g).tolist()
    n_val = max(1, len(seqs) // 10)
    val, fit = order[:n_val], order[n_val:]
    torch.manual_seed(seed)
    model = SequenceReader(vocab, num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    best = (-1.0, 0, None)
    for epoch in tqdm(range(1, epochs + 1), desc="sequence probe", disable=not progress):
        perm = torch.randperm(len(fit), generator=g).tolist()
        for i in range(0, len(fit), batch):
            picks = [fit[j] for j in perm[i:i + batch]]
            loss = F.cross_entropy(model(_batch([seqs[j] for j in picks], model.pad)), labels[picks])
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_acc = reader_accuracy(model, [seqs[j] for j in val], labels[val])
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    return model, best[0], best[1], len(fit)


def sequence_probe(train: TokenSet, test: TokenSet, epochs: int = 12, batch: int = 32, lr: float = 3e-3,
                   max_len: int = 1500, seed: int = 0, progress: bool = True) -> dict:
    """Train the reader on `train` (a tenth held out: the epoch with its best accuracy is kept) and score it
    on `test` → {acc, chance, val_acc, best_epoch, num_train, num_test, classes}."""
    if train.codec_id != test.codec_id:
        raise ValueError(f"{train.path} holds tokens of codec {train.codec_id}, {test.path} of {test.codec_id}")
    if epochs < 1:
        raise ValueError(f"sequence_probe: epochs must be >= 1, got {epochs}")
    if len(train) < 10 or len(test) == 0:
        raise ValueError(f"sequence_probe: {len(train)} training and {len(test)} test conversations are too few")
    styles, test_styles = conversation_styles(train), conversation_styles(test)
    classes = sorted(set(styles))
    if len(classes) < 2:
        raise ValueError(f"{train.path}: one style only ({classes}); nothing to tell apart")
    unknown = sorted(set(test_styles) - set(classes))
    if unknown:
        raise ValueError(f"{test.path}: styles {unknown} are not in the training file's {classes}")
    cid = {c: k for k, c in enumerate(classes)}
    seqs, labels = user_speech_tokens(train, max_len), torch.tensor([cid[s] for s in styles])
    test_seqs, test_labels = user_speech_tokens(test, max_len), torch.tensor([cid[s] for s in test_styles])
    model, val_acc, best_epoch, num_fit = fit_reader(seqs, labels, train.streams.codebook_size, len(classes),
                                                     epochs=epochs, batch=batch, lr=lr, seed=seed, progress=progress)
    counts = np.bincount(test_labels.numpy(), minlength=len(classes))
    return {"acc": reader_accuracy(model, test_seqs, test_labels), "chance": float(counts.max() / len(test_labels)),
            "val_acc": val_acc, "best_epoch": best_epoch, "num_train": num_fit, "num_test": len(test_seqs),
            "classes": classes}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, required=True, help="token file to train the reader on")
    p.add_argument("--test", type=Path, required=True, help="token file to score it on (same codec)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--max-len", type=int, default=1500, help="user speech tokens read per conversation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    r = sequence_probe(TokenSet(args.train), TokenSet(args.test), epochs=args.epochs, max_len=args.max_len,
                       seed=args.seed, progress=not args.no_progress)
    print(f"sequence probe: {r['acc']:.1%} of {r['num_test']} test conversations (chance {r['chance']:.0%}; "
          f"validation {r['val_acc']:.1%} at epoch {r['best_epoch']}, {r['num_train']} trained on)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
