// The duplex page: microphone → 80 ms PCM16 frames over the WebSocket (/api/duplex); the system's
// audio back through the worklet's jitter buffer; the inner monologue and what the model heard, live.
// The protocol is described in dialogue/serve.py. `window.duet` exposes counters (read by the tests).
"use strict";

const SAMPLE_RATE = 16000;
const params = new URLSearchParams(location.search);
const JITTER_MS = Number(params.get("jitter") || 160);
const $ = (id) => document.getElementById(id);
const duet = (window.duet = { state: "idle", framesSent: 0, audioMessages: 0, samplesReceived: 0, steps: 0,
                              monologue: "", heard: "", missing: 0, dropped: 0, played: 0, underruns: 0,
                              error: null });
let ctx = null, node = null, mic = null, ws = null, ready = false;

function setState(state, text) {
  duet.state = state;
  $("status").dataset.state = state;
  $("status").textContent = text || state;
}

function showCounters() {
  $("counters").textContent = `steps ${duet.steps} · frames sent ${duet.framesSent} · audio ${
    (duet.samplesReceived / SAMPLE_RATE).toFixed(1)} s · late input ${duet.missing} · dropped ${
    duet.dropped} · underruns ${duet.underruns}`;
}

function level(id, rms) {
  const db = 20 * Math.log10(rms + 1e-6);  // −60 dB … 0 dB → 0 … 100 %
  $(id).style.width = `${Math.max(0, Math.min(100, (db + 60) * 100 / 60))}%`;
}

function onMessage(event) {
  if (typeof event.data !== "string") {
    const pcm = new Int16Array(event.data);
    const audio = new Float32Array(pcm.length);
    let energy = 0;
    for (let i = 0; i < pcm.length; i++) { audio[i] = pcm[i] / 32768; energy += audio[i] * audio[i]; }
    node.port.postMessage(audio, [audio.buffer]);
    duet.audioMessages++;
    duet.samplesReceived += pcm.length;
    level("out-level", Math.sqrt(energy / Math.max(1, pcm.length)));
    return;
  }
  const msg = JSON.parse(event.data);
  if (msg.type === "ready") {
    ready = true;
    setState("live", `live — slot ${msg.slot}, ${msg.model}${msg.trained === false ? " (UNTRAINED)" : ""}`);
  } else if (msg.type === "step") {
    duet.steps++;
    duet.missing = msg.missing;
    duet.dropped = msg.dropped;
    if (msg.text) { duet.monologue += msg.text; $("monologue").textContent = duet.monologue; }
    if (msg.heard) { duet.heard += msg.heard; $("heard").textContent = duet.heard; }
    showCounters();
  } else if (msg.type === "busy") {
    setState("busy", msg.message);
  } else if (msg.type === "error") {
    duet.error = msg;
    if (msg.fatal) setState("error", `${msg.code}: ${msg.message}`);
    else console.warn("server:", msg.code, msg.message);
  }
}

async function start() {
  $("start").disabled = true;
  setState("starting", "starting…");
  try {
    ctx = new AudioContext({ sampleRate: SAMPLE_RATE, latencyHint: "interactive" });
    await ctx.audioWorklet.addModule("/web/duplex-worklet.js");
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false } });
    const frame = Math.round(ctx.sampleRate * 0.08);
    node = new AudioWorkletNode(ctx, "duplex-processor", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      processorOptions: { frameSamples: frame, prebufferSamples: Math.round(ctx.sampleRate * JITTER_MS / 1000),
                          maxBufferedSamples: Math.round(ctx.sampleRate * (JITTER_MS / 1000 + 0.4)) } });
    node.port.onmessage = (e) => {
      if (e.data.frame) {
        level("mic-level", e.data.level);
        if (ready && ws.readyState === WebSocket.OPEN) { ws.send(e.data.frame); duet.framesSent++; }
      } else {
        duet.played = e.data.played;
        duet.underruns = e.data.underruns;
      }
    };
    ctx.createMediaStreamSource(mic).connect(node);
    node.connect(ctx.destination);
    await ctx.resume();
    ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/duplex`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", sample_rate: ctx.sampleRate, format: "pcm16" }));
    ws.onmessage = onMessage;
    ws.onclose = (e) => {
      ready = false;
      if (duet.state === "live" || duet.state === "starting") setState("closed", `closed (${e.code} ${e.reason})`);
      teardown();
    };
    $("stop").disabled = false;
  } catch (err) {
    duet.error = { code: "browser", message: String(err) };
    setState("error", String(err));
    teardown();
  }
}

function teardown() {
  if (mic) mic.getTracks().forEach((t) => t.stop());
  if (ctx) ctx.close();
  mic = ctx = node = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

function stop() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" }));
  if (ws) ws.close(1000, "stop");
  ready = false;
  setState("idle", "stopped");
  teardown();
}

$("start").onclick = start;
$("stop").onclick = stop;
