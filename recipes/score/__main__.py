"""`python -m recipes.score --data DIR_OR_WAV_FOLDER --codec PATH|default|none --out exp/score`."""
from __future__ import annotations

import argparse
import shlex
import sys

from .core import COLUMNS, DEFAULT_BASELINES, score_codec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recipes.score",
                                description="Score a Duet codec and classical baselines on a data dir or wav folder")
    p.add_argument("--data", required=True, help="Kaldi data dir (wav.scp ...) or a folder of .wav/.flac files")
    p.add_argument("--codec", default="default",
                   help="codec checkpoint (.safetensors), 'default' (bundled) "
                        "or 'none' (baselines only)")
    p.add_argument("--out", default="exp/score", help="output dir for RESULTS.md, results.json, per_utt.jsonl")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help="comma list: codec2_<mode> (3200,2400,1600,1400,1300,1200,700C,450), opus<k>k; '' = none")
    p.add_argument("--sample-rate", type=int, default=16000, help="scoring rate in Hz")
    p.add_argument("--max-utts", type=int, default=None, help="score a subset spread over speakers")
    p.add_argument("--name", default=None, help="system name for the codec row")
    p.add_argument("--no-asr", action="store_true", help="skip pocketsphinx WER")
    p.add_argument("--no-probe", action="store_true", help="skip the speaker probe")
    p.add_argument("--stages", action="store_true",
                   help="also score the codec's vocoder on the true mel and its mel autoencoder (no tokens)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    baselines = [b for b in args.baselines.split(",") if b.strip()]
    command = "python -m recipes.score " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rows = score_codec(args.data, codec=args.codec, out_dir=args.out, baselines=baselines,
                       sample_rate=args.sample_rate, max_utts=args.max_utts, asr=not args.no_asr,
                       probe=not args.no_probe, system_name=args.name, progress=not args.quiet, command=command,
                       stages=args.stages)
    for r in rows:
        print("  ".join(f"{k}={r[k]:.3f}" if isinstance(r[k], float) else f"{k}={r[k]}"
                        for k in COLUMNS if k != "data" and r[k] is not None))
    print(f"wrote {args.out}/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
