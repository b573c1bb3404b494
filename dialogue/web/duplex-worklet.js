// Audio thread of the duplex page: cuts the microphone into 80 ms PCM16 frames for the socket and
// plays the system's audio from a small jitter buffer (playback starts, and restarts after an
// underrun, once `prebuffer` samples are queued; beyond `maxBuffered` the oldest audio is dropped).
class DuplexProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions;
    this.frame = o.frameSamples;
    this.prebuffer = o.prebufferSamples;
    this.maxBuffered = o.maxBufferedSamples;
    this.captured = new Int16Array(this.frame);
    this.capN = 0;
    this.energy = 0;
    this.queue = [];
    this.queued = 0;
    this.playing = false;
    this.underruns = 0;
    this.dropped = 0;
    this.played = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") { this.queue = []; this.queued = 0; this.playing = false; return; }
      this.queue.push(e.data);
      this.queued += e.data.length;
      while (this.queued > this.maxBuffered && this.queue.length > 1) {
        const old = this.queue.shift();
        this.queued -= old.length;
        this.dropped += old.length;
      }
    };
  }

  capture(input) {
    for (let i = 0; i < input.length; i++) {
      const s = Math.max(-1, Math.min(1, input[i]));
      this.energy += s * s;
      this.captured[this.capN++] = Math.round(s * 32767);
      if (this.capN === this.frame) {
        const level = Math.sqrt(this.energy / this.frame);
        this.port.postMessage({ frame: this.captured.buffer, level }, [this.captured.buffer]);
        this.captured = new Int16Array(this.frame);
        this.capN = 0;
        this.energy = 0;
      }
    }
  }

  play(out) {
    if (!this.playing && this.queued >= this.prebuffer) this.playing = true;
    let n = 0;
    while (this.playing && n < out.length) {
      if (this.queue.length === 0) { this.playing = false; this.underruns++; break; }
      const head = this.queue[0];
      const take = Math.min(head.length, out.length - n);
      out.set(head.subarray(0, take), n);
      n += take;
      this.queued -= take;
      if (take === head.length) this.queue.shift(); else this.queue[0] = head.subarray(take);
    }
    out.fill(0, n);
    this.played += n;
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) this.capture(input);
    const out = outputs[0] && outputs[0][0];
    if (out) {
      this.play(out);
      for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    }
    if (currentFrame % 4000 < 128) {
      this.port.postMessage({ played: this.played, underruns: this.underruns, dropped: this.dropped, queued: this.queued });
    }
    return true;
  }
}

registerProcessor("duplex-processor", DuplexProcessor);
