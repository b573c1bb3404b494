"""The duplex server: a web page and a WebSocket endpoint holding several conversations at once.

Built on aiohttp alone: one dependency serves the static page (`dialogue/web/`, no build step) and the
WebSocket, with no separate ASGI server to install and run (`pip install 'duet[serve]'`). Every
conversation is one slot of a single `dialogue.slots.SlotBatch`, stepped on one 80 ms clock in a
worker thread (the event loop keeps serving sockets meanwhile); a connect takes a free slot, the
conversation starts (that item alone is reset) with the client's first audio, a disconnect frees
the slot; when all are taken a client gets a "busy" message and is closed.

Protocol on `/api/duplex` (the page's JavaScript is one client; `benchmarks/serve_load.py` another):
client → `{"type": "hello", "sample_rate": 16000, "format": "pcm16", "seed": 7}` (seed optional),
then binary little-endian PCM16 mono at that rate (80 ms = 1280 samples per message is the pace;
any even length up to one second is taken), `{"type": "stop"}` to end. Server → `{"type": "ready",
...}`, then per step `{"type": "step", "step", "consumed", "text", "heard", "missing", "dropped"}`
followed by that step's system audio as binary PCM16 (`consumed`: the client's samples heard so
far; `text`: the inner monologue's piece, `heard`: the listening head's, each with a leading space
where a word starts). Problems get `{"type": "error", "code", "message", "fatal"}`; a fatal one is
followed by a close. `GET /api/stats` reports step times, late steps, counters and resident memory.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from aiohttp import WSMsgType, web

from .slots import InputBuffer, PieceText, SlotBatch, SlotTable, pcm16_bytes

WEB = Path(__file__).resolve().parent.parent / "web"


@dataclasses.dataclass
class ServeConfig:
    """Limits that keep every client bounded (memory, latency, time holding a slot)."""

    max_buffer_ms: float = 240.0  # client audio waiting for the clock; a burst beyond drops the oldest
    max_message_bytes: int = 32000  # one binary message: 1 s of 16 kHz PCM16
    max_text_bytes: int = 4096
    max_errors: int = 20  # recoverable errors before a client is closed
    hello_timeout_s: float = 5.0
    idle_timeout_s: float = 30.0  # no message at all for this long: the slot is given back
    out_queue: int = 64  # messages queued for a client that does not read (~2.5 s of steps); then closed
    stats_window: int = 10000  # steps kept for the latency figures


class ClientError(Exception):
    def __init__(self, code: str, message: str, fatal: bool = False, close_code: int = 1008) -> None:
        super().__init__(message)
        self.code, self.message, self.fatal, self.close_code = code, message, fatal, close_code


class Client:
    """One WebSocket conversation: its slot, input buffer, text decoders and outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, slot: int, server: "DuplexServer") -> None:
        self.ws, self.slot = ws, slot
        self.out: asyncio.Queue = asyncio.Queue(server.cfg.out_queue)
        self.input: InputBuffer | None = None  # after hello
        self.seed = 0
        self.starting = False  # the next step resets the slot for this conversation
        self.steps = 0
        self.errors = 0
        self.closing = False
        self.monologue = PieceText(server.tokenizer)
        self.heard = PieceText(server.tokenizer)

    def send(self, message) -> bool:
        """Queue a message (str or bytes); False when the client does not read fast enough."""
        try:
            self.out.put_nowait(message)
            return True
        except asyncio.QueueFull:
            return False


class DuplexServer:
    def __init__(self, batch: SlotBatch, tokenizer, cfg: ServeConfig | None = None, info: dict | None = None) -> None:
        self.batch, self.tokenizer, self.cfg = batch, tokenizer, cfg or ServeConfig()
        self.info = info or {}
        self.table = SlotTable(batch.slots)
        self.clients: dict[int, Client] = {}  # slot → connected client
        self.active: dict[int, Client] = {}  # slot → client whose conversation has started
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="duplex-step")
        self.step_ms: collections.deque[float] = collections.deque(maxlen=self.cfg.stats_window)
        self.counters = collections.Counter()
        self._wake = asyncio.Event()
        self._clock_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.next_seed = 1000

    # --- app ------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/api/duplex", self.chat)
        app.router.add_get("/api/stats", self._stats)
        app.router.add_static("/web/", WEB)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _index(self, _request) -> web.FileResponse:
        return web.FileResponse(WEB / "index.html")

    async def _stats(self, _request) -> web.Response:
        return web.json_response(self.stats())

    async def _start(self, _app) -> None:
        self._wake = asyncio.Event()
        self._clock_task = asyncio.create_task(self.clock())

    async def _stop(self, _app) -> None:
        if self._clock_task is not None:
            self._clock_task.cancel()
            await asyncio.gather(self._clock_task, return_exceptions=True)
        for client in list(self.clients.values()):
            await client.ws.close(code=1001, message=b"server shutting down")
        self.executor.shutdown(wait=True)

    def stats(self) -> dict:
        t = np.array(self.step_ms) if self.step_ms else np.zeros(1)
        return {"slots": self.batch.slots, "connected": len(self.clients), "active": len(self.active),
                "step_ms": {"mean": float(t.mean()), "p50": float(np.percentile(t, 50)),
                            "p95": float(np.percentile(t, 95)), "p99": float(np.percentile(t, 99)),
                            "max": float(t.max()), "window": len(self.step_ms)},
                "rss_mb": rss_mb(), **dict(self.counters)}

    # --- the clock ------------------------------------------------------------------------------
    async def clock(self) -> None:
        """Step the whole batch every step_seconds while any conversation is active. A step whose
        output is ready after the next step's audio was due is late; more than the input buffer
        behind, the clock jumps to now (the buffers have dropped that audio anyway)."""
        loop = asyncio.get_running_loop()
        period, tick = self.batch.step_seconds, loop.time()
        frame, slots = self.batch.frame_samples, self.batch.slots
        while True:
            if not self.active:
                self._wake.clear()
                await self._wake.wait()
                tick = loop.time()
            delay = tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            audio, restart, stepped = np.zeros((slots, frame), np.float32), {}, []
            for slot, client in self.active.items():
                if client.starting:
                    restart[slot], client.starting = client.seed, False
                x = client.input.pop_frame()
                if x is not None:
                    audio[slot] = x
                stepped.append(client)
            try:
                out = await loop.run_in_executor(self.executor, self.batch.step, torch.from_numpy(audio), restart)
            except Exception as e:  # a bug, not a client: say so, end the conversations, keep serving
                self.counters["step_errors"] += 1
                print(f"dialogue.serve: step failed: {e!r}", file=sys.stderr, flush=True)
                for client in stepped:
                    self._spawn(self._fail(client, ClientError("server_error", f"the step failed: {e!r}", True, 1011)))
                tick = loop.time() + period
                continue
            self.step_ms.append(1000 * out.seconds)
            self.counters["steps"] += 1
            if loop.time() > tick + period:
                self.counters["late_steps"] += 1
            for client in stepped:
                self._deliver(client, out)
            tick += period
            if loop.time() - tick > self.cfg.max_buffer_ms / 1000:
                self.counters["clock_resyncs"] += 1
                tick = loop.time()

    def _deliver(self, client: Client, out) -> None:
        if client.closing:
            return
        s, inp = client.slot, client.input
        msg = {"type": "step", "step": client.steps, "consumed": inp.consumed, "text": client.monologue(out.text[s]),
               "heard": client.heard(out.heard[s]), "missing": inp.missing_steps, "dropped": inp.dropped}
        client.steps += 1
        if not (client.send(json.dumps(msg)) and client.send(pcm16_bytes(out.audio[s]))):
            self.counters["too_slow"] += 1
            self._spawn(self._fail(client, ClientError(
                "too_slow", f"the client read nothing for {self.cfg.out_queue} messages: closing", True, 1008)))

    def _spawn(self, coro) -> None:
        """Run `coro` as a task kept referenced until it ends (asyncio holds tasks only weakly)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- one client -----------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4 * self.cfg.max_message_bytes)
        await ws.prepare(request)
        slot = self.table.acquire()
        if slot is None:
            self.counters["busy"] += 1
            await ws.send_json({"type": "busy", "max_sessions": self.batch.slots,
                                "message": f"all {self.batch.slots} conversations of this server are taken; "
                                           f"try again later"})
            await ws.close(code=1013, message=b"busy")
            return ws
        client = Client(ws, slot, self)
        self.clients[slot] = client
        self.counters["joins"] += 1
        sender = asyncio.create_task(self._send_loop(client))
        try:
            await self._receive(client)
        except ClientError as e:
            await self._fail(client, e)
        except (asyncio.TimeoutError, TimeoutError):
            what = "no hello" if client.input is None else "no message"
            limit = self.cfg.hello_timeout_s if client.input is None else self.cfg.idle_timeout_s
            await self._fail(client, ClientError("timeout", f"{what} for {limit:g} s: closing", True, 1008))
        except (ConnectionError, RuntimeError):  # the peer vanished mid-send
            self.counters["abrupt_closes"] += 1
        finally:
            client.closing = True
            self.active.pop(slot, None)
            self.clients.pop(slot, None)
            self.table.release(slot)
            self.counters["leaves"] += 1
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            if not ws.closed:
                await ws.close()
        return ws

    async def _receive(self, client: Client) -> None:
        ws = client.ws
        while True:
            timeout = self.cfg.hello_timeout_s if client.input is None else self.cfg.idle_timeout_s
            msg = await ws.receive(timeout=timeout)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type == WSMsgType.ERROR:  # e.g. a message over aiohttp's hard size limit
                self.counters["abrupt_closes"] += 1
                return
            try:
                if msg.type == WSMsgType.TEXT:
                    if self._text(client, msg.data):
                        return
                elif msg.type == WSMsgType.BINARY:
                    self._audio(client, msg.data)
            except ClientError as e:
                if e.fatal:
                    raise
                client.errors += 1
                self.counters["client_errors"] += 1
                client.send(json.dumps({"type": "error", "code": e.code, "message": e.message, "fatal": False}))
                if client.errors > self.cfg.max_errors:
                    raise ClientError("too_many_errors", f"{client.errors} errors: closing", True) from None

    def _text(self, client: Client, data: str) -> bool:
        """A JSON control message; True when the client asked to stop."""
        if len(data) > self.cfg.max_text_bytes:
            raise ClientError("too_large", f"text message of {len(data)} bytes; at most {self.cfg.max_text_bytes}")
        try:
            msg = json.loads(data)
        except ValueError:
            raise ClientError("bad_json", f"text messages are JSON objects, got {data[:40]!r}") from None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "hello":
            self._hello(client, msg)
            return False
        if kind == "stop":
            return True
        raise ClientError("unknown_type", f"unknown message type {kind!r}; expected 'hello' or 'stop'")

    def _hello(self, client: Client, msg: dict) -> None:
        if client.input is not None:
            raise ClientError("hello_repeated", "hello was already received; ignored")
        rate, fmt, seed = msg.get("sample_rate"), msg.get("format", "pcm16"), msg.get("seed")
        sr = self.batch.sample_rate
        if rate != sr:
            raise ClientError("sample_rate", f"this server takes {sr} Hz PCM16 mono; the hello declared {rate!r} "
                                             f"(resample in the client, e.g. new AudioContext({{sampleRate: {sr}}}))",
                              True, 1003)
        if fmt != "pcm16":
            raise ClientError("format", f"audio format {fmt!r} is not served; expected 'pcm16'", True, 1003)
        if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2 ** 63):
            raise ClientError("seed", f"seed must be an integer in [0, 2^63), got {seed!r}", True)
        client.seed = seed if seed is not None else self._new_seed()
        client.input = InputBuffer(self.batch.frame_samples, int(self.cfg.max_buffer_ms / 1000 * sr))
        client.send(json.dumps({"type": "ready", "slot": client.slot, "sample_rate": sr,
                                "frame_samples": self.batch.frame_samples, "step_ms": 1000 * self.batch.step_seconds,
                                "max_buffer_ms": self.cfg.max_buffer_ms, "seed": client.seed, **self.info}))

    def _new_seed(self) -> int:
        self.next_seed += 1
        return self.next_seed

    def _audio(self, client: Client, data: bytes) -> None:
        if client.input is None:
            raise ClientError("hello_required", "send {\"type\": \"hello\", \"sample_rate\": ...} before audio")
        if len(data) > self.cfg.max_message_bytes:
            raise ClientError("too_large", f"binary message of {len(data)} bytes; at most {self.cfg.max_message_bytes} "
                                           f"(send 80 ms frames)")
        if len(data) % 2:
            raise ClientError("bad_frame", f"binary message of {len(data)} bytes: PCM16 needs an even length")
        client.input.push(np.frombuffer(data, "<i2").astype(np.float32) / 32768.0)
        if client.slot not in self.active and client.input.buffered >= self.batch.frame_samples:
            client.starting = True  # the conversation starts with the client's first whole frame
            self.active[client.slot] = client
            self._wake.set()

    async def _fail(self, client: Client, e: ClientError) -> None:
        """Send a fatal error, then close (the handler's finally frees the slot)."""
        if client.closing:
            return
        client.closing = True
        self.counters[f"closed_{e.code}"] += 1
        try:
            while not client.out.empty():  # the error goes out now, not after a backlog
                client.out.get_nowait()
            await asyncio.wait_for(client.ws.send_str(json.dumps(
                {"type": "error", "code": e.code, "message": e.message, "fatal": True})), 1.0)
        except Exception:  # the peer is gone already
            pass
        await client.ws.close(code=e.close_code, message=e.code.encode())

    async def _send_loop(self, client: Client) -> None:
        while True:
            message = await client.out.get()
            if isinstance(message, bytes):
                await client.ws.send_bytes(message)
            else:
                await client.ws.send_str(message)


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
