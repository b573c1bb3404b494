"""A data dir cut to at most N hours, taken round-robin over speakers, with its CTMs.

    python local/subset_hours.py --data data/train --out data/train_shard --max-hours 100

The codec's training shard is memory-mapped (one page-cache copy per node, streamed from disk when larger
than RAM); a speaker-balanced slice keeps the disk and the first epoch small (--max-hours 0: all of it). `phones.ctm`, `words.ctm` and
`phones.txt` are carried over for the kept utterances. --max-hours 0 keeps everything.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from recipes.ctm import read_ctm, write_ctm
from recipes.datadir import DataDir


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-hours", type=float, required=True)
    args = p.parse_args(argv)
    d = DataDir.load(args.data)
    if d.utt2dur is None:
        raise SystemExit(f"{args.data}/utt2dur: missing (needed to count hours)")
    queues = [list(u) for u in d.spk2utt.values()]
    keep, seconds, budget = [], 0.0, args.max_hours * 3600 if args.max_hours > 0 else float("inf")
    k = 0
    while seconds < budget and any(k < len(q) for q in queues):
        for q in queues:
            if k < len(q) and seconds < budget:
                keep.append(q[k])
                seconds += d.utt2dur[q[k]]
        k += 1
    d.subset(keep).save(args.out)
    kept = set(keep)
    for ctm in ("phones.ctm", "words.ctm"):
        if (args.data / ctm).is_file():
            write_ctm(args.out / ctm, [e for e in read_ctm(args.data / ctm) if e.utt in kept])
    if (args.data / "phones.txt").is_file():
        shutil.copy(args.data / "phones.txt", args.out / "phones.txt")
    print(f"{args.out}: {len(keep)}/{len(d.utts)} utterances, {seconds / 3600:.2f} h, {len(d.speakers)} speakers")


if __name__ == "__main__":
    main()
