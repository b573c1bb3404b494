"""dialogue.serve: conversations as slots of one batch stay isolated bit for bit; the WebSocket protocol
over loopback (ready, steps, busy, errors, limits); ~100 malformed clients that neither kill the server
nor change another conversation's output; one end-to-end conversation with the bundled model."""
import asyncio
import contextlib
import json
import random

import numpy as np
import pytest
import torch

aiohttp = pytest.importorskip("aiohttp", reason="dialogue.serve needs aiohttp: pip install 'duet[serve]'")

from codec import Codec, preset  # noqa: E402
from codec.api import codec_identity  # noqa: E402
from codec.config_io import merge  # noqa: E402
from codec.model import SpeechCodec  # noqa: E402
from codec.transformer import TransformerConfig  # noqa: E402
from dialogue import (DialogueConfig, DuplexModel, DuplexSession, SamplingConfig, StreamConfig, TextTokenizer,  # noqa: E402
                      train_tokenizer)
from dialogue.checkpoint import DialogueBundle  # noqa: E402
from dialogue.demo import asset  # noqa: E402
from dialogue.features import silence_token  # noqa: E402
from dialogue.serve import InputBuffer, PieceText, SlotBatch  # noqa: E402
from dialogue.serve.client import DuplexClient, ServerBusy, ServerError, converse  # noqa: E402
from dialogue.serve.server import Client, DuplexServer, ServeConfig  # noqa: E402
from tests.test_codec import SMALL  # noqa: E402

FRAME = 1280


@pytest.fixture(scope="module")
def tiny():
    """A random-weight codec and dialogue model of the bundled shapes' stream structure (16 kHz, 5 tokens
    per 80 ms step), small enough that a step takes a few ms."""
    torch.manual_seed(0)
    codec_model = SpeechCodec(merge(preset("duet_cpu16k"), SMALL)).eval()
    codec = Codec(codec_model, codec_identity(codec_model), "tiny")
    tok = train_tokenizer(["what is two plus two", "two plus two is four", "how do you spell cat"] * 5, 40)
    streams = StreamConfig.derive(codec.config, tok.vocab_size, silence_token(codec))
    cfg = DialogueConfig(name="tiny", streams=streams, user_text_delay=1,
                         temporal=TransformerConfig(dim=32, num_layers=1, num_heads=2, window=16, max_step=4),
                         depth=TransformerConfig(dim=16, num_layers=1, num_heads=2))
    model = DuplexModel(cfg).eval()
    return codec, DialogueBundle(model, tok, torch.randn(streams.voice_dim), codec.codec_id, "tiny", trained=False)


def speech(seed, steps):
    """Loud random 'speech' [steps * FRAME] int16 (the tiny model cannot tell it from any other)."""
    g = np.random.default_rng(seed)
    return (g.standard_normal(steps * FRAME) * 3000).clip(-32768, 32767).astype(np.int16)


# --- the batch engine ----------------------------------------------------------------------------
def test_slot_batch_conversations_are_isolated(tiny):
    """Conversation A in slot 0 runs 24 steps while B starts in slot 1 (step 3), ends, C starts in the
    same slot (step 12) and noise starts in slot 2 (step 5): A's audio, monologue and heard tokens are
    bit for bit those of A alone; C equals C alone in a fresh batch; their tokens equal a session of one."""
    codec, bundle = tiny
    a, b, c, noise = (torch.from_numpy(speech(s, 24)).float().view(24, FRAME) / 32768 for s in (1, 2, 3, 4))
    sampling = SamplingConfig(1.0, 10, 1.0, 50)

    def run(schedule):  # schedule: step → {slot: (seed, audio [steps, FRAME])} starting there
        outs, playing = [], {}
        with SlotBatch(codec, bundle, 3, sampling) as batch:
            for t in range(24):
                start = schedule.get(t, {})
                playing.update({slot: (t, x) for slot, (_, x) in start.items()})
                audio = torch.zeros(3, FRAME)
                for slot, (t0, x) in playing.items():
                    audio[slot] = x[t - t0]
                o = batch.step(audio, {slot: seed for slot, (seed, _) in start.items()})
                outs.append((o.audio.clone(), o.text.clone(), o.heard.clone()))
        return outs

    busy = run({0: {0: (7, a)}, 3: {1: (8, b)}, 5: {2: (9, noise)}, 12: {1: (10, c)}})
    alone = run({0: {0: (7, a)}})
    c_alone = run({0: {1: (10, c)}})
    for t in range(24):
        for x, y in zip(busy[t], alone[t]):
            assert torch.equal(x[0], y[0]), f"slot 0 changed at step {t}"
    lag = codec.model.vocoder.lag  # C alone began a fresh batch (which drops the vocoder's lag); C in a
    first, fresh = busy[12][0][1], c_alone[0][0][1]  # running batch hears it as leading silence
    assert torch.equal(first[:lag], torch.zeros(lag)) and torch.equal(first[lag:], fresh)
    for t in range(12):
        for x, y in list(zip(busy[12 + t], c_alone[t]))[0 if t else 1:]:
            assert torch.equal(x[1], y[1]), f"slot 1 (C) differs from C alone at its step {t}"
    # and A's tokens are those of a session of its own (audio: other kernels for batch 1, so tokens only)
    with codec.streaming(1, voice=bundle.system_voice[None]) as stream, \
            DuplexSession(bundle.model, 1, sampling, bundle.system_voice, seeds=[7]) as session:
        for t in range(24):
            text, _ = session.step(stream.encode_step(a[t][None]), stream.voice)
            assert int(text[0]) == int(busy[t][1][0]) and int(session.heard[0]) == int(busy[t][2][0])


def test_input_buffer_bounds_bursts_and_counts_stalls():
    buf = InputBuffer(FRAME, 3 * FRAME)
    assert buf.pop_frame() is None and buf.missing_steps == 1
    buf.push(np.arange(10 * FRAME, dtype=np.float32))  # a burst of 10 frames: the oldest 7 go
    assert buf.buffered == 3 * FRAME and buf.dropped == 7 * FRAME
    assert buf.pop_frame()[0] == 7 * FRAME and buf.consumed == 8 * FRAME
    buf.push(np.zeros(100, np.float32))
    buf.pop_frame(), buf.pop_frame()
    assert buf.pop_frame() is None and buf.buffered == 100 and buf.missing_steps == 2


def test_piece_text_spaces_words(tiny):
    tok = tiny[1].tokenizer
    two, plus = tok.encode_word("two"), tok.encode_word("plus")
    assert len(two) == 1 and len(plus) >= 1
    pieces = PieceText(tok)
    got = [pieces(t) for t in [TextTokenizer.PAD, *two, TextTokenizer.PAD, TextTokenizer.EPAD, *plus, TextTokenizer.PAD]]
    assert "".join(got) == " two plus" and got[:3] == ["", " two", ""]


# --- the server over loopback --------------------------------------------------------------------
@contextlib.asynccontextmanager
async def serving(codec, bundle, slots, cfg=None):
    """A DuplexServer on a free loopback port → (server, ws url, http base)."""
    batch = SlotBatch(codec, bundle, slots, SamplingConfig(1.0, 10, 1.0, 50))
    server = DuplexServer(batch, bundle.tokenizer, cfg or ServeConfig(), {"model": bundle.model.cfg.name})
    runner = aiohttp.web.AppRunner(server.app())
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield server, f"ws://127.0.0.1:{port}/api/duplex", f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        batch.close()


async def expect_error(ws):
    """The next text message is an error (any step messages before it skipped) → it."""
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        data = json.loads(msg.data)
        if data["type"] == "error":
            return data


def test_protocol_ready_steps_busy_and_errors(tiny):
    codec, bundle = tiny

    async def scenario():
        async with serving(codec, bundle, 2) as (server, url, http), aiohttp.ClientSession() as s:
            async with s.get(http + "/") as r:
                assert r.status == 200 and "inner monologue" in await r.text()
            for path in ("/web/app.js", "/web/duplex-worklet.js", "/web/style.css"):
                async with s.get(http + path) as r:
                    assert r.status == 200, path
            first = await DuplexClient.connect(s, url, seed=5)
            assert first.ready["slot"] == 0 and first.ready["sample_rate"] == 16000
            assert first.ready["frame_samples"] == FRAME and first.ready["seed"] == 5
            second = await DuplexClient.connect(s, url)
            with pytest.raises(ServerBusy, match="all 2 conversations"):
                await DuplexClient.connect(s, url)
            pcm = speech(1, 8)
            await first.send(pcm[:2 * FRAME])
            steps = []
            for i in range(6):
                steps.append(await first.next_step())
                await first.send(pcm[(2 + i) * FRAME:(3 + i) * FRAME])
            assert [st.message["consumed"] for st in steps] == [FRAME * (i + 1) for i in range(6)]
            assert all(st.message["missing"] == 0 and st.message["dropped"] == 0 for st in steps)
            assert len(steps[0].audio) == FRAME - codec.model.vocoder.lag  # the fresh batch's first step
            assert all(len(st.audio) == FRAME for st in steps[1:])
            await first.ws.send_str(json.dumps({"type": "stop"}))
            await first.ws.receive(timeout=5)  # closed by the server
            again = await DuplexClient.connect(s, url)  # the stopped client's slot is free again
            assert again.ready["slot"] == 0
            await second.close()
            await again.close()
            with pytest.raises(ServerError, match="16000 Hz"):
                await DuplexClient.connect(s, url, sample_rate=44100)
            async with s.get(http + "/api/stats") as r:
                stats = await r.json()
            assert stats["busy"] == 1 and stats["steps"] >= 6 and stats["closed_sample_rate"] == 1
            assert stats["connected"] == 0 and stats["rss_mb"] > 0

    asyncio.run(scenario())


def test_stall_plays_silence_and_burst_drops_the_oldest(tiny):
    codec, bundle = tiny

    async def scenario():
        async with serving(codec, bundle, 1, ServeConfig(max_buffer_ms=240)) as (server, url, _), \
                aiohttp.ClientSession() as s:
            client = await DuplexClient.connect(s, url)
            await client.send(speech(1, 1))
            await client.next_step()
            for _ in range(3):  # a stall: no audio, the clock goes on with silence
                step = await client.next_step()
            assert step.message["missing"] >= 2
            await client.send(speech(2, 12))  # a 12-frame burst: only 240 ms (3 frames) are kept
            step = await client.next_step()
            assert step.message["dropped"] == 9 * FRAME
            await client.close()

    asyncio.run(scenario())


def test_a_failing_step_ends_its_conversations_and_the_server_goes_on(tiny):
    codec, bundle = tiny

    async def scenario():
        async with serving(codec, bundle, 1) as (server, url, http), aiohttp.ClientSession() as s:
            step = server.batch.step
            server.batch.step = lambda *a: (_ for _ in ()).throw(RuntimeError("boom"))
            client = await DuplexClient.connect(s, url)
            await client.send(speech(1, 2))
            with pytest.raises(ServerError, match="server_error: the step failed: RuntimeError"):
                await client.next_step()
            server.batch.step = step
            conv = await converse(s, url, speech(2, 4))
            assert len(conv.steps) == 4
            async with s.get(http + "/api/stats") as r:
                assert (await r.json())["step_errors"] == 1

    asyncio.run(scenario())


def test_a_client_that_does_not_read_is_closed(tiny):
    """Its outgoing queue is bounded: when full, the client gets a fatal error and is closed."""
    codec, bundle = tiny

    class FakeSocket:
        def __init__(self):
            self.sent, self.closed_with = [], None

        async def send_str(self, data):
            self.sent.append(json.loads(data))

        async def close(self, code, message):
            self.closed_with = (code, message)

    async def scenario():
        with SlotBatch(codec, bundle, 1) as batch:
            server = DuplexServer(batch, bundle.tokenizer, ServeConfig(out_queue=4))
            ws = FakeSocket()
            client = Client(ws, 0, server)
            client.input = InputBuffer(FRAME, 3 * FRAME)
            out = batch.step(torch.zeros(1, FRAME))
            for _ in range(3):
                server._deliver(client, out)
            await asyncio.sleep(0.01)
            assert ws.closed_with == (1008, b"too_slow") and ws.sent[-1]["code"] == "too_slow"
            assert server.counters["too_slow"] == 1 and client.out.empty()

    asyncio.run(scenario())


def fuzz_cases(n, seed=0):
    """n malformed or abrupt clients: (name, async function(session, url))."""
    r = random.Random(seed)

    async def raw(s, url, messages, hello=True, wait_steps=0, abort=False):
        ws = await s.ws_connect(url, max_msg_size=0)
        if hello:
            await ws.send_json({"type": "hello", "sample_rate": 16000})
        for m in messages:
            await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))
        for _ in range(wait_steps):
            if (await ws.receive(timeout=5)).type != aiohttp.WSMsgType.TEXT and False:
                break
        if abort:
            ws._response.connection.transport.abort()  # a client that vanishes: no close frame
        else:
            await ws.close()

    async def raw_tcp_garbage(s, url):
        host, port = url.split("//")[1].split("/")[0].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        writer.write(f"GET /api/duplex HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        writer.write(bytes(r.getrandbits(8) for _ in range(r.randint(1, 300))))  # not websocket framing
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    kinds = [
        ("audio before hello", lambda s, u: raw(s, u, [speech(r.randint(0, 99), 1).tobytes()], hello=False)),
        ("odd-length frame", lambda s, u: raw(s, u, [bytes(r.randrange(1, 2559, 2))])),
        ("empty frame", lambda s, u: raw(s, u, [b""])),
        ("oversized frame", lambda s, u: raw(s, u, [bytes(r.randint(32002, 120000) // 2 * 2)])),
        ("beyond the hard limit", lambda s, u: raw(s, u, [bytes(200000)])),
        ("not json", lambda s, u: raw(s, u, ["hello?" * r.randint(1, 20)])),
        ("json not an object", lambda s, u: raw(s, u, [json.dumps([1, 2, 3])])),
        ("unknown type", lambda s, u: raw(s, u, [json.dumps({"type": r.choice(["opus", "bye", None, 5])})])),
        ("huge text", lambda s, u: raw(s, u, ["x" * r.randint(4097, 60000)])),
        ("wrong rate", lambda s, u: raw(s, u, [json.dumps({"type": "hello", "sample_rate": r.choice(
            [8000, 44100, 48000, "16000", None, -1, 1e9])})], hello=False)),
        ("wrong format", lambda s, u: raw(s, u, [json.dumps({"type": "hello", "sample_rate": 16000, "format": "opus"})],
                                          hello=False)),
        ("bad seed", lambda s, u: raw(s, u, [json.dumps({"type": "hello", "sample_rate": 16000,
                                                         "seed": r.choice([-1, "x", True, 2 ** 70, 1.5])})], hello=False)),
        ("hello twice", lambda s, u: raw(s, u, [json.dumps({"type": "hello", "sample_rate": 16000})])),
        ("burst", lambda s, u: raw(s, u, [speech(r.randint(0, 99), 1).tobytes()] * r.randint(5, 40), wait_steps=2)),
        ("stall then close", lambda s, u: raw(s, u, [speech(1, 1).tobytes()], wait_steps=r.randint(2, 6))),
        ("abrupt close mid-stream", lambda s, u: raw(s, u, [speech(2, 1).tobytes()] * 3, wait_steps=r.randint(0, 3),
                                                     abort=True)),
        ("abrupt close before hello", lambda s, u: raw(s, u, [], hello=False, abort=True)),
        ("silence", lambda s, u: raw(s, u, [np.zeros(FRAME, np.int16).tobytes()] * 4, wait_steps=3)),
        ("full scale", lambda s, u: raw(s, u, [np.full(FRAME, r.choice([-32768, 32767]), np.int16).tobytes()] * 3,
                                        wait_steps=2)),
        ("random bytes", lambda s, u: raw(s, u, [bytes(r.getrandbits(8) for _ in range(r.randrange(2, 4000, 2)))])),
        ("many errors", lambda s, u: raw(s, u, [b"x"] * 30)),
        ("garbage after the handshake", raw_tcp_garbage),
        ("silent after connect", lambda s, u: raw(s, u, [], hello=False, wait_steps=1)),
    ]
    return [kinds[i % len(kinds)] if i < len(kinds) else r.choice(kinds) for i in range(n)]


def test_malformed_clients_leave_another_conversation_unchanged(tiny):
    """A well-behaved conversation runs in slot 0 while ~100 malformed clients come and go in slot 1;
    the server survives every one, and slot 0's audio and text equal the same conversation alone."""
    codec, bundle = tiny
    cfg = ServeConfig(hello_timeout_s=0.3, idle_timeout_s=2.0, max_errors=20)
    pcm = speech(11, 400)
    cases = fuzz_cases(100)

    async def good_client(s, url, done: asyncio.Event | None, steps: int | None):
        client = await DuplexClient.connect(s, url, seed=42)
        out, sent = [], 2
        await client.send(pcm[:2 * FRAME])
        while (steps is None and not done.is_set()) or (steps is not None and len(out) < steps):
            out.append(await client.next_step())
            await client.send(pcm[sent * FRAME:(sent + 1) * FRAME])
            sent += 1
        await client.close()
        return out

    async def with_fuzz():
        async with serving(codec, bundle, 2, cfg) as (server, url, http), aiohttp.ClientSession() as s:
            done = asyncio.Event()
            good = asyncio.create_task(good_client(s, url, done, None))
            await asyncio.sleep(0.3)
            failures = []
            for name, case in cases:
                try:
                    await asyncio.wait_for(case(s, url), 10)
                except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError, ServerError):
                    pass  # the server may close a bad client first: that is the point
                except Exception as e:  # noqa: BLE001 - report which case broke what
                    failures.append(f"{name}: {e!r}")
                async with s.get(http + "/api/stats") as r:
                    assert r.status == 200, name  # the server is alive after every case
            done.set()
            out = await good
            async with s.get(http + "/api/stats") as r:
                stats = await r.json()
            return out, failures, stats

    async def alone(steps):
        async with serving(codec, bundle, 2, cfg) as (_, url, _http), aiohttp.ClientSession() as s:
            return await good_client(s, url, None, steps)

    fuzzed, failures, stats = asyncio.run(with_fuzz())
    assert not failures, failures
    assert len(fuzzed) > 20 and stats["joins"] >= 100 and stats["connected"] == 0
    assert stats.get("client_errors", 0) > 20 and stats.get("closed_sample_rate", 0) >= 1
    assert all(st.message["missing"] == 0 for st in fuzzed)  # lockstep: the good client never stalled
    ref = asyncio.run(alone(len(fuzzed)))
    for i, (x, y) in enumerate(zip(fuzzed, ref)):
        assert x.message == y.message and np.array_equal(x.audio, y.audio), f"step {i} differs"


@pytest.mark.slow
def test_bundled_conversation_end_to_end():
    """The bundled model over the socket: the same tokens, text and (PCM16) audio as the offline
    pipeline on the same recording with the same seed, and a monologue and transcript with words."""
    from dialogue.demo import BUNDLED_CONVERSATION, BUNDLED_MODEL, load_bundle, load_demo_codec, load_user
    from dialogue.pipeline import run_duplex

    codec = load_demo_codec(None, asset(BUNDLED_MODEL))

    class Args:
        model = None
        codec = None
    bundle = load_bundle(Args, codec)
    user = load_user(asset(BUNDLED_CONVERSATION), codec)
    n = user.shape[1] // FRAME * FRAME
    pcm = (user[0, :n] * 32768).round().clamp(-32768, 32767).to(torch.int16).numpy()
    sampling = SamplingConfig()

    async def scenario():
        batch = SlotBatch(codec, bundle, 1, sampling)
        server = DuplexServer(batch, bundle.tokenizer)
        runner = aiohttp.web.AppRunner(server.app())
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with aiohttp.ClientSession() as s:
                return await converse(s, f"ws://127.0.0.1:{runner.addresses[0][1]}/api/duplex", pcm, seed=3)
        finally:
            await runner.cleanup()
            batch.close()

    conv = asyncio.run(scenario())
    run = run_duplex(codec, bundle.model, torch.from_numpy(pcm).float()[None] / 32768,
                     bundle.system_voice, sampling, seeds=[3])
    pieces, heard = PieceText(bundle.tokenizer), PieceText(bundle.tokenizer)
    assert conv.monologue == "".join(pieces(t) for t in run.text_tokens[0]).strip()
    assert conv.heard == "".join(heard(t) for t in run.heard_tokens[0]).strip()
    assert len(conv.monologue.split()) >= 3 and len(conv.heard.split()) >= 3
    offset = int(round(run.output_offset * codec.sample_rate))
    offline = (run.system_audio[0, offset:offset + len(conv.audio)].clamp(-1, 1) * 32767).round().to(torch.int16)
    assert np.array_equal(conv.audio[:len(offline)], offline.numpy())
