"""`python -m recipes.synth --out data/synth_train --num-utts 2000 --split train --seed 0`

Builds a synthetic corpus (see `recipes.synth.corpus`) for the train or held-out pseudo-speakers
of `make_speakers(--speaker-seed)`; `--list-speakers` only prints them.
"""
from __future__ import annotations

import argparse
import sys

from .corpus import build_corpus
from .speakers import available_engines, make_speakers


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recipes.synth", description=__doc__.splitlines()[0])
    p.add_argument("--out", help="output data dir")
    p.add_argument("--num-utts", type=int, default=200)
    p.add_argument("--split", choices=("train", "heldout", "all"), default="train")
    p.add_argument("--seed", type=int, default=0, help="sentence / speaker assignment seed")
    p.add_argument("--speaker-seed", type=int, default=0, help="seed of make_speakers (keep fixed across splits)")
    p.add_argument("--variants-per-voice", type=int, default=3)
    p.add_argument("--num-espeak", type=int, default=24, help="espeak accent+variant base voices")
    p.add_argument("--engines", default=None, help="comma list of flite,festival,espeak (default: installed)")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--list-speakers", action="store_true")
    args = p.parse_args(argv)
    engines = args.engines.split(",") if args.engines else None
    split = make_speakers(args.speaker_seed, args.variants_per_voice, args.num_espeak, engines=engines)
    speakers = {"train": split.train, "heldout": split.heldout, "all": split.all}[args.split]
    if args.list_speakers or not args.out:
        for name, (ok, why) in available_engines().items():
            print(f"# {name}: {'ok' if ok else 'missing'} ({why})")
        for s in speakers:
            print(s.id)
        return 0
    d = build_corpus(args.out, args.num_utts, speakers, seed=args.seed, sample_rate=args.sample_rate,
                     num_workers=args.workers)
    print(f"{args.out}: {len(d.utts)} utterances, {len(d.speakers)} speakers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
