"""A frame classifier's decisions on the user channel of a dialogue corpus, cached, and the two views of
them that `aligned_phones.py` hands to the sequence reader (`recipes.dialogue.sequence_probe`): the
decisions frame by frame and the recognised phone string (runs collapsed, no durations)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from recipes.dialogue.style_probe import speech_only

MAX_LEN = 1500  # decisions per conversation the reader reads


def user_decisions(decide, data_dir: Path) -> dict[str, np.ndarray]:
    """{"<style>/<id>": decide(the user channel [N] float32, sample rate), a decision per frame} for every
    conversation of data_dir."""
    out = {}
    ids = [line.split()[0] for line in (data_dir / "wav.scp").read_text().splitlines() if line.strip()]
    for cid in tqdm(ids, desc=data_dir.name, mininterval=30):
        meta = json.loads((data_dir / "meta" / f"{cid}.json").read_text())
        wav, sr = sf.read(data_dir / "wav" / f"{cid}.wav", dtype="float32", always_2d=True)
        out[f"{meta['style']}/{cid}"] = decide(wav[:, meta["channels"]["user"]], sr)
    return out


def cached(path: Path, make) -> dict[str, np.ndarray]:
    """The arrays in the npz at `path`, made by make() and written atomically the first time."""
    if not path.exists():
        np.savez(path.with_suffix(".tmp.npz"), **make())
        path.with_suffix(".tmp.npz").rename(path)
    z = np.load(path)
    return {k: z[k] for k in z.files}


def sequences(decisions: dict[str, np.ndarray], prefix: str, view, styles: list[str]
              ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The reader's input and labels: `view` of each conversation's decisions keyed "<prefix><style>/<id>"."""
    keys = [k for k in decisions if k.startswith(prefix)]
    return ([torch.from_numpy(view(decisions[k].astype(np.int64)).astype(np.int64))[:MAX_LEN] for k in keys],
            torch.tensor([styles.index(k.removeprefix(prefix).split("/")[0]) for k in keys]))


def runs(x: np.ndarray) -> np.ndarray:
    """The class of each run of equal decisions (run-length encoding without the lengths)."""
    return x[np.r_[0, np.flatnonzero(np.diff(x)) + 1]]


def views(phones: list[str]) -> dict:
    """{name: decisions [T] → the reader's input}: speech frames only, as decided or as a phone string."""
    sil = phones.index("sil")
    return {"decisions": lambda x: speech_only(x, sil), "phone string (runs collapsed)": lambda x: runs(speech_only(x, sil))}
