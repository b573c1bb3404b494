"""`python -m dialogue.serve`: serve full-duplex conversations to browsers (see `dialogue.serve.server`).

    python -m dialogue.serve                     # bundled model + its codec, http://127.0.0.1:8998/
    python -m dialogue.serve --max-sessions 8 --host 0.0.0.0 --port 8998 [--model M] [--codec C]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from aiohttp import web

from ..demo import BUNDLED_MODEL, asset, load_bundle, load_demo_codec
from ..session import SamplingConfig
from .server import DuplexServer, ServeConfig
from .slots import SlotBatch


def load_models(p: argparse.ArgumentParser, args):
    """(codec, DialogueBundle) as the demo loads them: --model or the bundled model, with --codec or the
    codec it was trained on; what cannot be had exits 2 saying why."""
    try:
        codec = load_demo_codec(args.codec, args.model or asset(BUNDLED_MODEL))
        return codec, load_bundle(args, codec)
    except (FileNotFoundError, ValueError) as e:
        p.exit(2, f"dialogue.serve: {e}\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dialogue.serve", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None, help="dialogue checkpoint (default: the bundled one)")
    p.add_argument("--codec", type=Path, default=None, help="codec checkpoint (default: the one the model was trained on)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8998)
    p.add_argument("--max-sessions", type=int, default=4, help="conversations stepped together in one batch")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the batched step")
    p.add_argument("--max-buffer-ms", type=float, default=ServeConfig.max_buffer_ms)
    p.add_argument("--idle-timeout", type=float, default=ServeConfig.idle_timeout_s)
    SamplingConfig.add_arguments(p)
    args = p.parse_args(argv)
    if args.max_sessions < 1:
        p.error(f"--max-sessions must be >= 1, got {args.max_sessions}")
    codec, bundle = load_models(p, args)
    torch.set_num_threads(args.threads)
    sampling = SamplingConfig.from_args(args)
    cfg = ServeConfig(max_buffer_ms=args.max_buffer_ms, idle_timeout_s=args.idle_timeout)
    info = {"model": bundle.model.cfg.name, "trained": bundle.trained, "codec_id": codec.codec_id}
    with SlotBatch(codec, bundle, args.max_sessions, sampling) as batch:
        batch.warmup()
        server = DuplexServer(batch, bundle.tokenizer, cfg, info)
        print(f"dialogue.serve: http://{args.host}:{args.port}/ — {info['model']}, up to {args.max_sessions} "
              f"conversations in one batch, {1000 * batch.step_seconds:.0f} ms steps", flush=True)
        web.run_app(server.app(), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
