"""Load on `python -m dialogue.serve`: N simulated clients against one server subprocess on loopback.

    python benchmarks/serve_load.py                         # N = 1, 2, 4, 8, ... until steps run late
    python benchmarks/serve_load.py --clients 1,2,4 --seconds 30 --threads 1
    python benchmarks/serve_load.py --soak 600 --soak-slots 4   # clients join and leave; memory over time

Each client streams the bundled conversation's user channel (looped) in real time: 80 ms PCM16 frames
sent on the wall clock, whatever the server does (a real microphone does not wait). Per N: the server's
per-step compute time (mean / p95 / p99 over the whole batch step), late steps (output ready after the
next step's audio was due), and the end-to-end latency from sending a frame to receiving the audio of
the step that consumed it (median / p95, loopback). First, in this process: the cost of one batched
step of N conversations against N separate sessions of one. The soak keeps `--soak-slots` clients
coming and going (random lifetimes, some closing abruptly, some turned away busy) and samples the
server's resident memory. Writes the figures as JSON to --out.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import time
import http.client
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FRAME, STEP = 1280, 0.08


def batch_cost(ns: list[int], steps: int, threads: int) -> list[dict]:
    """ms per step of one SlotBatch of N against N SlotBatches of one (same model, silence-free noise)."""
    import torch

    from dialogue.demo import BUNDLED_MODEL, asset, load_bundle, load_demo_codec
    from dialogue.serve import SlotBatch

    torch.set_num_threads(threads)
    codec = load_demo_codec(None, asset(BUNDLED_MODEL))
    bundle = load_bundle(argparse.Namespace(model=None, codec=None), codec)

    def per_step(slots: int) -> float:
        with SlotBatch(codec, bundle, slots) as batch:
            batch.warmup()
            audio = 0.05 * torch.randn(slots, batch.frame_samples)
            t = time.perf_counter()
            for _ in range(steps):
                batch.step(audio)
            return 1000 * (time.perf_counter() - t) / steps

    single = per_step(1)
    return [{"n": n, "batch_ms": per_step(n) if n > 1 else single, "separate_ms": n * single} for n in ns]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, slots: int, threads: int, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "dialogue.serve", "--port", str(self.port), "--max-sessions",
                                      str(slots), "--threads", str(threads), *extra], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(900):
            if self.proc.poll() is not None:
                raise RuntimeError(f"dialogue.serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("dialogue.serve did not come up in 180 s")

    def stats(self) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/api/stats")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def user_audio() -> np.ndarray:
    import soundfile as sf

    from dialogue.demo import BUNDLED_CONVERSATION, asset

    wav, _ = sf.read(asset(BUNDLED_CONVERSATION), dtype="int16", always_2d=True)
    return wav[:, 0]


async def realtime_client(session, url: str, pcm: np.ndarray, seconds: float, offset: int = 0,
                          abrupt: bool = False) -> dict:
    """Stream `pcm` (looped) in real time for `seconds`; → e2e latencies (s) and the last step message."""
    from dialogue.serve.client import DuplexClient

    client = await DuplexClient.connect(session, url)
    sent_at: dict[int, float] = {}  # frame index → send time
    e2e, last = [], {}
    n_frames = int(seconds / STEP)

    async def sender():
        t0 = time.perf_counter()
        for i in range(n_frames):
            await asyncio.sleep(max(0.0, t0 + i * STEP - time.perf_counter()))
            j = (offset + i * FRAME) % (len(pcm) - FRAME)
            sent_at[i] = time.perf_counter()
            await client.send(pcm[j:j + FRAME])

    task = asyncio.create_task(sender())
    try:
        while not task.done() or len(e2e) < 3:
            step = await asyncio.wait_for(client.next_step(), 2.0)
            now = time.perf_counter()
            last = step.message
            frame = step.message["consumed"] // FRAME - 1
            if frame in sent_at and step.message["consumed"] > step.message["dropped"]:
                e2e.append(now - sent_at.pop(frame))
            for k in [k for k in sent_at if k < frame]:
                del sent_at[k]  # dropped frames never get a reply of their own
            if task.done() and not sent_at:
                break
    except asyncio.TimeoutError:
        pass
    finally:
        task.cancel()
        if abrupt:
            client.ws._response.connection.transport.abort()  # vanish without a close frame
        else:
            await client.close()
    return {"e2e": e2e, "last": last}


async def load_run(url: str, n: int, seconds: float, pcm: np.ndarray) -> list[dict]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(realtime_client(session, url, pcm, seconds, offset=k * 7 * FRAME)
                                      for k in range(n)))


def load_table(args, pcm) -> list[dict]:
    rows = []
    for n in args.clients:
        server = Server(n, args.threads, args.server_args)
        try:
            results = asyncio.run(load_run(server.url + "/api/duplex", n, args.seconds, pcm))
            stats = server.stats()
        finally:
            server.close()
        e2e = np.array([x for r in results for x in r["e2e"]]) * 1000
        row = {"n": n, "steps": stats["steps"], "late_steps": stats.get("late_steps", 0),
               **{f"step_{k}_ms": stats["step_ms"][k] for k in ("mean", "p95", "p99", "max")},
               "e2e_median_ms": float(np.median(e2e)) if e2e.size else None,
               "e2e_p95_ms": float(np.percentile(e2e, 95)) if e2e.size else None,
               "dropped_samples": sum(r["last"].get("dropped", 0) for r in results),
               "missing_steps": sum(r["last"].get("missing", 0) for r in results), "rss_mb": stats["rss_mb"]}
        rows.append(row)
        print(f"N={n}: {json.dumps(row)}", flush=True)
        if args.until_late and (row["late_steps"] > 0.01 * row["steps"] or row["step_p99_ms"] >= 1000 * STEP):
            break
    return rows


async def soak(url: str, stats, seconds: float, slots: int, pcm: np.ndarray, seed: int) -> dict:
    """`slots` client loops, each: join, talk 2–8 s (one in four closes abruptly), leave, repeat; one
    extra loop knocks while the server is full (busy answers). Memory and step figures every 10 s."""
    import aiohttp

    from dialogue.serve.client import ServerBusy

    r = random.Random(seed)
    end = time.perf_counter() + seconds
    counts = {"sessions": 0, "busy": 0, "errors": 0}
    samples = []

    async def member(k: int):
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() < end - 1:
                life = min(r.uniform(2, 8), max(0.5, end - time.perf_counter() - 1))
                try:
                    await realtime_client(session, url, pcm, life, offset=r.randrange(len(pcm) - FRAME),
                                          abrupt=r.random() < 0.25)
                    counts["sessions"] += 1
                except ServerBusy:
                    counts["busy"] += 1
                    await asyncio.sleep(0.5)
                except Exception:  # noqa: BLE001 - count and go on: the soak measures the server
                    counts["errors"] += 1
                    await asyncio.sleep(0.5)

    async def knocker():
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() < end - 1:
                await asyncio.sleep(r.uniform(3, 10))
                try:
                    await realtime_client(session, url, pcm, 1.0)
                except ServerBusy:
                    counts["busy"] += 1
                except Exception:  # noqa: BLE001
                    counts["errors"] += 1

    async def sampler():
        t0 = time.perf_counter()
        while time.perf_counter() < end:
            s = await asyncio.to_thread(stats)
            samples.append({"t": round(time.perf_counter() - t0, 1), "rss_mb": s["rss_mb"], "joins": s.get("joins", 0),
                            "late_steps": s.get("late_steps", 0), "steps": s.get("steps", 0),
                            "p99_ms": s["step_ms"]["p99"]})
            await asyncio.sleep(10)

    await asyncio.gather(sampler(), knocker(), *(member(k) for k in range(slots)))
    return {"counts": counts, "samples": samples}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", default="1,2,4,8,12,16", help="N values, comma-separated")
    p.add_argument("--until-late", action=argparse.BooleanOptionalAction, default=True,
                   help="stop at the first N whose steps run late (over 1 %% late, or p99 >= 80 ms)")
    p.add_argument("--seconds", type=float, default=20.0, help="per N")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--cost-steps", type=int, default=50, help="steps per batch-cost measurement (0: skip)")
    p.add_argument("--soak", type=float, default=0.0, help="soak seconds (0: no soak)")
    p.add_argument("--soak-slots", type=int, default=4)
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--server-args", default="", help="extra dialogue.serve arguments (e.g. --model PATH)")
    p.add_argument("--out", type=Path, default=ROOT / "exp" / "serve" / "load.json")
    args = p.parse_args(argv)
    args.clients = [int(x) for x in args.clients.split(",")]
    args.server_args = args.server_args.split()
    pcm = user_audio()
    result = {"argv": sys.argv, "threads": args.threads}
    if args.cost_steps and not args.skip_load:
        result["batch_cost"] = batch_cost(args.clients, args.cost_steps, args.threads)
        print("| N | one batch of N (ms/step) | N sessions of one (ms/step) | ratio |\n|---|---|---|---|")
        for row in result["batch_cost"]:
            print(f"| {row['n']} | {row['batch_ms']:.1f} | {row['separate_ms']:.1f} | "
                  f"{row['batch_ms'] / row['separate_ms']:.2f} |")
    if not args.skip_load:
        rows = result["load"] = load_table(args, pcm)
        print("\n| N | step mean / p95 / p99 (ms) | late steps / steps | e2e median / p95 (ms) | dropped / missing |"
              "\n|---|---|---|---|---|")
        for row in rows:
            e2e = f"{row['e2e_median_ms']:.0f} / {row['e2e_p95_ms']:.0f}" if row["e2e_median_ms"] is not None else "-"
            print(f"| {row['n']} | {row['step_mean_ms']:.1f} / {row['step_p95_ms']:.1f} / {row['step_p99_ms']:.1f} | "
                  f"{row['late_steps']} / {row['steps']} | {e2e} | {row['dropped_samples'] // FRAME} frames / "
                  f"{row['missing_steps']} |")
    if args.soak:
        server = Server(args.soak_slots, args.threads, args.server_args)
        try:
            s = result["soak"] = asyncio.run(soak(server.url + "/api/duplex", server.stats, args.soak,
                                                  args.soak_slots, pcm, 0))
            final = result["soak"]["final"] = server.stats()
        finally:
            server.close()
        rss = [x["rss_mb"] for x in s["samples"]]
        warm = [x["rss_mb"] for x in s["samples"] if x["t"] >= 30] or rss
        print(f"\nsoak {args.soak:.0f} s, {args.soak_slots} slots: joins {final.get('joins', 0)}, leaves "
              f"{final.get('leaves', 0)}, busy {final.get('busy', 0)}, client sessions {s['counts']}, "
              f"steps {final['steps']}, late {final.get('late_steps', 0)}, clock resyncs {final.get('clock_resyncs', 0)}; "
              f"RSS first {rss[0]:.0f} MB, at 30 s {warm[0]:.0f} MB, last {rss[-1]:.0f} MB, max {max(rss):.0f} MB "
              f"(growth after 30 s: {rss[-1] - warm[0]:+.1f} MB)")
        for x in s["samples"][::6]:
            print(f"  t={x['t']:>5}s rss={x['rss_mb']:.0f} MB joins={x['joins']} late={x['late_steps']}/{x['steps']} "
                  f"p99={x['p99_ms']:.1f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
