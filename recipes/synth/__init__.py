"""Synthetic multi-voice English corpora with exact phone/word timings from real TTS engines.

    from recipes.synth import make_speakers, build_corpus, synthesize, Speaker
    split = make_speakers(seed=0)                  # train / held-out pseudo-speakers
    syn = synthesize(Speaker("flite", "slt"), "Hello there.")   # audio + phone/word segments
    build_corpus("data/synth", 500, split.train, seed=0)        # Kaldi data dir + CTMs

Engines: flite (libflite via ctypes, or the binary's `-psdur`), festival (batch Scheme,
`utt.save.segs`-style listing), espeak-ng (libespeak-ng phoneme/word events via ctypes).
"""
from .base import Segment, Synthesis, SynthError
from .corpus import Utterance, build_corpus, normalise, synthesize
from .phones import PHONE_IDS, PHONES
from .speakers import Speaker, SpeakerSplit, available_engines, make_speakers, split_speakers
from .text import Sentence, fortune_sentences

__all__ = ["Segment", "Synthesis", "SynthError", "Utterance", "build_corpus", "normalise", "synthesize",
           "PHONES", "PHONE_IDS", "Speaker", "SpeakerSplit", "available_engines", "make_speakers", "split_speakers", "Sentence",
           "fortune_sentences"]
