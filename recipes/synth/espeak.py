"""espeak-ng voices with phoneme and word times from libespeak-ng's own events (ctypes).

`espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ..., PHONEME_EVENTS | PHONEME_IPA)` makes the
synth callback deliver, beside the audio, an `espeakEVENT_PHONEME` per phoneme and an
`espeakEVENT_WORD` per word. Each event's `sample` field is the exact sample index at which
that phoneme (word) starts in the audio delivered so far (`audio_position` is the same in
whole ms), so a phone spans from its event to the next phoneme event, and the last one to the
end of the audio. Pause phonemes (IPA '') become `sil`; audio before the first phoneme event is
silence. Word times: a word event assigns the phonemes that start at or after it (until the
next word event) to that word; the word spans its first to its last non-pause phone.

A speaker is an accent (`en-us`, `en-gb-x-rp`, ...) plus a variant (`m3`, `f2`, `klatt4`, ...),
rate (words per minute = 175 × rate) and pitch (espeak pitch parameter = 50 × pitch, 0..100).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .base import Segment, Synthesis, SynthError
from .phones import ipa_to_units

__all__ = ["ACCENTS", "VARIANTS", "synthesize", "available", "list_variants"]

ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
# espeak-ng-data/voices/!v variants that are speech-like (whisper / 'fast' test voice left out)
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak", "klatt", "klatt2",
    "klatt3", "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio",
    "aunty", "belinda", "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2",
    "Gene", "Gene2", "grandma", "grandpa", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3",
    "iven4", "Jacky", "john", "kaukovalta", "Lee", "linda", "marcelo", "Marco", "Mario", "max", "Michael",
    "michel", "miguel", "Mike", "Mr", "Nguyen", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "sandro", "shelby", "steph", "steph2", "steph3", "Storm", "travis", "Tweaky", "victor",
    "zac", "anika", "AnxiousAndy",
)

_EVENT_WORD, _EVENT_PHONEME = 1, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA, _INIT_DONT_EXIT = 0x1, 0x2, 0x8000
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3
_CHARS_UTF8 = 1


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """libespeak-ng loaded once per process (global state: one synthesis at a time)."""

    _instance: "_Espeak | None" = None

    def __init__(self) -> None:
        self.lib = lib = ctypes.CDLL("libespeak-ng.so.1")
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                                 _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT)
        if self.sample_rate <= 0:
            raise SynthError(f"espeak-ng: espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _CALLBACK(self._on_synth)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "_Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _on_synth(self, wav, num_samples, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
            e = events[i]
            if e.type in (_EVENT_WORD, _EVENT_PHONEME):
                name = bytes(e.id.string).split(b"\0")[0] if e.type == _EVENT_PHONEME else b""
                self._events.append((e.type, e.sample, e.text_position, e.length, name))
            i += 1
        return 0

    def pron_units(self, word: str) -> int:
        """Number of PHONES units in espeak's own pronunciation of one word (current voice)."""
        ptr = ctypes.c_char_p(word.encode("utf-8"))
        out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, 0x02 | (ord("|") << 8))
        if not out:
            return 0
        return sum(len(ipa_to_units(p)) for p in out.decode("utf-8", errors="replace").replace(" ", "|").split("|")
                   if ipa_to_units(p) != ["sil"])

    def synth(self, text: str, voice: str, variant: str, rate: float, pitch: float) -> Synthesis:
        name = f"{voice}+{variant}" if variant else voice
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise SynthError(f"espeak-ng: voice {name!r} not found")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, int(round(175 * rate)), 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(min(100, max(0, round(50 * pitch)))), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise SynthError(f"espeak-ng {name}: espeak_Synth returned {err} for {text!r}")
        self.lib.espeak_Synchronize()
        if not self._chunks:
            raise SynthError(f"espeak-ng {name}: no audio for {text!r}")
        audio = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        phones, words, native = _timings(self._events, data, len(audio), self.sample_rate, self.pron_units)
        return Synthesis(audio, self.sample_rate, phones, words, "espeak", name, native)


def _timings(events, text: bytes, num_samples: int, sr: int, pron_units=None):
    """Phone segments (mapped units), word segments and native names from the event list."""
    ph_events = [(s, n.decode("utf-8", errors="replace")) for t, s, _, _, n in events if t == _EVENT_PHONEME]
    word_events = [(s, pos, length) for t, s, pos, length, _ in events if t == _EVENT_WORD]
    phones: list[Segment] = []
    native: list[str] = []
    owner: list[int] = []  # index of the word each mapped phone belongs to (-1: none / pause)
    if ph_events and ph_events[0][0] > 0:
        phones.append(Segment("sil", 0.0, ph_events[0][0] / sr))
        owner.append(-1)
    for i, (start, name) in enumerate(ph_events):
        end = ph_events[i + 1][0] if i + 1 < len(ph_events) else num_samples
        if end <= start:
            continue  # zero-length (e.g. the final pause event at the very end of the audio)
        native.append(name)
        units = ipa_to_units(name)
        word = -1
        if units != ["sil"]:
            for k, (ws, _, _) in enumerate(word_events):
                if ws <= start:
                    word = k
        step = (end - start) / len(units)
        for j, u in enumerate(units):
            phones.append(Segment(u, (start + j * step) / sr, (start + (j + 1) * step) / sr))
            owner.append(word)
    # A word event's text_position (1-based, in characters) falls inside one whitespace-separated
    # token of the input. espeak joins unstressed function words to their neighbour ("on the"
    # gets one event): such a group's phones are split between its tokens by the number of units
    # in each token's own pronunciation (espeak_TextToPhonemes), when those counts add up;
    # otherwise the group stays one entry labelled with its tokens joined by '_'.
    chars = text.decode("utf-8", errors="replace")
    tokens = chars.split()
    token_of: list[int] = []  # character index → token index (-1 on whitespace)
    t, inside = -1, False
    for c in chars:
        if not c.isspace() and not inside:
            t += 1
        inside = not c.isspace()
        token_of.append(t if inside else -1)
    firsts = []
    for k, (_, pos, _) in enumerate(word_events):
        firsts.append(token_of[pos - 1] if 0 < pos <= len(token_of) else -1)
    words: list[Segment] = []
    for k, first in enumerate(firsts):
        mine = [p for p, o in zip(phones, owner) if o == k]
        if first < 0 or not mine:
            continue
        nxt = next((f for f in firsts[k + 1:] if f > first), len(tokens))
        group = [_clean_word(w) for w in tokens[first:nxt]]
        group = [w for w in group if w]
        if not group:
            continue
        counts = [pron_units(w) for w in group] if len(group) > 1 and pron_units else None
        if counts and sum(counts) == len(mine) and all(counts):
            i = 0
            for w, n in zip(group, counts):
                words.append(Segment(w, mine[i].start, mine[i + n - 1].end))
                i += n
        else:
            words.append(Segment("_".join(group), mine[0].start, mine[-1].end))
    return phones, words, native


def _clean_word(token: str) -> str:
    return "".join(c for c in token.lower() if c.isalnum() or c == "'").strip("'")


def list_variants() -> list[str]:
    """Variants of VARIANTS whose file exists in this espeak-ng installation."""
    for root in ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/share/espeak-ng-data",
                 "/usr/lib/aarch64-linux-gnu/espeak-ng-data"):
        vdir = Path(root) / "voices" / "!v"
        if vdir.is_dir():
            present = set(os.listdir(vdir))
            return [v for v in VARIANTS if v in present]
    return []


def available() -> tuple[bool, str]:
    try:
        _Espeak.get()
        return True, "libespeak-ng (ctypes events)"
    except (OSError, SynthError) as e:
        return False, f"libespeak-ng not usable ({e}); apt-get install espeak-ng"


def synthesize(text: str, voice: str = "en-us", variant: str = "", rate: float = 1.0,
               pitch: float = 1.0) -> Synthesis:
    """One utterance with espeak-ng. rate: speed factor; pitch: factor on espeak's pitch parameter."""
    try:
        engine = _Espeak.get()
    except OSError as e:
        raise SynthError(f"espeak-ng: cannot load libespeak-ng.so.1 ({e}); apt-get install espeak-ng") from e
    return engine.synth(text, voice, variant, rate, pitch)
