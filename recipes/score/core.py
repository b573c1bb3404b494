"""The one scorer: a codec (and classical baselines) on one set of utterances → one table.

    from recipes.score import score_codec
    rows = score_codec("data/synth_heldout", codec="default", out_dir="exp/score",
                       baselines=("codec2_1200", "codec2_3200", "opus6k"))

Every system encodes and decodes the same reference signals (mono, at `sample_rate`). Per
utterance the decoded signal is delay-compensated and cut to the reference length, then PESQ-WB,
PESQ-NB, STOI and the mel distance are computed and averaged over utterances (an utterance on
which PESQ fails counts as missing, and the number is reported). WER: pocketsphinx on the
decoded audio of English utterances that have a transcript (`utt2lang` = en, or no utt2lang),
beside `wer_ref`, the WER of pocketsphinx on the uncoded references — the ASR's own floor.
For the Duet codec (anything with `encode`/`decode`/`config`) also the token statistics and the
speaker probe of `tokens.py`. Writes `RESULTS.md` (markdown table + data + command),
`results.json` (rows + metadata) and `per_utt.jsonl` into `out_dir`.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..datadir import DataDir
from . import metrics
from .asr import Recognizer, wer
from .baselines import Baseline, BaselineError, make_baseline
from .tokens import pooled_token_features, probe_accuracy, probe_levels, token_stats, verification_eer

__all__ = ["score_codec", "load_items", "Item", "COLUMNS", "DEFAULT_BASELINES", "write_report"]

COLUMNS = ("system", "bitrate", "pesq_wb", "pesq_nb", "stoi", "mel_dist", "wer", "wer_ref", "codebook_util",
           "entropy", "top_share", "probe_tokens_acc", "probe_voice_acc", "chance", "voice_eer", "num_utts", "data")
DEFAULT_BASELINES = ("codec2_1200", "codec2_3200", "opus6k")
MAX_LAG_SECONDS = 0.2


@dataclasses.dataclass
class Item:
    utt: str
    audio: np.ndarray  # float32 [N] at the scoring rate
    speaker: str | None
    text: str | None
    lang: str | None

    @property
    def english_text(self) -> bool:
        return bool(self.text) and self.lang in (None, "en")


def _read(path: Path, start: float, end: float, sr: int) -> np.ndarray:
    info = sf.info(str(path))
    frames = -1 if end < 0 else int(round((end - start) * info.samplerate))
    audio, file_sr = sf.read(str(path), start=int(round(start * info.samplerate)), frames=frames,
                             dtype="float32", always_2d=True)
    return metrics.resample(audio.mean(axis=1), file_sr, sr)


def _spread(utts: list[str], speakers: list[str | None], n: int) -> list[int]:
    """n indices taken round-robin over speakers (each speaker's utterances in order), so a
    small subset still has ≥ 2 utterances per speaker for the probe."""
    by: dict = {}
    for i, s in enumerate(speakers):
        by.setdefault(s or "", []).append(i)
    queues = [sorted(v, key=lambda i: utts[i]) for _, v in sorted(by.items())]
    out: list[int] = []
    k = 0
    while len(out) < n and any(k < len(q) for q in queues):
        for q in queues:
            if k < len(q) and len(out) < n:
                out.append(q[k])
        k += 1
    return sorted(out, key=lambda i: utts[i])


def load_items(data, sample_rate: int = 16000, max_utts: int | None = None) -> tuple[list[Item], str]:
    """A Kaldi data dir (or DataDir) or a folder of audio files → (items, description).
    In a folder, a file's first sub-folder is its speaker and `<stem>.txt` beside it its text."""
    if isinstance(data, DataDir) or (Path(data) / "wav.scp").is_file():
        d = data if isinstance(data, DataDir) else DataDir.load(data)
        utts = d.utts
        spks = [d.utt2spk[u] for u in utts]
        if max_utts:
            utts = [utts[i] for i in _spread(utts, spks, max_utts)]
        items = []
        for u in utts:
            path, start, end = d.audio(u)
            items.append(Item(u, _read(path, start, end, sample_rate), d.utt2spk[u],
                              d.text.get(u) if d.text else None, d.utt2lang.get(u) if d.utt2lang else None))
        return items, str(d.path or data)
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: neither a Kaldi data dir (no wav.scp) nor a folder of audio files")
    files = sorted(p for ext in ("wav", "flac", "ogg") for p in root.rglob(f"*.{ext}"))
    if not files:
        raise FileNotFoundError(f"{root}: no .wav/.flac/.ogg files")
    rel = [f.relative_to(root) for f in files]
    utts = [r.with_suffix("").as_posix().replace("/", "_") for r in rel]
    spks = [r.parts[0] if len(r.parts) > 1 else None for r in rel]
    keep = _spread(utts, spks, max_utts) if max_utts else range(len(files))
    items = []
    for i in keep:
        txt = files[i].with_suffix(".txt")
        items.append(Item(utts[i], _read(files[i], 0.0, -1.0, sample_rate), spks[i],
                          txt.read_text().strip() if txt.is_file() else None, None))
    return items, str(root)


def _resolve_codec(codec):
    if codec is None or codec == "none":
        return None
    if isinstance(codec, (str, Path)):
        from codec import load_codec

        return load_codec(None if str(codec) == "default" else codec)
    if _maps_audio(codec):  # a codec stage (stages.py): audio in, audio out
        return codec
    for attr in ("encode", "decode", "config", "sample_rate"):
        if not hasattr(codec, attr):
            raise TypeError(f"codec object lacks .{attr} (expected the codec.Codec interface)")
    return codec


def _mean(values) -> float | None:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0 or np.all(np.isnan(v)):
        return None
    return float(np.nanmean(v))


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit="utt", leave=False)


def score_codec(data, codec="default", out_dir: str | Path | None = "exp/score",
                baselines=DEFAULT_BASELINES, sample_rate: int = 16000, max_utts: int | None = None,
                asr: bool = True, probe: bool = True, system_name: str | None = None, progress: bool = True,
                stages: bool = False,
                command: str | None = None) -> list[dict]:
    """Score `codec` (a codec object, a checkpoint path, "default" = bundled, or None for
    baselines only) and the named baselines on `data`. Returns one row dict per system with
    the keys of COLUMNS (None where a metric does not apply) plus extras (delay_ms,
    codebook_util_tok, bitrate_measured, ...). Writes the report into `out_dir` unless None."""
    t0 = time.time()
    items, data_desc = load_items(data, sample_rate, max_utts)
    codec_obj = _resolve_codec(codec)
    systems = []
    if codec_obj is not None and _maps_audio(codec_obj):
        systems.append((system_name or codec_obj.name, codec_obj))
    elif codec_obj is not None:
        if stages:  # where the quality goes: the codec's partial paths first (recipes/score/stages.py)
            from .stages import codec_stages

            systems += codec_stages(codec_obj)
        systems.append((system_name or _codec_name(codec, codec_obj), codec_obj))
    skipped: dict[str, str] = {}
    for name in baselines or ():
        b = make_baseline(name)
        ok, why = b.available()
        if ok:
            systems.append((name, b))
        else:
            skipped[name] = why
            print(f"score: skipping baseline {name}: {why}", file=sys.stderr)

    recognizer = Recognizer() if asr and any(it.english_text for it in items) else None
    wer_items = [it for it in items if it.english_text] if recognizer else []
    wer_ref = None
    ref_hyps: dict[str, str] = {}
    if recognizer:
        for it in _progress(wer_items, progress, "asr reference"):
            ref_hyps[it.utt] = recognizer.transcribe(metrics.resample(it.audio, sample_rate, 16000))
        wer_ref = wer([it.text for it in wer_items], [ref_hyps[it.utt] for it in wer_items])

    rows, per_utt = [], []
    max_lag = int(MAX_LAG_SECONDS * sample_rate)
    for name, system in systems:
        utt_rows, codes, voices, hyps = [], [], [], {}
        total_bytes = 0
        for it in _progress(items, progress, name):
            try:
                if _maps_audio(system):
                    deg, nbytes = system.process(it.audio, sample_rate)
                    total_bytes += nbytes
                else:
                    deg, c, v = _run_codec(system, it.audio, sample_rate)
                    codes.append(c)
                    voices.append(v)
            except BaselineError as e:
                print(f"score: {name} failed on {it.utt}: {e}", file=sys.stderr)
                continue
            deg, lag = metrics.align(it.audio, deg, max_lag)
            r = {"system": name, "utt": it.utt, "delay_ms": 1000.0 * lag / sample_rate,
                 "pesq_wb": metrics.pesq_wb(it.audio, deg, sample_rate),
                 "pesq_nb": metrics.pesq_nb(it.audio, deg, sample_rate),
                 "stoi": metrics.stoi(it.audio, deg, sample_rate),
                 "mel_dist": metrics.mel_distance(it.audio, deg, sample_rate)}
            if recognizer and it.english_text:
                hyps[it.utt] = recognizer.transcribe(metrics.resample(deg, sample_rate, 16000))
                r["hyp"], r["ref_hyp"], r["text"] = hyps[it.utt], ref_hyps[it.utt], it.text
            utt_rows.append(r)
        per_utt += utt_rows
        scored = {r["utt"] for r in utt_rows}
        seconds = sum(len(it.audio) for it in items if it.utt in scored) / sample_rate
        row = {
            "system": name,
            "bitrate": _bitrate(system),
            "pesq_wb": _mean(r["pesq_wb"] for r in utt_rows),
            "pesq_nb": _mean(r["pesq_nb"] for r in utt_rows),
            "stoi": _mean(r["stoi"] for r in utt_rows),
            "mel_dist": _mean(r["mel_dist"] for r in utt_rows),
            "wer": wer([it.text for it in wer_items if it.utt in hyps],
                       [hyps[it.utt] for it in wer_items if it.utt in hyps]) if hyps else None,
            "wer_ref": wer_ref,
            "codebook_util": None, "entropy": None, "top_share": None,
            "probe_tokens_acc": None, "probe_voice_acc": None, "chance": None, "voice_eer": None,
            "num_utts": len(utt_rows), "data": data_desc,
            # extras
            "codebook_util_tok": None, "delay_ms": _mean(r["delay_ms"] for r in utt_rows),
            "pesq_failures": sum(1 for r in utt_rows if math.isnan(r["pesq_wb"])),
            "num_wer_utts": len(hyps), "seconds": round(seconds, 2),
            "bitrate_measured": (8.0 * total_bytes / seconds if isinstance(system, Baseline) and seconds else None),
        }
        if not _maps_audio(system):
            row.update(_codec_extras(system, items, scored, codes, voices, probe))
        rows.append(row)

    if out_dir is not None:
        meta = {"data": data_desc, "num_utts": len(items), "num_speakers": len({it.speaker for it in items}),
                "hours": round(sum(len(it.audio) for it in items) / sample_rate / 3600, 4),
                "sample_rate": sample_rate, "num_wer_utts": len(wer_items), "skipped_baselines": skipped,
                "command": command or " ".join(sys.argv), "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "seconds": round(time.time() - t0, 1)}
        write_report(out_dir, rows, meta, per_utt)
    return rows


def _maps_audio(system) -> bool:
    """A baseline or a codec stage: audio in, audio out, no tokens."""
    return hasattr(system, "process")


def _bitrate(system) -> float | None:
    rate = system.bitrate if _maps_audio(system) else system.config.bitrate
    return None if rate is None else float(rate)


def _codec_name(spec, codec) -> str:
    if isinstance(getattr(codec, "name", None), str):
        return codec.name
    if isinstance(spec, (str, Path)) and str(spec) != "default":
        return f"duet:{Path(spec).stem}"
    return "duet" if str(spec) == "default" else f"duet:{getattr(codec, 'codec_id', type(codec).__name__)}"


def _run_codec(codec, audio: np.ndarray, sr: int):
    with torch.inference_mode():
        tok = codec.encode(torch.from_numpy(audio)[None], sr)
        y = codec.decode(tok)
    y = y.reshape(y.shape[0], -1)[0].float().cpu().numpy()
    return (metrics.resample(y, codec.sample_rate, sr), tok.codes[0].cpu().numpy().astype(np.int64),
            tok.voice[0].float().cpu().numpy())


def _codec_extras(codec, items: list[Item], scored: set[str], codes, voices, probe: bool) -> dict:
    cfg = codec.config
    levels = probe_levels(cfg)
    stats = token_stats(codes, cfg.codebook_size)
    out = {"codebook_util": stats["codebook_util"], "codebook_util_tok": stats["codebook_util_tok"],
           "entropy": stats["entropy"], "top_share": stats["top_share"], "num_tokens": stats["num_tokens"],
           "codes_used": stats["codes_used"], "codebook_size": cfg.codebook_size,
           "frame_rate": float(getattr(codec, "frame_rate", 0.0) or 0.0),
           "voice_dim": int(voices[0].shape[-1]) if voices else None,
           "probe_feature": "fsq_digits" if levels else "token_histogram"}
    kept = [it for it in items if it.utt in scored]
    if probe and kept and all(it.speaker for it in kept):
        utts, spks = [it.utt for it in kept], [it.speaker for it in kept]
        tok_feats = np.stack([pooled_token_features(c, cfg.codebook_size, levels) for c in codes])
        pt = probe_accuracy(tok_feats, spks, utts)
        pv = probe_accuracy(np.stack(voices), spks, utts)
        out.update({"probe_tokens_acc": _nan_none(pt["acc"]), "probe_voice_acc": _nan_none(pv["acc"]),
                    "chance": _nan_none(pt["chance"]), "probe_classes": pt["num_classes"],
                    "probe_test_utts": pt["num_test"], "voice_eer": _nan_none(verification_eer(np.stack(voices), spks))})
    return out


def _nan_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _fmt(key: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if key == "bitrate":
        return f"{v:.0f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def write_report(out_dir, rows: list[dict], meta: dict, per_utt: list[dict] | None = None) -> Path:
    """RESULTS.md (table, data, command), results.json and per_utt.jsonl in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = list(COLUMNS[:-1]) + ["codebook_util_tok", "delay_ms"]  # `data` goes in the header
    lines = ["# Codec scores", "",
             f"- data: `{meta['data']}` — {meta['num_utts']} utterances, {meta['num_speakers']} speakers, "
             f"{meta['hours']} h, scored at {meta['sample_rate']} Hz; WER on {meta['num_wer_utts']} English "
             f"utterances with text (pocketsphinx en-us)",
             f"- command: `{meta['command']}`", f"- date: {meta['date']}", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(c, r.get(c)) for c in cols) + " |")
    lines += ["", "bitrate: semantic-token bits/s for the Duet codec (voice vector sent once per stream, not "
              "included), nominal mode rate for baselines (measured rate in results.json). pesq_*: mean MOS-LQO; "
              "mel_dist: mean |Δ log-mel|; wer / wer_ref: pocketsphinx WER on decoded / uncoded audio; "
              "codebook_util: codes used / codebook size (codebook_util_tok: / min(size, tokens)); entropy in bits; "
              "probe_*: speaker accuracy of a logistic regression on time-pooled tokens / the voice vector, "
              "trained on half of each speaker's utterances and tested on the other half (chance: majority "
              "share); voice_eer: speaker-verification equal error rate of the voice vector over all utterance "
              "pairs (cosine); delay_ms: lag removed before scoring."]
    if meta.get("skipped_baselines"):
        lines.append("")
        lines += [f"- skipped {k}: {v}" for k, v in meta["skipped_baselines"].items()]
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=_json) + "\n")
    if per_utt is not None:
        with open(out / "per_utt.jsonl", "w", encoding="utf-8") as f:
            for r in per_utt:
                f.write(json.dumps({k: _nan_none(v) for k, v in r.items()}, default=_json) + "\n")
    return out / "RESULTS.md"


def _json(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
