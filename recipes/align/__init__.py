"""CTC forced alignment for real corpora without timings (DESIGN.md, "Frame-level alignments").

A small character CTC model (`CtcAligner`: log-mel → convs → BiGRU) is trained by a recipe stage
with the shared trainer (`python -m recipes.align.train`), then `python -m recipes.align.align`
force-aligns each data dir's transcripts with `torchaudio.functional.forced_align` and writes
`words.ctm`, `phones.ctm` (characters, `sil` between words) and `phones.txt` beside `text`.
"""
from .forced import Alignment, AlignmentError, align_emission, check_alignable
from .model import AlignerConfig, AlignerLoadError, CtcAligner, load_aligner, save_aligner
from .text import CharTokenizer, normalise_words

__all__ = ["Alignment", "AlignmentError", "align_emission", "check_alignable", "AlignerConfig", "AlignerLoadError",
           "CtcAligner", "load_aligner", "save_aligner", "CharTokenizer", "normalise_words"]
