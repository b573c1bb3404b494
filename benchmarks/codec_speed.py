"""Codec speed on CPU: parameters, one-shot encode/decode of 10 s, streaming cost per frame, RTF
and algorithmic latency, per preset — and Kyutai's Mimi (random weights) in the same run when the
`moshi` package is importable (`pip install --no-deps moshi huggingface_hub`; nothing is downloaded).

    python benchmarks/codec_speed.py [--threads 2] [--seconds 10] [--codec PATH]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.api import Codec, load_codec  # noqa: E402
from codec.config import preset  # noqa: E402
from codec.model import SpeechCodec  # noqa: E402


def timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_duet(codec: Codec, seconds: float, chunk_tokens: int) -> dict:
    sr, spt = codec.sample_rate, codec.config.samples_per_token
    wav = 0.1 * torch.randn(1, int(seconds * sr))
    tokens = codec.encode(wav, sr)
    enc = timed(lambda: codec.encode(wav, sr))
    dec = timed(lambda: codec.decode(tokens))
    chunk = chunk_tokens * spt
    n_chunks = wav.shape[-1] // chunk

    def stream():
        with codec.streaming(1, voice=tokens.voice) as s:
            for i in range(n_chunks):
                s.decode_step(s.encode_step(wav[:, i * chunk:(i + 1) * chunk]))

    total = timed(stream, repeat=2)
    frames = n_chunks * chunk_tokens
    audio_s = n_chunks * chunk / sr
    return {"params_M": sum(p.numel() for p in codec.model.parameters()) / 1e6, "encode_s": enc, "decode_s": dec,
            "chunk_ms": 1000 * chunk / sr, "stream_ms_per_frame": 1000 * total / frames,
            "stream_rtf": total / audio_s, "latency_ms": codec.config.latency_ms,
            "bitrate": codec.config.bitrate, "frame_rate": codec.frame_rate}


def bench_mimi(seconds: float) -> dict | None:
    try:
        from moshi.models import loaders
    except Exception as e:  # optional peer
        print(f"(moshi not importable: {e}; Mimi not timed)")
        return None
    torch.manual_seed(0)
    mimi = loaders.get_mimi(None, device="cpu", num_codebooks=8)
    sr = mimi.sample_rate
    frame = int(sr / mimi.frame_rate)
    wav = 0.1 * torch.randn(1, 1, int(seconds * sr) // frame * frame)
    with torch.no_grad():
        codes = mimi.encode(wav)
        enc = timed(lambda: mimi.encode(wav), repeat=2)
        dec = timed(lambda: mimi.decode(codes), repeat=2)
        n = wav.shape[-1] // frame

        def stream():
            with mimi.streaming(1):
                for i in range(n):
                    mimi.decode(mimi.encode(wav[..., i * frame:(i + 1) * frame]))

        total = timed(stream, repeat=1)
    return {"params_M": sum(p.numel() for p in mimi.parameters()) / 1e6, "encode_s": enc, "decode_s": dec,
            "chunk_ms": 1000 * frame / sr, "stream_ms_per_frame": 1000 * total / n, "stream_rtf": total / (n * frame / sr),
            "latency_ms": 80.0, "bitrate": 1100.0, "frame_rate": mimi.frame_rate}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--codec", default=None, help="also time this checkpoint (default: the bundled one if present)")
    p.add_argument("--presets", default="duet_cpu16k,secousti_1k,secousti_027k")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    rows = []
    for name in args.presets.split(","):
        torch.manual_seed(0)
        codec = Codec(SpeechCodec(preset(name)))
        chunks = [1, round(0.08 * codec.frame_rate)] if name == "duet_cpu16k" else [max(1, round(0.08 * codec.frame_rate))]
        for c in sorted(set(chunks)):
            rows.append((f"{name} (random init)", bench_duet(codec, args.seconds, c)))
    try:
        bundled = load_codec(args.codec)
        rows.append((f"bundled {bundled.config.name}", bench_duet(bundled, args.seconds, 5)))
    except FileNotFoundError:
        pass
    mimi = bench_mimi(args.seconds)
    if mimi:
        rows.append(("Mimi (moshi, random init, 8 cb)", mimi))
    print(f"\n{args.threads} CPU threads, {args.seconds:.0f} s of audio, torch {torch.__version__}\n")
    print("| model | params (M) | bitrate (bps) | encode 10 s (s) | decode 10 s (s) | stream chunk (ms) | "
          "stream ms/frame | stream RTF | algorithmic latency (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['params_M']:.1f} | {r['bitrate']:.0f} | {r['encode_s']:.3f} | {r['decode_s']:.3f} | "
              f"{r['chunk_ms']:.0f} | {r['stream_ms_per_frame']:.2f} | {r['stream_rtf']:.3f} | {r['latency_ms']:.0f} |")
    if mimi:
        small = [r for n, r in rows if n.startswith("duet_cpu16k") and abs(r["chunk_ms"] - 80) < 1]
        if small:
            ratio = mimi["stream_rtf"] / small[0]["stream_rtf"]
            print(f"\nstreaming, per second of audio (80 ms chunks): duet_cpu16k is {ratio:.1f}x faster than Mimi "
                  f"(goal >= 15x)")
            bundled = [r for n, r in rows if n.startswith("bundled")]
            if bundled:
                print(f"streaming, 80 ms chunks: the bundled codec is {mimi['stream_rtf'] / bundled[0]['stream_rtf']:.1f}x "
                      f"faster than Mimi (goal >= 10x)")
            ratio1 = (mimi["encode_s"] + mimi["decode_s"]) / (small[0]["encode_s"] + small[0]["decode_s"])
            print(f"one-shot encode+decode: duet_cpu16k is {ratio1:.1f}x faster than Mimi")


if __name__ == "__main__":
    main()
