"""`python -m codec.demo`: encode and decode the bundled sample with the bundled codec.

Writes the token file, the decoded wav and a spectrogram PNG (original vs decoded) to --out and
prints what the codec is, the bitrate, and PESQ/STOI of the round trip.
"""
from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .api import load_codec
from .audio import load_audio
from .cli import decode_file, describe_codec, encode_file


def spectrogram_png(ref: np.ndarray, dec: np.ndarray, sr: int, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, x, name in zip(axes, [ref, dec], ["original", "decoded"]):
        ax.specgram(x + 1e-7, NFFT=512, Fs=sr, noverlap=384, cmap="magma", vmin=-120)
        ax.set_ylabel(f"{name}\nHz")
    axes[-1].set_xlabel("s")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def quality(ref: np.ndarray, dec: np.ndarray, sr: int) -> dict[str, float]:
    out = {}
    n = min(len(ref), len(dec))
    ref, dec = ref[:n], dec[:n]
    try:
        from pesq import pesq
        out["PESQ-WB"] = pesq(16000, ref, dec, "wb") if sr == 16000 else float("nan")
        import torchaudio
        r8 = torchaudio.functional.resample(torch.from_numpy(ref), sr, 8000).numpy()
        d8 = torchaudio.functional.resample(torch.from_numpy(dec), sr, 8000).numpy()
        out["PESQ-NB"] = pesq(8000, r8, d8, "nb")
    except Exception as e:  # pesq refuses silence / very short input
        out["PESQ"] = f"n/a ({e})"
    try:
        from pystoi import stoi
        out["STOI"] = stoi(ref, dec, sr, extended=False)
    except Exception as e:
        out["STOI"] = f"n/a ({e})"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--codec", default=None, help="checkpoint; default: the bundled codec")
    p.add_argument("--input", type=Path, default=None, help="audio file; default: the bundled sample")
    p.add_argument("--out", type=Path, default=Path("exp/demo"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.input or Path(str(resources.files("codec").joinpath("assets/sample_en.wav")))
    try:
        codec = load_codec(args.codec)
    except FileNotFoundError as e:
        p.exit(2, f"codec.demo: {e}\n")
    print(describe_codec(codec))
    tok_path = args.out / (src.stem + ".duet")
    dec_path = args.out / (src.stem + ".decoded.wav")
    header = encode_file(codec, src, tok_path, progress=False)
    decode_file(codec, tok_path, dec_path, progress=False)
    ref, sr = load_audio(src)
    ref = torch.from_numpy(np.asarray(ref.mean(0)))
    if sr != codec.sample_rate:
        import torchaudio
        ref = torchaudio.functional.resample(ref, sr, codec.sample_rate)
    dec, _ = load_audio(dec_path)
    ref_np, dec_np = ref.numpy(), dec[0].numpy()
    png = args.out / (src.stem + ".spectrogram.png")
    spectrogram_png(ref_np, dec_np, codec.sample_rate, png, f"{codec.config.name} ({codec.codec_id}) "
                    f"{codec.config.bitrate:.0f} bit/s")
    size = tok_path.stat().st_size
    print(f"\ninput           {src} ({len(ref_np) / codec.sample_rate:.2f} s)")
    print(f"tokens          {tok_path} ({header.num_frames} frames, {size} bytes incl. header and voice)")
    print(f"decoded         {dec_path}")
    print(f"spectrogram     {png}")
    for k, v in quality(ref_np, dec_np, codec.sample_rate).items():
        print(f"{k:<15} {v:.3f}" if isinstance(v, float) else f"{k:<15} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
