"""Token statistics and the disentanglement probe.

Token statistics over all codes of a set: codebook utilisation (distinct codes / codebook size,
and / min(codebook size, number of tokens) — a 3 s set cannot use 6561 codes), unigram entropy
in bits and the share of the most frequent code.

Probe: can a linear classifier tell the speaker from (a) the semantic tokens pooled over time
(mean one-hot FSQ digits when the codec has FSQ levels, else the normalised histogram of token
ids) and (b) the voice vector? Per speaker with ≥ 2 utterances, utterances in sorted order
alternate between train and test (half each); features are standardised on train; a multinomial
logistic regression (L2, LBFGS) is fitted. Reported: test accuracy and chance (the most frequent
speaker's share of the test set). Good disentanglement = tokens near chance, voice high. Speaker
verification from the voice vector: the equal error rate over all utterance pairs (cosine scores).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["token_stats", "fsq_digits", "pooled_token_features", "probe_accuracy", "split_halves", "verification_eer"]


def token_stats(codes: list[np.ndarray], codebook_size: int) -> dict[str, float]:
    allc = np.concatenate([np.asarray(c).reshape(-1) for c in codes]) if codes else np.zeros(0, dtype=np.int64)
    n = len(allc)
    if n == 0:
        return {"codebook_util": math.nan, "codebook_util_tok": math.nan, "entropy": math.nan,
                "top_share": math.nan, "num_tokens": 0, "codes_used": 0}
    counts = np.bincount(allc, minlength=codebook_size).astype(np.float64)
    used = int((counts > 0).sum())
    p = counts[counts > 0] / n
    return {"codebook_util": used / codebook_size, "codebook_util_tok": used / min(codebook_size, n),
            "entropy": float(-(p * np.log2(p)).sum()), "top_share": float(counts.max() / n),
            "num_tokens": int(n), "codes_used": used}


def fsq_digits(codes: np.ndarray, levels: list[int]) -> np.ndarray:
    """FSQ index → per-dimension digit (index = Σ digit_i · Π_{j<i} levels_j, the
    vector_quantize_pytorch convention). codes [T] → [T, len(levels)]."""
    basis = np.cumprod([1] + list(levels[:-1]))
    return (np.asarray(codes)[:, None] // basis[None, :]) % np.asarray(levels)[None, :]


def probe_levels(codec_config) -> list[int] | None:
    """The FSQ levels `pooled_token_features` splits tokens into digits by; None for another quantiser
    (token-id histograms instead)."""
    return list(getattr(codec_config, "fsq_levels", None) or []) or None


def pooled_token_features(codes: np.ndarray, codebook_size: int, levels: list[int] | None) -> np.ndarray:
    """Time-pooled token features of one utterance: mean one-hot FSQ digits [Σ levels] or the
    token-id histogram [codebook_size] (normalised)."""
    codes = np.asarray(codes).reshape(-1)
    if levels:
        digits = fsq_digits(codes, levels)
        parts = [np.bincount(digits[:, i], minlength=l) / max(len(codes), 1) for i, l in enumerate(levels)]
        return np.concatenate(parts).astype(np.float32)
    return (np.bincount(codes, minlength=codebook_size) / max(len(codes), 1)).astype(np.float32)


def split_halves(utts: list[str], speakers: list[str]) -> tuple[list[int], list[int]]:
    """Indices for train / test: per speaker (≥ 2 utterances), sorted utterances alternate."""
    by_spk: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by_spk.setdefault(s, []).append(i)
    train, test = [], []
    for s, idx in sorted(by_spk.items()):
        if len(idx) < 2:
            continue
        idx = sorted(idx, key=lambda i: utts[i])
        train += idx[0::2]
        test += idx[1::2]
    return train, test


def probe_accuracy(features: np.ndarray, speakers: list[str], utts: list[str], weight_decay: float = 1e-2,
                   iters: int = 200, seed: int = 0) -> dict[str, float]:
    """Fit the speaker classifier on one half, test on the other → {acc, chance, num_classes, num_test}."""
    train, test = split_halves(utts, speakers)
    classes = sorted({speakers[i] for i in train})
    if len(classes) < 2 or not test:
        return {"acc": math.nan, "chance": math.nan, "num_classes": len(classes), "num_test": len(test)}
    cid = {c: k for k, c in enumerate(classes)}
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    y = torch.tensor([cid.get(s, -1) for s in speakers])  # -1: a speaker in neither half (too few utterances)
    mu, sd = x[train].mean(0), x[train].std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(x.shape[1], len(classes), generator=g)).requires_grad_()
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
    xt, yt = x[train], y[train]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (x[test] @ w + b).argmax(1)
    acc = float((pred == y[test]).float().mean())
    test_counts = np.bincount(y[test].numpy(), minlength=len(classes))
    return {"acc": acc, "chance": float(test_counts.max() / len(test)), "num_classes": len(classes),
            "num_test": len(test)}


def verification_eer(vectors: np.ndarray, speakers: list[str]) -> float:
    """Speaker verification from the voice vector: every pair of utterances is a trial scored by cosine
    similarity (same speaker = target); the equal error rate, where false accepts equal false rejects. NaN with
    fewer than two speakers or no same-speaker pair."""
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
    ids = {s: k for k, s in enumerate(sorted(set(speakers)))}
    y = torch.tensor([ids[s] for s in speakers])
    i, j = torch.triu_indices(len(y), len(y), offset=1)
    scores, target = (x[i] * x[j]).sum(1), (y[i] == y[j])
    if len(ids) < 2 or not target.any() or target.all():
        return math.nan
    order = torch.argsort(scores, descending=True)
    t = target[order].float()
    far = torch.cumsum(1 - t, 0) / (1 - t).sum()  # impostors accepted above each threshold
    frr = 1 - torch.cumsum(t, 0) / t.sum()  # targets rejected below it
    k = int(torch.argmin((far - frr).abs()))
    return float((far[k] + frr[k]) / 2)
