"""Where in a phones codec's frame decisions is the user's style? (analysis for RESULTS.md)

    python local/decision_probe.py --codec PHONES_CODEC --phones PHONES_TXT --train DATA_DIR --test DATA_DIR \
        --out DIR

The sequence probe (`recipes.dialogue.sequence_probe`) reads the style from a codec's tokens. A phones
codec's tokens are a function of its frame classifier's decisions, so this asks the decisions
directly, and views of them that keep only part: classes merged (voicing pairs, reduced vowels), runs
collapsed (the recognised phone string without durations), run lengths only (durations without
phones), only runs of a minimum length, and the phone string in shuffled order. Each view gets the same
reader, trained on the user channels of --train (a tenth held out to pick the epoch), scored on --test.
The decisions are cached in DIR/decisions.npz (minutes to compute, once).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from codec import load_codec
from recipes.dialogue.sequence_probe import fit_reader, reader_accuracy
from recipes.dialogue.style_probe import speech_only

MERGED = {"t": "d", "p": "b", "k": "g", "s": "z", "f": "v", "th": "dh", "ch": "jh", "sh": "zh", "ax": "ah", "ih": "ah"}
MAX_RUN = 40  # run lengths are read as ids 1..MAX_RUN


MAX_LEN = 1500  # decisions per conversation the reader reads


def user_decisions(decide, data_dir: Path) -> dict[str, np.ndarray]:
    """{"<style>/<id>": decide(the user channel [N] float32, sample rate), a decision per frame} for every
    conversation of data_dir."""
    out = {}
    ids = [line.split()[0] for line in (data_dir / "wav.scp").read_text().splitlines() if line.strip()]
    for cid in tqdm(ids, desc=data_dir.name, mininterval=30):
        meta = json.loads((data_dir / "meta" / f"{cid}.json").read_text())
        wav, sr = sf.read(data_dir / "wav" / f"{cid}.wav", dtype="float32", always_2d=True)
        out[f"{meta['style']}/{cid}"] = decide(wav[:, meta["channels"]["user"]], sr)
    return out


def codec_decisions(codec):
    """A phones codec's frame classifier as a `user_decisions` decider."""
    def decide(user: np.ndarray, sr: int) -> np.ndarray:
        with torch.inference_mode():
            logits = codec.semantic_output(torch.from_numpy(user), sr).unit_logits
        if logits is None:
            raise SystemExit("--codec: not a phones codec (its semantic branch has no frame classifier)")
        return logits[0].argmax(-1).numpy().astype(np.int16)
    return decide


def cached(path: Path, make) -> dict[str, np.ndarray]:
    """The arrays in the npz at `path`, made by make() and written atomically the first time."""
    if not path.exists():
        np.savez(path.with_suffix(".tmp.npz"), **make())
        path.with_suffix(".tmp.npz").rename(path)
    z = np.load(path)
    return {k: z[k] for k in z.files}


def sequences(decisions: dict[str, np.ndarray], prefix: str, view, styles: list[str]
              ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The reader's input and labels: `view` of each conversation's decisions keyed "<prefix><style>/<id>"."""
    keys = [k for k in decisions if k.startswith(prefix)]
    return ([torch.from_numpy(view(decisions[k].astype(np.int64)).astype(np.int64))[:MAX_LEN] for k in keys],
            torch.tensor([styles.index(k.removeprefix(prefix).split("/")[0]) for k in keys]))


def runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length encoding: (the class of each run, its length in frames)."""
    starts = np.r_[0, np.flatnonzero(np.diff(x)) + 1]
    return x[starts], np.diff(np.r_[starts, len(x)])


def views(phones: list[str]) -> dict:
    sil = phones.index("sil")
    merged = np.array([phones.index(MERGED.get(p, p)) for p in phones])

    def speech(x):
        return speech_only(x, sil)

    def long_runs(x, n):
        ids, lens = runs(speech(x))
        kept = ids[lens >= n]
        return runs(kept)[0] if len(kept) else ids[:1]

    def shuffled(x):
        ids = runs(speech(x))[0].copy()
        np.random.default_rng(len(ids)).shuffle(ids)
        return ids

    return {"decisions": speech, "voicing pairs and reduced vowels merged": lambda x: merged[speech(x)],
            "phone string (runs collapsed)": lambda x: runs(speech(x))[0],
            "run lengths only": lambda x: np.minimum(runs(speech(x))[1], MAX_RUN),
            "runs of >= 3 frames, collapsed": lambda x: long_runs(x, 3),
            "runs of >= 6 frames, collapsed": lambda x: long_runs(x, 6),
            "phone string, order shuffled": shuffled}


def read(train: list[torch.Tensor], train_y: torch.Tensor, test: list[torch.Tensor], test_y: torch.Tensor,
         vocab: int, classes: int) -> dict:
    model, val_acc, epoch, _ = fit_reader(train, train_y, vocab, classes)
    return {"test": reader_accuracy(model, test, test_y), "val": val_acc, "epoch": epoch,
            "mean_len": float(np.mean([len(s) for s in test]))}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--codec", type=Path, required=True)
    p.add_argument("--phones", type=Path, required=True, help="the codec shard's phones.txt (class names in order)")
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    phones = [line.split()[0] for line in args.phones.read_text().splitlines() if line.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    def decide_all() -> dict[str, np.ndarray]:
        decide = codec_decisions(load_codec(args.codec))
        return {**{f"train/{k}": v for k, v in user_decisions(decide, args.train).items()},
                **{f"test/{k}": v for k, v in user_decisions(decide, args.test).items()}}

    arrays = cached(args.out / "decisions.npz", decide_all)
    styles = sorted({k.split("/")[1] for k in arrays})
    vocab = max(len(phones), MAX_RUN + 1)
    results = {}
    for name, view in views(phones).items():
        results[name] = read(*sequences(arrays, "train/", view, styles), *sequences(arrays, "test/", view, styles),
                             vocab=vocab, classes=len(styles))
        print(f"{name}: {results[name]['test']:.1%} (mean length {results[name]['mean_len']:.0f})", flush=True)
    (args.out / "decision_probe.json").write_text(json.dumps({"styles": styles, "views": results}, indent=1))


if __name__ == "__main__":
    main()
