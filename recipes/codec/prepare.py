"""Turn Kaldi data dirs into a training shard for the codec.

    python -m recipes.codec.prepare --data data/train data/real_train --out data/train.safetensors \
        --sample-rate 16000 --hop 256 [--phones data/lang/phones.txt]

Each data dir may carry `phones.ctm` (exact TTS timings or forced alignment); its phones become
frame-level labels for the contrastive stage. Dirs without one (real prompts with no transcript)
still feed the reconstruction losses. The shard is written one utterance at a time, so memory holds
one utterance, not the corpus (its on-disk layout: recipes/codec/shards.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from codec.audio import load_audio

from ..ctm import frame_labels, group_by_utt, read_ctm
from ..datadir import DataDir
from .shards import ShardWriter


def read_vocab(path: Path) -> list[str]:
    """phones.txt: one unit per line ('unit' or 'unit id'); id 0 is silence."""
    units: dict[int, str] = {}
    for i, line in enumerate(Path(path).read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        units[int(parts[1]) if len(parts) > 1 else i] = parts[0]
    return [units[i] for i in sorted(units)]


def load_utterance(data: DataDir, utt: str, sample_rate: int) -> np.ndarray:
    path, start, end = data.audio(utt)
    wav, sr = load_audio(path)
    wav = wav.mean(0)
    s = int(round(start * sr))
    e = len(wav) if end < 0 else int(round(end * sr))
    wav = wav[s:e]
    if sr != sample_rate:
        wav = torchaudio.functional.resample(wav, sr, sample_rate)
    return wav.numpy()


def prepare(data_dirs: list[Path], out: Path, sample_rate: int, hop: int, phones: list[str] | None,
            progress: bool = True) -> Path:
    """Write the shard one utterance at a time (`ShardWriter`): memory holds one utterance, not the corpus."""
    vocab = phones
    out.parent.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out, vocab or ["sil"], sample_rate, hop) as writer:
        for d in data_dirs:
            data = DataDir.load(d)
            ctm_path = Path(d) / "phones.ctm"
            ctm = group_by_utt(read_ctm(ctm_path)) if ctm_path.is_file() and vocab else {}
            for utt in tqdm(data.utts, desc=f"prepare {Path(d).name}", disable=not progress):
                wav = load_utterance(data, utt, sample_rate)
                labels = frame_labels(ctm[utt], sample_rate / hop, len(wav) // hop, vocab) if utt in ctm else None
                writer.add(utt, data.utt2spk[utt], wav, labels)
        if not writer.utt_ids:
            raise ValueError(f"no utterances in {[str(d) for d in data_dirs]}")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sample-rate", type=int, required=True)
    p.add_argument("--hop", type=int, required=True)
    p.add_argument("--phones", type=Path, help="unit inventory (phones.txt); default: no frame labels")
    args = p.parse_args(argv)
    vocab = read_vocab(args.phones) if args.phones else None
    prepare(args.data, args.out, args.sample_rate, args.hop, vocab)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
