"""One clip of a synthetic conversation: a TTS utterance placed on a channel by its first word's onset.

The conversation assembly (`recipes.dialogue.synth`) decides who says what when; this module turns one such
decision into audio and word times (engine, resampling, leading pause cut, loudness, formant shift) and mixes
the clips into the stereo conversation, so the assembly reads as the conversation's dynamics alone.
"""
from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING

import numpy as np

from .tasks import Utterance
from .voices import Voice, recording_hash, resample, synthesize_voice

if TYPE_CHECKING:
    from .synth import CorpusConfig

USER_CHANNEL, SYSTEM_CHANNEL = "1", "2"  # the corpus's CTM channels (stereo rows 0 and 1)


@dataclasses.dataclass
class Clip:
    """Audio placed so that its first word starts at `onset` (seconds); words in absolute time."""

    audio: np.ndarray
    offset: float  # where the clip's first sample goes
    words: list[tuple[str, float, float]]


def speech_from_first_word(syn, rms: float) -> np.ndarray:
    """A clip's audio as the corpus places it: from its first word's onset (the engine's near-silent leading
    pause cut), scaled to loudness `rms`, clipped to ±0.99."""
    audio = syn.audio[int(round(syn.words[0].start * syn.sample_rate)):]
    return np.clip(audio * (rms / max(1e-6, float(np.sqrt(np.mean(audio ** 2))))), -0.99, 0.99)


class ConversationBuilder:
    def __init__(self, cfg: CorpusConfig, rng: random.Random, formant: float = 1.0) -> None:
        self.cfg, self.rng, self.formant = cfg, rng, formant
        self.clips: dict[str, list[Clip]] = {USER_CHANNEL: [], SYSTEM_CHANNEL: []}
        self.recordings: list[dict] = []  # per clip: channel, source, hash of the recording it was cut from
        self.approximate_times = 0  # clips whose word times were spread over the speech (engine words did not match)

    def say(self, channel: str, utt: Utterance, onset: float, voice: str | Voice, rate=1.0, pitch=1.0) -> Clip:
        voice = Voice(name=voice) if isinstance(voice, str) else voice
        syn = synthesize_voice(utt.tts_text, voice, voice.rate * rate, voice.pitch * pitch)
        self.recordings.append({"channel": "user" if channel == USER_CHANNEL else "system", "source": voice.id,
                                "hash": recording_hash(syn.audio)})
        if syn.sample_rate != self.cfg.sample_rate:
            if not self.cfg.held:
                raise ValueError(f"flite {voice.name} gives {syn.sample_rate} Hz, corpus sample_rate is "
                                 f"{self.cfg.sample_rate}")
            syn = dataclasses.replace(syn, audio=resample(syn.audio, syn.sample_rate, self.cfg.sample_rate),
                                      sample_rate=self.cfg.sample_rate)  # word times are seconds: unchanged
        if syn.words is None or len(syn.words) != len(utt.spoken):
            if not self.cfg.held or not syn.words:
                raise ValueError(f"{voice.engine} {voice.name}: {len(syn.words or [])} word times for "
                                 f"{len(utt.spoken)} words of {utt.tts_text!r}")
            syn = dataclasses.replace(syn, words=_spread_words(utt, syn.words))
            self.approximate_times += 1
        words = _display_words(utt, syn.words)
        shift = onset - words[0][1]
        # The engine's leading pause is near-silent, not zero (flite here: -55 to -75 dB, 160-220 ms), and the codec
        # hears it: its sound changes with the speaker's pitch, and its length with the first word (162 ms before
        # "sure", 222 ms before "wow"). Kept, it told a model the user's style, and reached the grid before a
        # reply's first text token (text_lead steps ahead of the onset) to tell it the word. Cut it.
        audio = speech_from_first_word(syn, self.cfg.rms)
        if channel == USER_CHANNEL and self.formant != 1.0:
            from ..codec.perturb import change_voice  # Praat PSOLA: same length and timing

            audio = change_voice(audio, syn.sample_rate, 1.0, 1.0, self.formant, seed=self.rng.randrange(1, 2**31 - 1))
        clip = Clip(audio, onset, [(w, s + shift, e + shift) for w, s, e in words])
        self.clips[channel].append(clip)
        return clip

    def words(self) -> dict[str, list[tuple[str, float, float]]]:
        """Each channel's words in time order (the CTM rows)."""
        return {ch: sorted((w for c in clips for w in c.words), key=lambda w: w[1]) for ch, clips in self.clips.items()}

    def render(self, duration: float) -> np.ndarray:
        sr = self.cfg.sample_rate
        out = np.zeros((2, int(round(duration * sr))), dtype=np.float32)
        for row, channel in enumerate((USER_CHANNEL, SYSTEM_CHANNEL)):
            for clip in self.clips[channel]:
                start = int(round(clip.offset * sr))
                a = clip.audio[max(0, -start):out.shape[1] - start]
                out[row, max(0, start):max(0, start) + len(a)] += a
        return np.clip(out, -1, 1)


def _spread_words(utt: Utterance, engine_words):
    """Word times for an engine that split the words otherwise (espeak-ng, festival on a rare word): the spoken words
    spread over the engine's speech span in proportion to their letters."""
    from ..synth.base import Segment

    spoken = " ".join(utt.spoken).split()
    start, end = engine_words[0].start, engine_words[-1].end
    weights = np.cumsum([0] + [len(w) + 1 for w in spoken]) / (sum(len(w) + 1 for w in spoken))
    return [Segment(w, start + a * (end - start), start + b * (end - start))
            for w, a, b in zip(spoken, weights[:-1], weights[1:])]


def _display_words(utt: Utterance, engine_words) -> list[tuple[str, float, float]]:
    """Engine word segments carry the spoken form ("double you" is two): map back to display words."""
    out, i = [], 0
    for display, spoken in zip(utt.words, utt.spoken):
        n = len(spoken.split())
        seg = engine_words[i:i + n]
        out.append((display, seg[0].start, seg[-1].end))
        i += n
    return out


def truncate_clip(clip: Clip, stop: float, sr: int) -> None:
    """Cut a clip at absolute time `stop` with a 20 ms fade-out; words that had not started 50 ms
    before the cut are dropped, the word being spoken ends at the cut."""
    n = max(0, int(round((stop - clip.offset) * sr)))
    fade = min(n, int(0.02 * sr))
    audio = clip.audio[:n].copy()
    audio[n - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    clip.audio = audio
    clip.words = [(w, s, min(e, stop)) for w, s, e in clip.words if s < stop - 0.05]
