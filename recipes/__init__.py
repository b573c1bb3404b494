"""Shared recipe machinery for Duet: Kaldi data directories and CTM alignments
(`recipes.datadir`, `recipes.ctm`), synthetic multi-voice corpora with exact engine timings
(`recipes.synth`), real prompt recordings (`recipes.audio_corpus`) and the one scorer used by
every recipe (`recipes.score`)."""
