"""Every reader of real human speech the Debian archive ships, as Kaldi data dirs split by speaker.

    python -m recipes.real_speech --out data/real --sample-rate 16000 [--max-per-speaker N]

Sources: the Asterisk prompt packages (`recipes.audio_corpus`: Allison en/es, June fr, IvrvoiceRU, the Colombian
es reader, Armelle, Menardi; telephone band, 8 kHz but for Allison's 16 kHz G.722 takes) and KLettres
(`klettres-data`: letters and syllables read by one person per language, 44.1 kHz, wideband). Every reader is one
speaker id (`asterisk-<source>`, `klettres-<lang>`) and belongs to the split that `recipes/speaker_splits.yaml`
names. Transcripts are kept for English readers only (the scorer's ASR is English). Writes `<out>/sources/<speaker>/` (one dir per reader), `<out>/{train,valid,test}/` (every reader of the
split; `text` only where all have one), and `<out>/{valid,test}_en/` (the split's English readers, with
transcripts, for WER). KLettres clips are trimmed to their speech (energy 40 dB under the clip's peak, 50 ms kept
either side).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio_corpus import DEFAULT_SOURCES, SOURCES, available_sources, build_asterisk, load_audio
from .datadir import DataDir
from .splits import SPLITS, SpeakerSplits, load_splits

__all__ = ["build_real_speech", "build_klettres", "klettres_languages", "trim_to_speech", "ASTERISK_SOURCES"]

KLETTRES = Path("/usr/share/klettres")
# en-wav is the same takes as en-g722 (band-limited): one recording is never in the corpus twice
ASTERISK_SOURCES = tuple(DEFAULT_SOURCES) + tuple(s for s in SOURCES if s not in DEFAULT_SOURCES and s != "en-wav")
ENGLISH = ("en", "en_GB")


def klettres_languages(root: Path = KLETTRES) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*/*.ogg"))) if root.is_dir() else []


def trim_to_speech(audio: np.ndarray, sample_rate: int, floor_db: float = 40.0, margin: float = 0.05) -> np.ndarray:
    """Cut leading and trailing silence: keep from the first to the last 10 ms frame within `floor_db` of the
    loudest, plus `margin` seconds either side."""
    hop = max(1, sample_rate // 100)
    n = len(audio) // hop
    if n == 0:
        return audio
    energy = 10 * np.log10(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() - floor_db)
    pad = int(margin * sample_rate)
    return audio[max(0, loud[0] * hop - pad): min(len(audio), (loud[-1] + 1) * hop + pad)]


def build_klettres(out_dir: Path, lang: str, sample_rate: int = 16000, root: Path = KLETTRES,
                   max_utts: int | None = None) -> DataDir:
    """One KLettres language (one reader) → a Kaldi dir; English readers get their sounds' names as text."""
    files = sorted((root / lang).glob("*/*.ogg"))
    if max_utts:
        files = files[:: max(1, len(files) // max_utts)][:max_utts]
    spk = f"klettres-{lang}"
    wav_scp, utt2spk, text, utt2dur, utt2lang = {}, {}, {}, {}, {}
    for path in files:
        audio = trim_to_speech(load_audio(path, sample_rate), sample_rate)
        if len(audio) < 0.2 * sample_rate:
            continue
        audio = audio * (0.5 / max(1e-4, float(np.abs(audio).max())))
        utt = f"{spk}-{path.parent.name}-{''.join(c if c.isalnum() else '_' for c in path.stem)}"
        wav = out_dir / "wav" / f"{utt}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, audio, sample_rate, subtype="PCM_16")
        wav_scp[utt], utt2spk[utt], utt2dur[utt], utt2lang[utt] = str(wav.resolve()), spk, len(audio) / sample_rate, \
            lang.split("_")[0]
        text[utt] = path.stem.lower()
    if not wav_scp:
        raise FileNotFoundError(f"klettres: no usable recordings for {lang!r} under {root}")
    data = DataDir(wav_scp=wav_scp, utt2spk=utt2spk, text=text if lang in ENGLISH else None, utt2dur=utt2dur,
                   utt2lang=utt2lang, path=out_dir)
    data.save(out_dir)
    return data


def merge(parts: list[DataDir], out_dir: Path) -> DataDir:
    """Readers' dirs → one dir (every utterance id is already unique: it starts with its speaker id)."""
    tables = {k: {} for k in ("wav_scp", "utt2spk", "utt2dur", "utt2lang", "text")}
    for d in parts:
        for k in tables:
            tables[k].update(getattr(d, k) or {})
    texts = all(d.text is not None for d in parts)
    data = DataDir(wav_scp=tables["wav_scp"], utt2spk=tables["utt2spk"], text=tables["text"] if texts else None,
                   utt2dur=tables["utt2dur"], utt2lang=tables["utt2lang"], path=out_dir)
    data.save(out_dir)
    return DataDir.load(out_dir)


def build_real_speech(out: str | Path, sample_rate: int = 16000, splits: SpeakerSplits | None = None,
                      max_per_speaker: int | None = None, progress: bool = True) -> dict[str, DataDir]:
    """Build every installed reader and the split dirs; returns split name → DataDir."""
    out, splits = Path(out), splits or load_splits()
    readers: dict[str, DataDir] = {}
    installed = set(available_sources())
    for source in ASTERISK_SOURCES:
        spk = f"asterisk-{source}"
        if source not in installed:
            print(f"real_speech: {spk} is not installed, left out (recipes/install_system_deps.sh)", file=sys.stderr)
            continue
        splits.real_split(spk)  # every source must be placed before anything is built
        d = out / "sources" / spk
        readers[spk] = DataDir.load(d) if (d / "wav.scp").is_file() else build_asterisk(
            d, sample_rate, (source,), with_text=SOURCES[source][2] == "en", progress=progress,
            max_files_per_source=max_per_speaker)
    for lang in klettres_languages():
        spk = f"klettres-{lang}"
        splits.real_split(spk)
        d = out / "sources" / spk
        readers[spk] = DataDir.load(d) if (d / "wav.scp").is_file() else build_klettres(
            d, lang, sample_rate, max_utts=max_per_speaker)
    result = {}
    for split in SPLITS:
        mine = [d for spk, d in readers.items() if splits.real_split(spk) == split]
        if mine:
            result[split] = merge(mine, out / split)
        english = [readers[f"klettres-{lang}"] for lang in ENGLISH if f"klettres-{lang}" in readers and
                   splits.real_split(f"klettres-{lang}") == split]
        if split != "train" and english:
            result[f"{split}_en"] = merge(english, out / f"{split}_en")
    summary = {name: {"speakers": d.speakers, "utts": len(d.utts),
                      "hours": round(sum((d.utt2dur or {}).values()) / 3600, 3)} for name, d in result.items()}
    (out / "splits.json").write_text(json.dumps(summary, indent=1) + "\n")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--max-per-speaker", type=int, default=None, help="an evenly spread subset per reader (tests)")
    args = p.parse_args(argv)
    for name, d in build_real_speech(args.out, args.sample_rate, max_per_speaker=args.max_per_speaker).items():
        hours = sum((d.utt2dur or {}).values()) / 3600
        print(f"{name}: {len(d.utts)} utterances, {len(d.speakers)} speakers, {hours:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
