"""Do the semantic tokens stay the same when only *how* something is said changes?

    python -m recipes.score.invariance --codec exp/codec.safetensors [--voice kal16] \
        [--pitches 0.72 1.35 1.6] [--gains-db -6] [--out exp/invariance.json]

The same sentences are synthesised (flite, fixed rate, so the frames stay aligned) at the reference
pitch and at other pitch factors, and once more with a level change and with inaudible noise (-50 dB
below the speech): the share of frames whose token is unchanged. Tokens meant to carry only what is
said should agree under a pitch or level change about as well as under the noise, which is the floor
set by the tokens' own instability. A linear probe on pooled tokens (`tokens.probe_accuracy`) can miss
frame-level differences that a sequence model still reads; this counts them directly.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from codec import Codec, load_codec

# Harvard sentences (IEEE 1969 list 1), phonetically balanced and public domain
SENTENCES = (
    "the birch canoe slid on the smooth planks", "glue the sheet to the dark blue background",
    "it's easy to tell the depth of a well", "these days a chicken leg is a rare dish",
    "rice is often served in round bowls", "the juice of lemons makes fine punch",
    "the box was thrown beside the parked truck", "the hogs were fed chopped corn and garbage",
    "four hours of steady work faced us", "a large size in stockings is hard to sell",
)
NOISE_DB = -50.0


def token_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of equal tokens over the frames both sequences have."""
    n = min(a.numel(), b.numel())
    if n == 0:
        raise ValueError("token_agreement: an empty token sequence")
    return float((a.reshape(-1)[:n] == b.reshape(-1)[:n]).float().mean())


def codec_readout(codec: Codec) -> Callable[[np.ndarray], dict[str, torch.Tensor]]:
    """audio → {"tokens": the codec's tokens}; for a "phones" semantic input also {"phone decisions": its frame
    classifier's decisions}, which the tokens are a function of: where they change with the voice, the tokens can."""
    def read(y: np.ndarray) -> dict[str, torch.Tensor]:
        out = codec.semantic_output(torch.as_tensor(np.asarray(y, dtype=np.float32)), codec.sample_rate)
        seqs = {"tokens": out.indices[0]}
        if out.unit_logits is not None:
            seqs["phone decisions"] = out.unit_logits[0].argmax(-1)
        return seqs

    return read


def invariance(read: Callable[[np.ndarray], dict[str, torch.Tensor]], synthesize: Callable[[str, float], np.ndarray],
               sentences=SENTENCES, pitches=(0.72, 1.35, 1.6), gains_db=(-6.0,), seed: int = 0) -> dict:
    """{condition: token agreement with the reference rendering, averaged over sentences}.
    `read(audio)` gives the sequences to compare (`codec_readout`: a codec's tokens); `synthesize(text,
    pitch_factor)` returns float audio at the codec's sample rate with the same timing for every pitch.
    Conditions: "pitch x<f>", "level <g> dB", "noise -50 dB"; a sequence other than "tokens" gets its own
    "<condition> (<name>)"."""
    if not sentences:
        raise ValueError("invariance: no sentences")
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {}

    def score(condition: str, y: np.ndarray, ref: dict[str, torch.Tensor]) -> None:
        for name, seq in read(y).items():
            key = condition if name == "tokens" else f"{condition} ({name})"
            scores.setdefault(key, []).append(token_agreement(seq, ref[name]))

    for text in sentences:
        ref_audio = np.asarray(synthesize(text, 1.0), dtype=np.float64)
        if ref_audio.size == 0:
            raise ValueError(f"invariance: the synthesiser gave no audio for {text!r}")
        ref = read(ref_audio)
        rms = float(np.sqrt(np.mean(ref_audio ** 2)))
        for p in pitches:
            score(f"pitch x{p:g}", synthesize(text, p), ref)
        for g in gains_db:
            score(f"level {g:+g} dB", ref_audio * 10 ** (g / 20), ref)
        noise = rng.standard_normal(ref_audio.shape) * rms * 10 ** (NOISE_DB / 20)
        score(f"noise {NOISE_DB:g} dB", ref_audio + noise, ref)
    return {k: float(np.mean(v)) for k, v in scores.items()}


def flite_voice(voice: str, sample_rate: int, rms: float = 0.07) -> Callable[[str, float], np.ndarray]:
    """A `synthesize(text, pitch)` for `invariance` from flite at the neutral rate, scaled to `rms`."""
    from recipes.synth.flite import synthesize

    def speak(text: str, pitch: float) -> np.ndarray:
        syn = synthesize(text, voice, rate=1.0, pitch=pitch)
        if syn.sample_rate != sample_rate:
            raise ValueError(f"flite {voice} gives {syn.sample_rate} Hz, the codec wants {sample_rate} Hz")
        y = np.asarray(syn.audio, dtype=np.float64)
        return y * (rms / max(1e-9, float(np.sqrt(np.mean(y ** 2)))))

    return speak


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", type=Path, default=None, help="codec file (default: the bundled one)")
    p.add_argument("--voice", default="kal16", help="flite voice (its rate must be the codec's)")
    p.add_argument("--pitches", type=float, nargs="+", default=[0.72, 1.35, 1.6])
    p.add_argument("--gains-db", type=float, nargs="*", default=[-6.0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    codec = load_codec(args.codec)
    result = invariance(codec_readout(codec), flite_voice(args.voice, codec.sample_rate), pitches=args.pitches,
                        gains_db=args.gains_db)
    print(f"token agreement with the reference rendering ({len(SENTENCES)} sentences, flite {args.voice}, "
          f"codec {codec.codec_id}):")
    for k, v in result.items():
        print(f"  {k:32s} {100 * v:5.1f} %")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"codec_id": codec.codec_id, "voice": args.voice, "agreement": result}, indent=2))


if __name__ == "__main__":
    main()
