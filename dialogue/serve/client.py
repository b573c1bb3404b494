"""The serving protocol from Python: what the web page does, in a few lines, for tests, load
benchmarks and terminals.

    python -m dialogue.serve.client question.wav --url ws://127.0.0.1:8998/api/duplex --out reply.wav

`DuplexClient` connects, says hello and returns once the server is ready (or raises `ServerBusy` /
`ServerError`); `send` takes PCM16 samples, `next_step` returns the next step's message with its
audio. `converse` streams a whole recording in lockstep (a fixed number of frames ahead of the
server's steps, so no step ever misses its frame: the output depends on the audio alone).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

import aiohttp
import numpy as np


class ServerBusy(RuntimeError):
    """Every conversation slot of the server is taken."""


class ServerError(RuntimeError):
    """The server sent a fatal error (or closed) instead of what was expected."""


@dataclasses.dataclass
class Step:
    message: dict  # the "step" message: step, consumed, text, heard, missing, dropped
    audio: np.ndarray  # int16 [n]: the system's audio of the step


@dataclasses.dataclass
class Conversation:
    ready: dict
    steps: list[Step]
    errors: list[dict]

    @property
    def monologue(self) -> str:
        return "".join(s.message["text"] for s in self.steps).strip()

    @property
    def heard(self) -> str:
        return "".join(s.message["heard"] for s in self.steps).strip()

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate([s.audio for s in self.steps]) if self.steps else np.zeros(0, np.int16)


class DuplexClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, ready: dict) -> None:
        self.ws, self.ready = ws, ready
        self.errors: list[dict] = []  # non-fatal errors the server reported

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, sample_rate: int = 16000,
                      seed: int | None = None) -> "DuplexClient":
        ws = await session.ws_connect(url)
        hello = {"type": "hello", "sample_rate": sample_rate, "format": "pcm16"}
        if seed is not None:
            hello["seed"] = seed
        await ws.send_json(hello)
        msg = await ws.receive()
        data = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {}
        if data.get("type") == "ready":
            return cls(ws, data)
        await ws.close()
        if data.get("type") == "busy":
            raise ServerBusy(data.get("message", "busy"))
        raise ServerError(data.get("message") or f"no ready message (got {msg.type.name} {msg.data!r:.80})")

    async def send(self, pcm: np.ndarray) -> None:
        """pcm: int16 samples at the declared rate (any length; 80 ms frames are the pace)."""
        await self.ws.send_bytes(np.asarray(pcm, "<i2").tobytes())

    async def next_step(self) -> Step:
        """The next step's message and audio (non-fatal errors on the way are kept in `errors`)."""
        message = None
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("type") == "step":
                    message = data
                elif data.get("type") == "error" and not data.get("fatal"):
                    self.errors.append(data)
                else:
                    raise ServerError(f"{data.get('code', data.get('type'))}: {data.get('message')}")
            elif msg.type == aiohttp.WSMsgType.BINARY and message is not None:
                return Step(message, np.frombuffer(msg.data, "<i2").copy())
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise ServerError(f"the server closed the connection ({self.ws.close_code})")

    async def close(self) -> None:
        await self.ws.close()


async def converse(session: aiohttp.ClientSession, url: str, pcm: np.ndarray, seed: int | None = None,
                   ahead: int = 2, steps: int | None = None) -> Conversation:
    """Stream int16 `pcm` in whole frames, `ahead` frames before the server's steps; returns every
    step until the recording (or `steps` steps) has been heard."""
    client = await DuplexClient.connect(session, url, seed=seed)
    frame = client.ready["frame_samples"]
    frames = [pcm[i:i + frame] for i in range(0, len(pcm) - frame + 1, frame)]
    total = steps if steps is not None else len(frames)
    sent, out = 0, []
    for _ in range(min(ahead, len(frames))):
        await client.send(frames[sent])
        sent += 1
    try:
        while len(out) < total:
            out.append(await client.next_step())
            if sent < len(frames):
                await client.send(frames[sent])
                sent += 1
    finally:
        await client.close()
    return Conversation(client.ready, out, client.errors)


def main(argv=None) -> int:
    import soundfile as sf

    p = argparse.ArgumentParser(prog="python -m dialogue.serve.client", description=__doc__.split("\n")[0])
    p.add_argument("wav", help="the user's recording (mono, at the server's rate)")
    p.add_argument("--url", default="ws://127.0.0.1:8998/api/duplex")
    p.add_argument("--out", default=None, help="write the system's audio here")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    pcm, sr = sf.read(args.wav, dtype="int16", always_2d=True)

    async def run():
        async with aiohttp.ClientSession() as session:
            return await converse(session, args.url, pcm[:, 0], args.seed)

    try:
        conv = asyncio.run(run())
    except (ServerBusy, ServerError, aiohttp.ClientError) as e:
        p.exit(2, f"dialogue.serve.client: {e}\n")
    if conv.ready["sample_rate"] != sr:
        print(f"note: the recording is {sr} Hz, the server takes {conv.ready['sample_rate']} Hz", file=sys.stderr)
    print(f"inner monologue: {conv.monologue or '(silent)'}\nheard: {conv.heard or '(nothing)'}")
    if args.out:
        sf.write(args.out, conv.audio, conv.ready["sample_rate"], subtype="PCM_16")
    return 0


if __name__ == "__main__":
    sys.exit(main())
