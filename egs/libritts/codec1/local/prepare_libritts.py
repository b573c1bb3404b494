"""LibriTTS → Kaldi data dirs: one per subset, plus the training set and held-out speakers.

    python local/prepare_libritts.py --root /corpora/LibriTTS --data data \
        --subsets train-clean-100 train-clean-360 dev-clean test-clean --heldout-speakers 20

Corpus layout: <root>/<subset>/<speaker>/<chapter>/<speaker>_<chapter>_<para>_<sent>.wav (24 kHz)
with `<same>.normalized.txt` (the text used here) and `<same>.original.txt` beside each wav.
Writes data/<subset with '_'> (wav.scp, text, utt2spk, spk2utt, utt2dur), then `data/train` (all
`train-*` subsets minus the held-out speakers) and `data/heldout_spk` (the held-out speakers'
utterances: never trained on, scored for the disentanglement probe). Utterance ids are
`<speaker>-<chapter>-<para>-<sent>`: with '-' (which sorts before digits) the C-sorted utterance
order agrees with the speaker order, as Kaldi requires (LibriTTS's own '_' ids would not: '100_…'
sorts after '1001_…'). Utterances without a transcript are reported and left out.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import re
import sys
import zlib
from pathlib import Path

import soundfile as sf

from recipes.datadir import DataDir

NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)$")


class CorpusError(ValueError):
    """The LibriTTS tree does not have the expected shape; the message names the path."""


def scan_subset(root: Path, subset: str, threads: int = 8) -> tuple[DataDir, list[str]]:
    """One subset → (DataDir, warnings). Raises CorpusError for a missing subset or a misnamed file."""
    base = root / subset
    if not base.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise CorpusError(f"{base}: subset not found (subsets under {root}: {found or 'none'})")
    wav_scp, utt2spk, text, warnings = {}, {}, {}, []
    for wav in sorted(base.glob("*/*/*.wav")):
        spk, chapter = wav.parent.parent.name, wav.parent.name
        m = NAME.match(wav.stem)
        if not m or m.group(1) != spk or m.group(2) != chapter:
            raise CorpusError(f"{wav}: expected <speaker>_<chapter>_<para>_<sent>.wav inside {spk}/{chapter}/, "
                              f"found {wav.name!r}")
        txt = wav.with_name(wav.stem + ".normalized.txt")
        words = " ".join(txt.read_text(encoding="utf-8").split()) if txt.is_file() else ""
        if not words:
            warnings.append(f"{txt}: {'empty' if txt.is_file() else 'missing'} transcript; utterance left out")
            continue
        utt = "-".join(m.groups())
        wav_scp[utt], utt2spk[utt], text[utt] = str(wav.resolve()), spk, words
    if not wav_scp:
        raise CorpusError(f"{base}: no <speaker>/<chapter>/*.wav with a .normalized.txt transcript")
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        durs = dict(zip(wav_scp, pool.map(lambda p: sf.info(p).duration, wav_scp.values())))
    return DataDir(wav_scp=wav_scp, utt2spk=utt2spk, text=text, utt2dur=durs), warnings


def heldout_speakers(data: DataDir, n: int) -> list[str]:
    """n speakers with >= 2 utterances, chosen by a stable hash of the id (the same on every machine)."""
    eligible = [s for s, utts in data.spk2utt.items() if len(utts) >= 2]
    return sorted(sorted(eligible, key=lambda s: (zlib.crc32(s.encode()), s))[:n])


def merge(dirs: list[DataDir]) -> DataDir:
    out = DataDir(wav_scp={}, utt2spk={}, text={}, utt2dur={})
    for d in dirs:
        for name in ("wav_scp", "utt2spk", "text", "utt2dur"):
            getattr(out, name).update(getattr(d, name))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, required=True, help="LibriTTS root (holds train-clean-100/, ...)")
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--subsets", nargs="+", default=["train-clean-100", "train-clean-360", "dev-clean", "test-clean"])
    p.add_argument("--heldout-speakers", type=int, default=20,
                   help="speakers of the train-* subsets kept out of training for the disentanglement probe")
    p.add_argument("--threads", type=int, default=8, help="threads reading audio headers for utt2dur")
    args = p.parse_args(argv)
    train = []
    for subset in args.subsets:
        d, warnings = scan_subset(args.root, subset, args.threads)
        for w in warnings[:10]:
            print(f"warning: {w}", file=sys.stderr)
        if len(warnings) > 10:
            print(f"warning: ... {len(warnings) - 10} more utterances without a transcript in {subset}",
                  file=sys.stderr)
        name = subset.replace("-", "_")
        d.save(args.data / name)
        DataDir.load(args.data / name)  # validate what was written
        print(f"{args.data / name}: {len(d.utts)} utterances, {len(d.speakers)} speakers, "
              f"{sum(d.utt2dur.values()) / 3600:.2f} h")
        if subset.startswith("train"):
            train.append(d)
    if not train:
        return
    full = merge(train)
    held = heldout_speakers(full, args.heldout_speakers)
    if len(held) >= len(full.speakers):
        raise CorpusError(f"--heldout-speakers {args.heldout_speakers} would hold out all {len(full.speakers)} "
                          f"training speakers")
    held_set = set(held)
    for name, keep in (("train", lambda u: full.utt2spk[u] not in held_set),
                       ("heldout_spk", lambda u: full.utt2spk[u] in held_set)):
        utts = [u for u in full.utts if keep(u)]
        if not utts:
            continue
        sub = full.subset(utts)
        sub.save(args.data / name)
        DataDir.load(args.data / name)
        print(f"{args.data / name}: {len(sub.utts)} utterances, {len(sub.speakers)} speakers "
              f"{'(held out: ' + ' '.join(held) + ')' if name == 'heldout_spk' else ''}")


if __name__ == "__main__":
    main()
