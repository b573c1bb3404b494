"""The one Duet scorer: codec quality, intelligibility, token statistics and disentanglement.

    python -m recipes.score --data data/synth_heldout --codec default --out exp/score \\
        --baselines codec2_1200,codec2_3200,opus6k

    from recipes.score import score_codec
    rows = score_codec("data/synth_heldout", codec=my_codec, out_dir="exp/score")

Rows have the columns of `COLUMNS`; see `core.py` for what each metric is and how it is measured.
"""
from .baselines import Baseline, make_baseline
from .core import COLUMNS, DEFAULT_BASELINES, Item, load_items, score_codec, write_report

__all__ = ["COLUMNS", "DEFAULT_BASELINES", "Item", "load_items", "score_codec", "write_report", "Baseline",
           "make_baseline"]
