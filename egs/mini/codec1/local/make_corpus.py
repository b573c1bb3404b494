"""Mini codec corpus, split by speaker (recipes/speaker_splits.yaml): synthetic speech with exact timings from
every installed TTS voice (synth_{train,valid,test}) and every real reader of the Debian archive
(real_{train,valid,test}, real_{valid,test}_en with transcripts).

    python local/make_corpus.py --data data --train-utts 6000 --eval-utts 240 [--real-max-per-speaker N]
"""
import argparse
import os
from pathlib import Path

from recipes.real_speech import build_real_speech
from recipes.splits import load_splits
from recipes.synth import build_corpus, split_speakers


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--train-utts", type=int, default=6000)
    p.add_argument("--eval-utts", type=int, default=240, help="synthetic utterances in valid and in test each")
    p.add_argument("--real-max-per-speaker", type=int, default=0, help="0 = every recording")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    splits = load_splits()
    speakers = split_speakers(splits, seed=args.seed)
    for offset, (split, n) in enumerate((("train", args.train_utts), ("valid", args.eval_utts),
                                         ("test", args.eval_utts))):
        out = args.data / f"synth_{split}"
        if not (out / "corpus.json").is_file():
            build_corpus(out, n, speakers[split], seed=args.seed + offset, sample_rate=args.sample_rate,
                         balance_engines=True)
    real = build_real_speech(args.data / "real", args.sample_rate, splits,
                             max_per_speaker=args.real_max_per_speaker or None)
    for name in real:  # data/real_<split> → data/real/<split>: the scoring sets sit beside the synthetic ones
        link = args.data / f"real_{name}"
        if not link.exists():
            os.symlink(Path("real") / name, link)
        print(f"real_{name}: {len(real[name].utts)} utterances, speakers {', '.join(real[name].speakers)}")


if __name__ == "__main__":
    main()
