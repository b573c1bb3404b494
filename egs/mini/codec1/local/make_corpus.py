"""Mini codec corpus: synthetic speech with exact timings (train voices / held-out voices) and
real studio speech (Asterisk prompts) split into train / held-out prompts.

    python local/make_corpus.py --data data --train-utts 2400 --heldout-utts 200 [--real-max-utts N]
"""
import argparse
import zlib
from pathlib import Path

from recipes.audio_corpus import build_asterisk
from recipes.datadir import DataDir
from recipes.synth import build_corpus, make_speakers


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--train-utts", type=int, default=2400)
    p.add_argument("--heldout-utts", type=int, default=200)
    p.add_argument("--real-max-utts", type=int, default=0, help="0 = all prompts")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    split = make_speakers(seed=args.seed)
    build_corpus(args.data / "synth_train", args.train_utts, split.train, seed=args.seed, sample_rate=args.sample_rate)
    build_corpus(args.data / "synth_heldout", args.heldout_utts, split.heldout, seed=args.seed + 1,
                 sample_rate=args.sample_rate)
    per_source = -(-args.real_max_utts // 4) if args.real_max_utts else None
    real = build_asterisk(args.data / "real_all", sample_rate=args.sample_rate, max_files_per_source=per_source)
    utts = real.utts
    # every 8th English 16 kHz prompt (by a stable hash) is held out for scoring real speech
    heldout = [u for u in utts if real.utt2spk[u] == "asterisk-en-g722" and zlib.crc32(u.encode()) % 8 == 0]
    if not heldout:  # tiny runs: keep at least one real English prompt for scoring
        heldout = [u for u in utts if real.utt2spk[u] == "asterisk-en-g722"][:1]
    train = [u for u in utts if u not in set(heldout)]
    real.subset(train).save(args.data / "real_train")
    real.subset(heldout).save(args.data / "real_heldout")
    print(f"real speech: {len(train)} train / {len(heldout)} held-out prompts")


if __name__ == "__main__":
    main()
