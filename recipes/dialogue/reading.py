"""The reading conversation: a real reader reads a few of their prompts with pauses between them and nobody asks
anything, so the system should listen (no reply, no turn taken in a pause). One of the corpus's conversation kinds
(`CorpusConfig.p_reading`); the assembly of the question-and-answer ones is `recipes.dialogue.synth`'s."""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from .clips import USER_CHANNEL, Clip, ConversationBuilder
from .voices import real_readers, recording_hash, resample, user_channel_conditions

if TYPE_CHECKING:
    from .synth import CorpusConfig


def build_reading(cfg: CorpusConfig, rng: random.Random) -> tuple[np.ndarray, dict, dict[str, list]]:
    """A conversation in which a real reader of `real_data` reads a few of their prompts with pauses between them
    (`cfg.pause`) and nobody asks anything: the system should listen (no reply, no turn taken in a pause). The
    reader's transcript, where the source has one, is spread over each prompt as its words."""
    readers = real_readers(cfg.real_data)
    speaker = rng.choice(sorted(readers))
    prompts = readers[speaker]
    chosen = rng.sample(prompts, min(len(prompts), rng.randint(*cfg.reading_clips)))
    sr = cfg.sample_rate
    b = ConversationBuilder(cfg, rng)
    events = {"pauses": [], "backchannels": [], "interruptions": [], "overlaps": [], "readings": []}
    t = rng.uniform(0.4, 0.8)
    start = t
    for k, (utt, path, text) in enumerate(chosen):
        audio, file_sr = sf.read(path, dtype="float32", always_2d=True)
        audio = audio[:, 0]
        b.recordings.append({"channel": "user", "source": speaker, "hash": recording_hash(audio)})
        if file_sr != sr:
            audio = resample(audio, file_sr, sr)
        audio = np.clip(audio * (cfg.rms / max(1e-6, float(np.sqrt(np.mean(audio ** 2))))), -0.99, 0.99)
        dur = len(audio) / sr
        spread = np.linspace(t, t + dur, len(text) + 1)
        b.clips[USER_CHANNEL].append(Clip(audio, t, [(w, a, e) for w, a, e in zip(text, spread[:-1], spread[1:])]))
        if k < len(chosen) - 1:
            gap = rng.uniform(*cfg.pause)
            events["pauses"].append({"start": t + dur, "end": t + dur + gap})
            t += dur + gap
        else:
            t += dur
    events["readings"].append({"start": start, "end": t, "reader": speaker})
    duration = t + rng.uniform(0.6, 1.0)
    audio = b.render(duration)
    meta = {"sample_rate": sr, "duration": duration, "style": "reading", "user_voice": speaker,
            "system_voice": cfg.system_voice, "channels": {"user": 0, "system": 1}, "turns": [], "events": events,
            "split": cfg.split_meta(), "recordings": b.recordings}
    meta |= user_channel_conditions(cfg, rng, audio)
    return audio, meta, b.words()
