"""flite voices with the engine's exact phone and word times.

Primary path: libflite through ctypes (the same library the `flite` binary uses). After
`flite_synth_text` the utterance's Segment relation holds each phone's end time — the numbers
`flite -psdur` prints — and each Word's first/last segment give word times; the waveform comes
from the same utterance, so audio and times cannot disagree. When the shared libraries cannot be
loaded we fall back to the `flite` binary with `-psdur` (phone times only, no word times).

Voices: kal16 (diphone; its final pause is cut at its midpoint, so the last phone end is clipped
to the audio), rms, slt, awb (clustergen, 5 ms frames). Rate via `duration_stretch`; pitch via
`int_f0_target_mean` (kal16) or `f0_shift` (slt, awb); rms ignores both pitch features (checked:
the waveform is bit-identical), so rms speakers differ in rate only (`PITCH_CONTROL`).
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from .base import Segment, Synthesis, SynthError
from .phones import cmu_to_units

__all__ = ["VOICES", "PITCH_CONTROL", "synthesize", "available", "psdur"]

VOICES = ("kal16", "rms", "slt", "awb")
PITCH_CONTROL = {"kal16": True, "rms": False, "slt": True, "awb": True}
_DIPHONE = {"kal16"}
_P = ctypes.c_void_p


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", _P)]


class _Wave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
                ("num_channels", ctypes.c_int), ("samples", ctypes.POINTER(ctypes.c_short))]


class _Flite:
    """libflite loaded once per process (flite keeps global state: one synthesis at a time)."""

    _instance: "_Flite | None" = None

    def __init__(self) -> None:
        g = ctypes.RTLD_GLOBAL
        self.lib = lib = ctypes.CDLL("libflite.so.1", mode=g)
        lang = ctypes.CDLL("libflite_usenglish.so.1", mode=g)
        lex = ctypes.CDLL("libflite_cmulex.so.1", mode=g)
        for name, res, args in (
                ("flite_synth_text", _P, [ctypes.c_char_p, _P]), ("utt_relation", _P, [_P, ctypes.c_char_p]),
                ("relation_head", _P, [_P]), ("item_next", _P, [_P]), ("utt_wave", _P, [_P]),
                ("ffeature_float", ctypes.c_float, [_P, ctypes.c_char_p]),
                ("ffeature_string", ctypes.c_char_p, [_P, ctypes.c_char_p]),
                ("delete_utterance", None, [_P]), ("feat_set_float", None, [_P, ctypes.c_char_p, ctypes.c_float]),
                ("get_param_float", ctypes.c_float, [_P, ctypes.c_char_p, ctypes.c_float]),
                ("flite_add_lang", ctypes.c_int, [ctypes.c_char_p, _P, _P])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        lib.flite_init()
        self.libc = ctypes.CDLL(None)  # the process's C library: flite's rand()
        self.libc.srand.restype, self.libc.srand.argtypes = None, [ctypes.c_uint]
        for code in (b"eng", b"usenglish"):
            lib.flite_add_lang(code, ctypes.cast(lang.usenglish_init, _P), ctypes.cast(lex.cmu_lex_init, _P))
        self._keep = (lang, lex)
        self.voices: dict[str, tuple[int, dict[str, float]]] = {}

    @classmethod
    def get(cls) -> "_Flite":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def voice(self, name: str) -> tuple[int, dict[str, float]]:
        if name not in self.voices:
            vlib = ctypes.CDLL(f"libflite_cmu_us_{name}.so.1", mode=ctypes.RTLD_GLOBAL)
            reg = getattr(vlib, f"register_cmu_us_{name}")
            reg.restype, reg.argtypes = _P, [ctypes.c_char_p]
            v = reg(None)
            if not v:
                raise SynthError(f"flite: register_cmu_us_{name} returned NULL")
            feats = ctypes.cast(v, ctypes.POINTER(_Voice)).contents.features
            defaults = {k: self.lib.get_param_float(feats, k.encode(), d)
                        for k, d in (("duration_stretch", 1.0), ("int_f0_target_mean", 100.0), ("f0_shift", 1.0))}
            self.voices[name] = (v, defaults)
            self._keep = self._keep + (vlib,)
        return self.voices[name]

    def synth(self, text: str, voice: str, rate: float, pitch: float) -> Synthesis:
        v, defaults = self.voice(voice)
        feats = ctypes.cast(v, ctypes.POINTER(_Voice)).contents.features
        lib = self.lib
        lib.feat_set_float(feats, b"duration_stretch", defaults["duration_stretch"] / rate)
        if voice in _DIPHONE:
            lib.feat_set_float(feats, b"int_f0_target_mean", defaults["int_f0_target_mean"] * pitch)
        else:
            lib.feat_set_float(feats, b"f0_shift", defaults["f0_shift"] * pitch)
        # clustergen voices (slt) draw their noise excitation from libc's rand(): seed it per utterance,
        # so the audio depends on the utterance only, not on what this process synthesised before
        self.libc.srand(zlib.crc32(f"{voice}|{rate:.6f}|{pitch:.6f}|{text}".encode()))
        utt = lib.flite_synth_text(text.encode("ascii", errors="replace"), v)
        if not utt:
            raise SynthError(f"flite {voice}: synthesis failed for {text!r}")
        try:
            w = ctypes.cast(lib.utt_wave(utt), ctypes.POINTER(_Wave)).contents
            audio = np.ctypeslib.as_array(w.samples, shape=(w.num_samples,)).astype(np.float32) / 32768.0
            sr = int(w.sample_rate)
            native, phones = [], []
            start = 0.0
            for seg in _items(lib, utt, b"Segment"):
                name = lib.ffeature_string(seg, b"name").decode()
                end = float(lib.ffeature_float(seg, b"end"))
                native.append(name)
                phones.extend(_split(cmu_to_units(name), start, end))
                start = end
            words = []
            for word in _items(lib, utt, b"Word"):
                name = lib.ffeature_string(word, b"name").decode().lower()
                w0 = float(lib.ffeature_float(word, b"R:SylStructure.daughter1.daughter1.R:Segment.p.end"))
                w1 = float(lib.ffeature_float(word, b"R:SylStructure.daughtern.daughtern.R:Segment.end"))
                if w1 > w0:
                    words.append(Segment(name, w0, w1))
        finally:
            lib.delete_utterance(utt)
        return Synthesis(audio, sr, phones, words, "flite", voice, native)


def _items(lib, utt, relation: bytes):
    rel = lib.utt_relation(utt, relation)
    item = lib.relation_head(rel) if rel else None
    while item:
        yield item
        item = lib.item_next(item)


def _split(units: list[str], start: float, end: float) -> list[Segment]:
    step = (end - start) / len(units)
    return [Segment(u, start + i * step, start + (i + 1) * step) for i, u in enumerate(units)]


def available() -> tuple[bool, str]:
    """(usable, reason). Library path preferred; binary is enough."""
    try:
        _Flite.get()
        return True, "libflite (ctypes)"
    except OSError as e:
        if shutil.which("flite"):
            return True, f"flite binary (-psdur; no word times: {e})"
        return False, "flite not installed (apt-get install flite)"


def synthesize(text: str, voice: str = "slt", rate: float = 1.0, pitch: float = 1.0,
               use_library: bool = True) -> Synthesis:
    """One utterance. rate: speed factor (1.2 = 20 % faster); pitch: F0 factor (1 = voice default)."""
    if voice not in VOICES:
        raise SynthError(f"flite: unknown voice {voice!r}, expected one of {VOICES}")
    if use_library:
        try:
            lib = _Flite.get()
        except OSError:
            lib = None
        if lib is not None:
            return lib.synth(text, voice, rate, pitch)
    return _synthesize_cli(text, voice, rate, pitch)


_PSDUR = re.compile(r"(\S+):([0-9.]+)")


def psdur(output: str) -> list[tuple[str, float]]:
    """Parse `flite -psdur` output (`pau:0.220 hh:0.295 ...`, phone:end-time) → [(phone, end)]."""
    return [(m.group(1), float(m.group(2))) for m in _PSDUR.finditer(output)]


def _synthesize_cli(text: str, voice: str, rate: float, pitch: float) -> Synthesis:
    if not shutil.which("flite"):
        raise SynthError("flite: binary not found (apt-get install flite)")
    pitch_opt = (["--setf", f"int_f0_target_mean={95.0 * pitch:.3f}"] if voice in _DIPHONE
                 else ["--setf", f"f0_shift={pitch:.4f}"])
    stretch = (1.1 if voice in _DIPHONE else 1.0) / rate
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.4f}", *pitch_opt,
               "-psdur", "-t", text, "-o", str(wav)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0 or not wav.is_file():
            raise SynthError(f"flite {voice}: exit {res.returncode}: {res.stderr.strip()[:300]}")
        audio, sr = sf.read(wav, dtype="float32")
    phones, native, start = [], [], 0.0
    for name, end in psdur(res.stdout):
        native.append(name)
        phones.extend(_split(cmu_to_units(name), start, end))
        start = end
    if not phones:
        raise SynthError(f"flite {voice}: no -psdur output in {res.stdout[:200]!r}")
    return Synthesis(audio, sr, phones, None, "flite", voice, native)
