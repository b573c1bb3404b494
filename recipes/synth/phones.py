"""One phone inventory for every engine, so frame labels mean the same thing across voices.

flite and festival speak the CMU (ARPAbet-like "radio") phone set; espeak-ng reports IPA. Both
are mapped onto `PHONES`: `sil` (id 0: silence/blank in frame labels), the 39 CMUdict phones
plus `ax` (schwa, which every engine produces), and `spn` for anything unmappable. The
inventory is fixed in code, so ids are identical in every corpus built with it.

An espeak phoneme event sometimes names two units at once (r-coloured vowels `ɪɹ`, triphthongs
`aɪə`); `ipa_to_units` then returns both and the caller splits the event's time equally between
them — the one place where a synthetic timing is not the engine's own.
"""
from __future__ import annotations

import unicodedata

__all__ = ["PHONES", "PHONE_IDS", "SILENCE", "UNKNOWN", "cmu_to_units", "ipa_to_units", "write_phones_txt"]

SILENCE = "sil"
UNKNOWN = "spn"
PHONES: tuple[str, ...] = (
    SILENCE,
    "aa", "ae", "ah", "ao", "aw", "ax", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g",
    "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th",
    "uh", "uw", "v", "w", "y", "z", "zh",
    UNKNOWN,
)
PHONE_IDS: dict[str, int] = {p: i for i, p in enumerate(PHONES)}

_CMU_SILENCE = {"pau", "h#", "sil", "ssil", "brth", "_", "#", ""}
_CMU_ALIASES = {"axr": ["er"], "el": ["ax", "l"], "em": ["ax", "m"], "en": ["ax", "n"], "dx": ["d"],
                "ix": ["ih"], "ux": ["uw"], "hv": ["hh"], "nx": ["n"], "q": ["t"], "ax-h": ["ax"]}


def cmu_to_units(name: str) -> list[str]:
    """A flite/festival phone name → units of PHONES (silence → ['sil'])."""
    name = name.lower().rstrip("012")  # lexical stress digits, if any
    if name in _CMU_SILENCE:
        return [SILENCE]
    if name in _CMU_ALIASES:
        return list(_CMU_ALIASES[name])
    return [name] if name in PHONE_IDS else [UNKNOWN]


# IPA (espeak-ng, length marks and diacritics removed) → units; matched longest first.
_IPA: dict[str, list[str]] = {
    "aɪə": ["ay", "ax"], "aʊə": ["aw", "ax"], "aɪɚ": ["ay", "er"], "aʊɚ": ["aw", "er"],
    "aɪ": ["ay"], "ɑɪ": ["ay"], "ʌɪ": ["ay"], "ɐɪ": ["ay"],
    "aʊ": ["aw"], "æʊ": ["aw"], "ʌʉ": ["aw"], "ɐʊ": ["aw"],
    "eɪ": ["ey"], "ɛɪ": ["ey"], "oʊ": ["ow"], "əʊ": ["ow"], "ʌʊ": ["ow"], "ɔʊ": ["ow"],
    "ɔɪ": ["oy"], "oɪ": ["oy"], "eə": ["eh"], "ɛə": ["eh"], "iə": ["ih"], "ɪə": ["ih"],
    "ʊə": ["uh"], "oə": ["ao"], "əɪ": ["er"], "aa": ["aa"],
    "dʒ": ["jh"], "tʃ": ["ch"], "ɝ": ["er"], "ɚ": ["er"], "ɜ": ["er"],
    "a": ["ae"], "æ": ["ae"], "ɑ": ["aa"], "ɒ": ["aa"], "ɐ": ["ah"], "ʌ": ["ah"], "ɔ": ["ao"],
    "o": ["ow"], "e": ["eh"], "ɛ": ["eh"], "ə": ["ax"], "ᵻ": ["ih"], "ɪ": ["ih"], "i": ["iy"],
    "ʊ": ["uh"], "u": ["uw"], "ʉ": ["uw"], "ɯ": ["uw"], "ɵ": ["ow"], "ø": ["er"], "œ": ["eh"], "y": ["uw"],
    "b": ["b"], "d": ["d"], "f": ["f"], "h": ["hh"], "k": ["k"], "l": ["l"], "m": ["m"], "n": ["n"],
    "p": ["p"], "s": ["s"], "t": ["t"], "v": ["v"], "w": ["w"], "z": ["z"], "ɡ": ["g"], "g": ["g"],
    "ŋ": ["ng"], "ɹ": ["r"], "r": ["r"], "ɾ": ["d"], "ʔ": ["t"], "θ": ["th"], "ð": ["dh"],
    "ʃ": ["sh"], "ʒ": ["zh"], "j": ["y"], "ɫ": ["l"], "ɬ": ["l"], "x": ["k"], "ç": ["hh"],
    "ʍ": ["w"], "ʋ": ["v"], "ɲ": ["n"], "ʁ": ["r"], "β": ["v"], "ɣ": ["g"],
}
_IPA_MAXLEN = max(len(k) for k in _IPA)
_STRIP = set("ːˑ:ˈˌ'`-_ʰʲʷ")


def ipa_to_units(ipa: str) -> list[str]:
    """An espeak-ng IPA phoneme name → units of PHONES. Pauses ('' or '_') → ['sil']."""
    text = "".join(c for c in unicodedata.normalize("NFD", ipa)
                   if c not in _STRIP and not unicodedata.combining(c))
    if not text:
        return [SILENCE]
    units: list[str] = []
    i = 0
    while i < len(text):
        for n in range(min(_IPA_MAXLEN, len(text) - i), 0, -1):
            piece = text[i:i + n]
            if piece in _IPA:
                units.extend(_IPA[piece])
                i += n
                break
        else:
            units.append(UNKNOWN)
            i += 1
    return units


def write_phones_txt(path) -> None:
    """Kaldi-style symbol table: `<phone> <id>` per line, `sil 0` first."""
    with open(path, "w", encoding="utf-8") as f:
        for i, p in enumerate(PHONES):
            f.write(f"{p} {i}\n")
