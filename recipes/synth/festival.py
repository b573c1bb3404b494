"""festival voices with the engine's own segment and word times, many utterances per process.

festival takes a while to start and to load a voice, so `synthesize_batch` writes one Scheme
script for a whole batch and runs one `festival --batch` process. Per utterance the script
selects the voice (resetting its parameters), applies rate/pitch, runs `utt.synth`, saves the
wave (`utt.save.wave`, RIFF) and writes the Segment relation's end times (what
`utt.save.segs` writes) plus, per Word, its first segment's start and last segment's end.

Voices: kal_diphone, ked_diphone (diphone, 16 kHz; rate via `Duration_Stretch`, pitch via the
voice's `int_lr_params` target F0 mean/std), cmu_us_slt_arctic_hts (HTS, 32 kHz; rate via
hts_engine's `-r`; pitch is fixed: this festival build ignores `-fm`, checked bit-identical).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import soundfile as sf

from .base import Segment, Synthesis, SynthError
from .phones import cmu_to_units

__all__ = ["VOICES", "PITCH_CONTROL", "synthesize", "synthesize_batch", "available"]

VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
PITCH_CONTROL = {"kal_diphone": True, "ked_diphone": True, "cmu_us_slt_arctic_hts": False}
_DIPHONE_F0 = {"kal_diphone": (105.0, 14.0), "ked_diphone": (105.0, 15.0)}  # the voices' own int_lr_params
_DIPHONE_STRETCH = 1.1  # both diphone voices set Duration_Stretch 1.1

_PRELUDE = r"""
(define (duet_save utt fname)
  (let ((fd (fopen fname "w")))
    (mapcar (lambda (s) (format fd "seg %s %f\n" (item.name s) (item.feat s "end")))
            (utt.relation.items utt 'Segment))
    (mapcar (lambda (w)
              (format fd "word %s %f %f\n" (item.name w)
                      (item.feat w "R:SylStructure.daughter1.daughter1.R:Segment.p.end")
                      (item.feat w "R:SylStructure.daughtern.daughtern.R:Segment.end")))
            (utt.relation.items utt 'Word))
    (fclose fd)))
"""


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _voice_setup(voice: str, rate: float, pitch: float) -> str:
    if voice not in VOICES:
        raise SynthError(f"festival: unknown voice {voice!r}, expected one of {VOICES}")
    lines = [f"(voice_{voice})"]
    if voice in _DIPHONE_F0:
        mean, std = _DIPHONE_F0[voice]
        lines.append(f"(Parameter.set 'Duration_Stretch {_DIPHONE_STRETCH / rate:.4f})")
        lines.append(f"(set! int_lr_params '((target_f0_mean {mean * pitch:.2f}) (target_f0_std {std * pitch:.2f}) "
                     f"(model_f0_mean 170) (model_f0_std 34)))")
    else:
        lines.append(f"(set! hts_engine_params (append {voice}::hts_engine_params "
                     f"(list (list \"-r\" {rate:.4f}))))")
    return "\n".join(lines)


def available() -> tuple[bool, str]:
    if not shutil.which("festival"):
        return False, "festival not installed (apt-get install festival festvox-kallpc16k ...)"
    return True, "festival binary (batch Scheme)"


def installed_voices() -> list[str]:
    roots = [Path("/usr/share/festival/voices")]
    found = {p.name for r in roots if r.is_dir() for p in r.glob("*/*") if p.is_dir()}
    return [v for v in VOICES if v in found]


def synthesize_batch(items: list[tuple[str, str, float, float]], timeout: float | None = None,
                     retries: int = 2) -> list[Synthesis | SynthError]:
    """items: (text, voice, rate, pitch) → one Synthesis (or the SynthError for that item) per
    item, all synthesised by one festival process. Festival now and then aborts mid-batch (heap corruption,
    exit -6, seen once in ~5000 conversations) and takes the rest of the batch with it: the items it left
    without output are tried again in a fresh process, up to `retries` times."""
    if not shutil.which("festival"):
        raise SynthError("festival: binary not found (apt-get install festival)")
    if not items:
        return []
    with tempfile.TemporaryDirectory(prefix="duet-festival-") as tmp:
        tmp = Path(tmp)
        script = [_PRELUDE]
        for i, (text, voice, rate, pitch) in enumerate(items):
            script.append(_voice_setup(voice, rate, pitch))
            script.append(f"(set! duet_utt (Utterance Text {_scheme_string(text)}))")
            script.append("(utt.synth duet_utt)")
            script.append(f"(utt.save.wave duet_utt \"{tmp}/{i}.wav\" 'riff)")
            script.append(f"(duet_save duet_utt \"{tmp}/{i}.txt\")")
        (tmp / "batch.scm").write_text("\n".join(script) + "\n", encoding="ascii", errors="replace")
        res = subprocess.run(["festival", "--batch", str(tmp / "batch.scm")], capture_output=True, text=True,
                             timeout=timeout or 60 + 20 * len(items))
        out: list[Synthesis | SynthError] = []
        for i, (text, voice, rate, pitch) in enumerate(items):
            wav, txt = tmp / f"{i}.wav", tmp / f"{i}.txt"
            if not (wav.is_file() and txt.is_file()):
                out.append(SynthError(f"festival {voice}: no output for {text!r} (exit {res.returncode}: "
                                      f"{res.stderr.strip()[-300:]})"))
                continue
            audio, sr = sf.read(wav, dtype="float32")
            if audio.ndim > 1:
                audio = audio.mean(axis=1)
            out.append(_parse(txt.read_text(), audio, sr, voice))
    missing = [i for i, r in enumerate(out) if isinstance(r, SynthError)]
    if missing and res.returncode != 0 and retries > 0:  # a crash, not a refusal: again, in new processes, the
        # item it crashed on alone (some crash festival every time) and the ones it never reached together
        for part in ([missing[0]], missing[1:]):
            for i, r in zip(part, synthesize_batch([items[i] for i in part], timeout, retries - 1)):
                out[i] = r
    return out


def _parse(listing: str, audio, sr: int, voice: str) -> Synthesis:
    phones, words, native = [], [], []
    start = 0.0
    for line in listing.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "seg":
            name, end = parts[1], float(parts[2])
            native.append(name)
            units = cmu_to_units(name)
            step = (end - start) / len(units)
            phones.extend(Segment(u, start + k * step, start + (k + 1) * step) for k, u in enumerate(units))
            start = end
        elif parts[0] == "word" and len(parts) == 4:
            w0, w1 = float(parts[2]), float(parts[3])
            label = "".join(c for c in parts[1].lower() if c.isalnum() or c == "'").strip("'")
            if w1 > w0 and label:
                words.append(Segment(label, w0, w1))
    if not phones:
        raise SynthError(f"festival {voice}: no segments in the output listing")
    return Synthesis(audio, sr, phones, words, "festival", voice, native)


def synthesize(text: str, voice: str = "kal_diphone", rate: float = 1.0, pitch: float = 1.0) -> Synthesis:
    """One utterance (one festival process: prefer `synthesize_batch` for many)."""
    result = synthesize_batch([(text, voice, rate, pitch)])[0]
    if isinstance(result, SynthError):
        raise result
    return result
