"""Align the transcripts of Kaldi data dirs with a trained CTC aligner; write CTMs beside them.

    python -m recipes.align.align --data data/train data/test_clean --model exp/aligner [--device cuda]

For every data dir (which needs `text`) this writes `words.ctm` (normalised transcript words),
`phones.ctm` (characters, `sil` between words: the frame-level units that
`recipes.codec.prepare` turns into labels), `phones.txt` (`sil 0`, then the alphabet) and, when
some utterances could not be aligned, `align_failed.txt` (`<utt> <reason>`). Utterances that cannot
be aligned — no letters in the transcript, more letters than frames, unreadable audio — are
reported and skipped; the run fails only when more than `--max-fail-ratio` of a dir fails.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..ctm import write_ctm
from ..datadir import DataDir
from .forced import AlignmentError, align_emission
from .model import CtcAligner, load_aligner
from .task import read_audio

__all__ = ["align_dir", "main"]


def align_dir(data_dir: str | Path, model: CtcAligner, out_dir: str | Path | None = None, batch_seconds: float = 120.0,
              max_unit_seconds: float = 0.3, progress: bool = True,
              io_threads: int = 4) -> tuple[int, dict[str, str]]:
    """Align one data dir; returns (number aligned, {utt: reason} of the skipped ones)."""
    data_dir = Path(data_dir)
    out_dir = Path(out_dir) if out_dir is not None else data_dir
    data = DataDir.load(data_dir)
    if data.text is None:
        raise SystemExit(f"{data_dir}/text: missing; forced alignment needs transcripts")
    cfg, tok = model.cfg, model.tokenizer
    device = next(model.parameters()).device
    failed: dict[str, str] = {}
    words_ctm, phones_ctm = [], []

    todo = []
    for utt in data.utts:
        path, start, end = data.audio(utt)
        dur = data.utt2dur[utt] if data.utt2dur is not None else (end - start if end >= 0 else None)
        todo.append((dur if dur is not None else 0.0, utt, path, start, end))
    todo.sort()
    batch: list[tuple[str, torch.Tensor]] = []
    bar = tqdm(total=len(todo), desc=f"align {data_dir.name}", disable=not progress, dynamic_ncols=True)

    def flush():
        if not batch:
            return
        wavs = [w for _, w in batch]
        lengths = torch.tensor([len(w) for w in wavs], device=device)
        with torch.no_grad():
            log_probs, out_lengths = model(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True).to(device), lengths)
        for (utt, wav), lp, n in zip(batch, log_probs, out_lengths.tolist()):
            try:
                ali = align_emission(lp[:n], tok.words(data.text[utt]), tok, cfg.frame_seconds, utt=utt,
                                     max_unit_seconds=max_unit_seconds, duration=len(wav) / cfg.sample_rate)
            except AlignmentError as e:
                failed[utt] = str(e)
                continue
            words_ctm.extend(ali.words)
            phones_ctm.extend(ali.phones)
        bar.update(len(batch))
        batch.clear()

    def read(item):
        _, utt, path, start, end = item
        try:
            wav = read_audio(path, start, end, cfg.sample_rate)
            if wav.numel() == 0:
                raise ValueError("empty audio")
            return utt, wav, None
        except Exception as e:  # an unreadable file skips this utterance, not the run
            return utt, None, f"{utt}: cannot read audio {path}: {e}"

    seconds = 0.0
    with concurrent.futures.ThreadPoolExecutor(max(1, io_threads)) as pool:
        for lo in range(0, len(todo), 256):  # bounded read-ahead: a chunk of files at a time
            for utt, wav, error in pool.map(read, todo[lo:lo + 256]):
                if error is not None:
                    failed[utt] = error
                    bar.update(1)
                    continue
                batch.append((utt, wav))
                seconds += len(wav) / cfg.sample_rate
                if seconds >= batch_seconds:
                    flush()
                    seconds = 0.0
    flush()
    bar.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ctm(out_dir / "words.ctm", words_ctm)
    write_ctm(out_dir / "phones.ctm", phones_ctm)
    tok.write_units(out_dir / "phones.txt")
    fail_file = out_dir / "align_failed.txt"
    if failed:
        fail_file.write_text("".join(f"{u} {why}\n" for u, why in sorted(failed.items())), encoding="utf-8")
    elif fail_file.exists():
        fail_file.unlink()
    return len(data.utts) - len(failed), failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True, help="Kaldi data dirs with text")
    p.add_argument("--model", type=Path, required=True,
                   help="aligner.safetensors, a training dir (its aligner.safetensors or latest step-N) "
                        "or a step-N dir")
    p.add_argument("--out", type=Path, nargs="*", help="where to write the CTMs (default: each data dir)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch-seconds", type=float, default=120.0, help="audio per forward pass")
    p.add_argument("--max-unit-seconds", type=float, default=0.3,
                   help="a character extends at most this far past its CTC span (the rest is silence)")
    p.add_argument("--max-fail-ratio", type=float, default=0.1,
                   help="exit with an error when a larger share of a dir's utterances cannot be aligned")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (the GRU's per-frame steps scale badly on shared cores)")
    p.add_argument("--io-threads", type=int, default=4, help="threads reading and resampling audio")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.out and len(args.out) != len(args.data):
        p.error(f"--out needs one dir per --data dir ({len(args.data)}), got {len(args.out)}")
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model = load_aligner(args.model, device)
    status = 0
    for i, d in enumerate(args.data):
        out = args.out[i] if args.out else d
        ok, failed = align_dir(d, model, out, args.batch_seconds, args.max_unit_seconds, progress=not args.quiet,
                               io_threads=args.io_threads)
        total = ok + len(failed)
        msg = f"{d}: aligned {ok}/{total} utterances → {out}/words.ctm, {out}/phones.ctm"
        if failed:
            msg += f"; skipped {len(failed)} (reasons in {out}/align_failed.txt), e.g. {next(iter(failed.values()))}"
        print(msg, file=sys.stderr)
        if total and (ok == 0 or len(failed) / total > args.max_fail_ratio):
            print(f"{d}: {len(failed)}/{total} utterances could not be aligned, more than --max-fail-ratio "
                  f"{args.max_fail_ratio}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
