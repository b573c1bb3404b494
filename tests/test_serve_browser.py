"""The duplex page in a real browser: Debian's headless Chromium (driven by Playwright, nothing downloaded)
talks to `python -m dialogue.serve` with the bundled model, its microphone a recorded question; the page
connects, streams, receives and plays the system's audio, and shows the inner monologue. The screenshot
is kept in the test's tmp dir and copied to exp/serve/screenshot.png."""
import shutil
import socket
import subprocess
import sys
import time
import http.client
import json
from pathlib import Path

import pytest
import soundfile as sf

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                 reason=f"no {CHROMIUM}: bash recipes/install_system_deps.sh installs Debian's chromium")]


def get_stats(port: int) -> dict:
    """The server's /api/stats over loopback."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/api/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    pytest.importorskip("aiohttp", reason="dialogue.serve needs aiohttp: pip install 'duet[serve]'")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dialogue.serve", "--port", str(port), "--max-sessions", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"dialogue.serve exited {proc.returncode}: {proc.stdout.read()}")
            try:
                get_stats(port)
                break
            except OSError:
                time.sleep(0.2)
        yield url, port
    finally:
        proc.terminate()
        proc.wait(30)


def test_page_talks_and_listens_in_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright: pip install playwright "
                                                                "(its browser download is not needed)")
    from dialogue.demo import BUNDLED_CONVERSATION, asset

    wav, sr = sf.read(asset(BUNDLED_CONVERSATION), dtype="int16")
    question = tmp_path / "question.wav"  # the bundled conversation's user: a recorded question
    sf.write(question, wav, sr, subtype="PCM_16")
    args = ["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={question}", "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking", "--disable-component-update", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 720})
            logs = []
            page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
            page.goto(server[0] + "/")
            page.click("#start")
            try:
                page.wait_for_function("() => window.duet.state === 'error' || (window.duet.audioMessages > 60 "
                                       "&& window.duet.monologue.trim().split(/\\s+/).length >= 2)", timeout=90_000)
            finally:
                page.screenshot(path=str(tmp_path / "screenshot.png"))
                keep = ROOT / "exp" / "serve"
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(tmp_path / "screenshot.png", keep / "screenshot.png")
            duet = page.evaluate("() => window.duet")
            assert duet["state"] == "live", (duet, logs)
            assert duet["framesSent"] > 30 and duet["samplesReceived"] > 30 * 1280
            assert duet["played"] > 0, "the worklet played none of the system's audio"
            assert page.inner_text("#monologue").strip() == duet["monologue"].strip() != ""
            page.click("#stop")
            page.wait_for_function("() => window.duet.state === 'idle'")
        finally:
            browser.close()
    assert get_stats(server[1])["joins"] == 1
