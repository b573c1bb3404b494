"""Real human speech as a Kaldi data dir: the Asterisk PBX studio prompts Debian ships.

The `asterisk-core-sounds-*` packages hold professionally recorded telephone prompts, one
speaker per language package, with the prompt texts in
/usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz:

    source    files under /usr/share/asterisk/sounds/      rate     speaker
    en-g722   en_US_f_Allison/**/*.g722 (G.722, ffmpeg)    16 kHz   Allison (en)
    en-wav    en_US_f_Allison/**/*.wav                      8 kHz   Allison (en), same takes as en-g722
    es        es_MX_f_Allison/**/*.wav                      8 kHz   Allison (es)
    fr        fr_CA_f_June/**/*.wav                         8 kHz   June
    ru        ru_RU_f_IvrvoiceRU/**/*.wav                   8 kHz   IvrvoiceRU
    es-co     <PROMPTS_ROOT>/asterisk-prompt-es-co/**.gsm     8 kHz   Colombian reader, no transcripts
    fr-armelle <PROMPTS_ROOT>/asterisk-prompt-fr-armelle/**.gsm 8 kHz Armelle, no transcripts
    it-menardi it_IT_f_Menardi/**/*.wav (-it-menardi-wav)   8 kHz   Menardi, no transcripts

Speaker ids are one per source (`asterisk-en-g722`, ...). Note that `en-g722` and `en-wav` are
the same recordings in two codings (use one; default: `en-g722`), and that `en` and `es` are
read by the same person, so a speaker probe on these ids partly measures language. The
`silence/` prompts and the texts in brackets (tones, beeps) are left out. Audio is resampled to
`sample_rate` (8 kHz sources stay band-limited to 4 kHz: useful for reconstruction losses, not
for judging high-band quality). `text` holds the prompt text (English digits and `#`/`*` spelt
out) and `utt2lang` the language; `with_text=False` writes a reconstruction-only dir (no `text`,
and prompts without a transcript are kept).

    python -m recipes.audio_corpus --out data/asterisk --sample-rate 16000
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf

from .datadir import DataDir

__all__ = ["SOURCES", "load_audio", "build_asterisk", "read_prompts", "available_sources", "spell_numbers_en"]

SOUNDS = Path("/usr/share/asterisk/sounds")
# asterisk-prompt-es-co and -fr-armelle, unpacked by recipes/install_system_deps.sh rather than installed: they
# write into sounds/es and sounds/fr, which the core sound packages make symlinks to their own readers' folders
PROMPTS_ROOT = Path(os.environ.get("DUET_PROMPTS_ROOT", "/usr/local/share/duet/prompts"))
DOCS = Path("/usr/share/doc")
SOURCES = {  # name: (directory, extension, language, doc package)
    "en-g722": ("en_US_f_Allison", ".g722", "en", "asterisk-core-sounds-en"),
    "en-wav": ("en_US_f_Allison", ".wav", "en", "asterisk-core-sounds-en"),
    "es": ("es_MX_f_Allison", ".wav", "es", "asterisk-core-sounds-es"),
    "fr": ("fr_CA_f_June", ".wav", "fr", "asterisk-core-sounds-fr"),
    "ru": ("ru_RU_f_IvrvoiceRU", ".wav", "ru", "asterisk-core-sounds-ru"),
    "es-co": (str(PROMPTS_ROOT / "asterisk-prompt-es-co/usr/share/asterisk/sounds/es"), ".gsm", "es", None),
    "fr-armelle": (str(PROMPTS_ROOT / "asterisk-prompt-fr-armelle/usr/share/asterisk/sounds/fr"), ".gsm", "fr", None),
    "it-menardi": ("it_IT_f_Menardi", ".wav", "it", None),
}

DEFAULT_SOURCES = ("en-g722", "es", "fr", "ru")


def available_sources(sounds: Path = SOUNDS) -> list[str]:
    out = []
    for name, (directory, ext, _, _) in SOURCES.items():
        d = sounds / directory
        if d.is_dir() and any(d.rglob(f"*{ext}")) and (ext not in FFMPEG_FORMATS or shutil.which("ffmpeg")):
            out.append(name)
    return out


def read_prompts(lang: str, docs: Path = DOCS) -> dict[str, str]:
    """Prompt name (e.g. `digits/5`, `vm-intro`) → text, from core-sounds-<lang>.txt.gz."""
    path = docs / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
    if not path.is_file():
        return {}
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_en(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _number_en(n % 100))
    if n < 1_000_000:
        return _number_en(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + _number_en(n % 1000))
    return " ".join(_ONES[int(d)] for d in str(n))


def spell_numbers_en(text: str) -> str:
    """English prompt text → words: digits spelt out, `#` → pound, `*` → star, 3D → three d."""
    text = text.replace("#", " pound ").replace("*", " star ")
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", lambda m: m.group(1), text)  # ordinals read as cardinals
    return re.sub(r"\d+", lambda m: " " + _number_en(int(m.group(0))) + " ", text)


def _normalise_text(text: str, lang: str) -> str:
    if lang == "en":
        text = spell_numbers_en(text)
    text = unicodedata.normalize("NFC", text.lower())
    text = re.sub(r"[^\w' ]+", " ", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


FFMPEG_FORMATS = {".g722": ("g722", 16000), ".gsm": ("gsm", 8000)}  # raw codings soundfile cannot read


def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Any file of the archive's speech packages (wav, ogg, G.722, GSM) → mono float32 at `sample_rate`."""
    if path.suffix in FFMPEG_FORMATS:
        fmt, sr = FFMPEG_FORMATS[path.suffix]
        res = subprocess.run(["ffmpeg", "-v", "error", "-f", fmt, "-i", str(path), "-ac", "1", "-ar", str(sr),
                              "-f", "s16le", "-"], capture_output=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"{path}: ffmpeg could not decode {fmt}: {res.stderr.decode()[-300:]}")
        audio = np.frombuffer(res.stdout, dtype="<i2").astype(np.float32) / 32768.0
    else:
        audio, sr = sf.read(path, dtype="float32")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
    if sr != sample_rate and len(audio):
        import torch
        import torchaudio.functional as AF

        audio = AF.resample(torch.from_numpy(audio), sr, sample_rate).numpy()
    return audio


def build_asterisk(out_dir: str | Path, sample_rate: int = 16000, sources=DEFAULT_SOURCES,
                   with_text: bool = True, min_duration: float = 0.3, max_duration: float | None = 15.0,
                   sounds: Path = SOUNDS, docs: Path = DOCS, progress: bool = True,
                   max_files_per_source: int | None = None) -> DataDir:
    """Write the Asterisk prompts of `sources` as a Kaldi data dir at `out_dir` (wav/ below it,
    16-bit PCM at `sample_rate`). Returns the validated DataDir."""
    out_dir = Path(out_dir)
    missing = [s for s in sources if s not in SOURCES]
    if missing:
        raise ValueError(f"unknown Asterisk sources {missing}, expected some of {list(SOURCES)}")
    usable = available_sources(sounds)
    absent = [s for s in sources if s not in usable]
    if absent:
        raise FileNotFoundError(f"Asterisk sources {absent} not installed under {sounds} (or ffmpeg missing "
                                f"for G.722); run recipes/install_system_deps.sh")
    files = []
    for source in sources:
        before = len(files)
        directory, ext, lang, doc_package = SOURCES[source]
        if with_text and not doc_package:
            raise ValueError(f"Asterisk source {source!r} has no transcripts; build it with with_text=False")
        prompts = read_prompts(lang, docs) if doc_package else {}
        if with_text and not prompts:
            raise FileNotFoundError(f"{docs}/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz is missing: the "
                                    f"prompt texts of source {source!r} come with the Debian package "
                                    f"asterisk-core-sounds-{lang}; run recipes/install_system_deps.sh")
        root = sounds / directory
        for path in sorted(root.rglob(f"*{ext}")):
            name = path.relative_to(root).with_suffix("").as_posix()
            if name.startswith("silence/"):
                continue
            text = prompts.get(name)
            if text is not None and text.startswith("[") and text.endswith("]"):
                continue  # tones and beeps, not speech
            transcript = _normalise_text(text, lang) if text else ""
            if with_text and not transcript:
                continue
            files.append((source, lang, name, path, transcript))
        if max_files_per_source and len(files) - before > max_files_per_source:  # evenly spread subset
            mine = files[before:]
            step = len(mine) / max_files_per_source
            files[before:] = [mine[int(i * step)] for i in range(max_files_per_source)]
    if progress:
        from tqdm import tqdm

        files_iter = tqdm(files, desc=f"asterisk {out_dir.name}", unit="file")
    else:
        files_iter = files
    wav_scp, utt2spk, text, utt2dur, utt2lang = {}, {}, {}, {}, {}
    skipped = 0
    for source, lang, name, path, transcript in files_iter:
        audio = load_audio(path, sample_rate)
        dur = len(audio) / sample_rate
        if dur < min_duration or (max_duration is not None and dur > max_duration):
            skipped += 1
            continue
        spk = f"asterisk-{source}"
        utt = f"{spk}-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}"
        wav = out_dir / "wav" / spk / f"{utt}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        if peak > 0.999:
            audio = audio * (0.999 / peak)
        sf.write(wav, audio, sample_rate, subtype="PCM_16")
        wav_scp[utt], utt2spk[utt], utt2dur[utt], utt2lang[utt] = str(wav.resolve()), spk, dur, lang
        text[utt] = transcript
    data = DataDir(wav_scp=wav_scp, utt2spk=utt2spk, text=text if with_text else None, utt2dur=utt2dur,
                   utt2lang=utt2lang, path=out_dir)
    data.save(out_dir)
    meta = {"sources": list(sources), "sample_rate": sample_rate, "with_text": with_text,
            "num_utts": len(wav_scp), "skipped_duration": skipped,
            "hours": round(sum(utt2dur.values()) / 3600, 4), "command": " ".join(sys.argv)}
    (out_dir / "corpus.json").write_text(json.dumps(meta, indent=1) + "\n")
    return DataDir.load(out_dir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Asterisk prompts → Kaldi data dir")
    p.add_argument("--out", required=True)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES), help=f"comma list of {list(SOURCES)}")
    p.add_argument("--no-text", action="store_true", help="reconstruction-only: no text file")
    p.add_argument("--max-duration", type=float, default=15.0)
    args = p.parse_args(argv)
    d = build_asterisk(args.out, args.sample_rate, tuple(args.sources.split(",")), not args.no_text,
                       max_duration=args.max_duration)
    print(f"{args.out}: {len(d.utts)} utterances, {len(d.speakers)} speakers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
