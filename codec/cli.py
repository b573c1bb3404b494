"""`python -m codec encode|decode|info`: files in, files out, streamed in chunks with a progress bar.

    python -m codec encode speech.wav speech.duet      # any rate / channels; resampled, downmixed
    python -m codec decode speech.duet speech.dec.wav [--voice other.wav]
    python -m codec info speech.duet                   # bitrate, frames, duration, voice bytes
    python -m codec info                               # the codec itself
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .api import Codec, load_codec
from .audio import AudioError, load_audio, to_mono_batch
from .container import CodecFormatError, TokenFileHeader, TokenReader, TokenWriter

BLOCK_SECONDS = 10.0


def encode_file(codec: Codec, src: Path, dst: Path, progress: bool = True) -> TokenFileHeader:
    """Encode a sound file to .duet through the streaming encoder, one block at a time."""
    import soundfile as sf

    try:
        info = sf.info(str(src))
    except Exception as e:
        raise AudioError(f"{src}: unreadable audio ({e})") from e
    if info.frames == 0:
        raise AudioError(f"{src}: empty audio (0 samples)")
    cfg = codec.config
    block = int(BLOCK_SECONDS * info.samplerate)
    header = TokenFileHeader(cfg.sample_rate, cfg.samples_per_token, list(cfg.fsq_levels), codec.codec_id, 0, 0,
                             np.zeros(cfg.voice_dim, np.float16))
    total = 0
    with codec.streaming(1) as stream, TokenWriter(dst, header) as writer, \
            tqdm(total=info.frames, unit="sample", unit_scale=True, desc=f"encode {src.name}", disable=not progress) as bar:
        for data in sf.blocks(str(src), blocksize=block, dtype="float32", always_2d=True):
            x = to_mono_batch(torch.from_numpy(data.T.copy())[None], info.samplerate, cfg.sample_rate, str(src))
            # Block-wise resampling is exact only at the codec rate; other rates are resampled per block.
            total += x.shape[-1]
            writer.write(stream.encode_step(x)[0])
            bar.update(data.shape[0])
        writer.write(stream.encode_flush()[0])
        writer.header.voice = stream.voice[0].cpu().numpy().astype(np.float16)
        writer.header.num_samples = total
    return writer.header


def decode_file(codec: Codec, src: Path, dst: Path, voice: torch.Tensor | None = None, progress: bool = True) -> int:
    """Decode a .duet file to a wav through the streaming decoder; returns samples written."""
    import soundfile as sf

    reader = TokenReader(src)
    h = reader.header
    if h.codec_id != codec.codec_id:
        raise CodecFormatError(f"{src}: made by codec {h.codec_id!r}, but the loaded codec is {codec.codec_id!r}")
    if h.sample_rate != codec.sample_rate or h.samples_per_token != codec.config.samples_per_token:
        raise CodecFormatError(f"{src}: stream is {h.sample_rate} Hz / {h.samples_per_token} samples per token, "
                               f"codec is {codec.sample_rate} Hz / {codec.config.samples_per_token}")
    g = voice if voice is not None else torch.from_numpy(h.voice.astype(np.float32))[None]
    written = 0
    limit = h.num_samples or None
    with codec.streaming(1, voice=g) as stream, sf.SoundFile(str(dst), "w", samplerate=h.sample_rate, channels=1,
                                                             subtype="PCM_16") as out, \
            tqdm(total=h.num_frames, unit="frame", desc=f"decode {src.name}", disable=not progress) as bar:
        def emit(wav):
            nonlocal written
            data = wav[0, 0].cpu().numpy()
            if limit is not None:
                data = data[:max(0, limit - written)]
            out.write(np.clip(data, -1, 1))
            written += len(data)

        for codes in reader.chunks():
            for part in torch.from_numpy(codes)[None].split(int(codec.frame_rate * BLOCK_SECONDS) or 1, dim=1):
                emit(stream.decode_step(part))
                bar.update(part.shape[1])
        emit(stream.decode_flush())
    return written


def describe_codec(codec: Codec) -> str:
    cfg = codec.config
    params = sum(p.numel() for p in codec.model.parameters())
    return "\n".join([
        f"codec           {cfg.name} (id {codec.codec_id})" + (f" — {codec.description}" if codec.description else ""),
        f"parameters      {params / 1e6:.2f} M",
        f"sample rate     {cfg.sample_rate} Hz",
        f"frame rate      {cfg.frame_rate:.2f} Hz ({cfg.samples_per_token} samples per token)",
        f"codebook        FSQ levels {cfg.fsq_levels} = {cfg.codebook_size} codes = {cfg.bits_per_token:.2f} bits",
        f"bitrate         {cfg.bitrate:.1f} bit/s ({cfg.bitrate / 1000:.3f} kbps) + voice {cfg.voice_bytes} bytes per stream",
        f"latency         {cfg.latency_ms:.1f} ms algorithmic (1 token + vocoder overlap)",
    ])


def describe_file(path: Path) -> str:
    reader = TokenReader(path)
    h = reader.header
    frames = sum(len(c) for c in reader.chunks())
    size = path.stat().st_size
    duration = frames / h.frame_rate
    bits = np.log2(h.codebook_size)
    return "\n".join([
        f"file            {path} ({size} bytes)",
        f"codec id        {h.codec_id}",
        f"sample rate     {h.sample_rate} Hz, {h.frame_rate:.2f} frames/s, FSQ levels {h.levels}",
        f"frames          {frames} ({duration:.2f} s; {h.num_samples} samples)",
        f"bitrate         {h.frame_rate * bits:.1f} bit/s (entropy bound), "
        f"{8 * size / max(duration, 1e-9):.1f} bit/s (this file, header included)",
        f"voice           {2 * len(h.voice)} bytes ({len(h.voice)} × float16), once per stream",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec", description=__doc__.split("\n")[0])
    parser.add_argument("--codec", default=None, help="codec checkpoint (.safetensors); default: the bundled one")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("encode", help="audio file → .duet tokens")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p = sub.add_parser("decode", help=".duet tokens → wav")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--voice", type=Path, help="reference recording whose voice replaces the file's")
    p = sub.add_parser("info", help="describe a .duet file, or the codec when no file is given")
    p.add_argument("input", type=Path, nargs="?")
    args = parser.parse_args(argv)
    try:
        if args.command == "info" and args.input is not None:
            print(describe_file(args.input))
            return 0
        codec = load_codec(args.codec)
        if args.command == "info":
            print(describe_codec(codec))
        elif args.command == "encode":
            h = encode_file(codec, args.input, args.output, progress=not args.quiet)
            print(f"{args.output}: {h.num_frames} frames, {args.output.stat().st_size} bytes")
        else:
            voice = None
            if args.voice is not None:
                wav, sr = load_audio(args.voice)
                voice = codec.voice(wav, sr)
            n = decode_file(codec, args.input, args.output, voice=voice, progress=not args.quiet)
            print(f"{args.output}: {n} samples at {codec.sample_rate} Hz")
    except (AudioError, CodecFormatError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
