"""Live full-duplex audio: the microphone feeds the duplex loop and the loudspeaker plays the
system as it is decoded (`sounddevice`, PortAudio; `pip install duet[live]`, apt libportaudio2).

One PortAudio stream, input and output, with a block of exactly one dialogue step at the codec's
sample rate. Its callback (PortAudio's thread) only moves samples: the captured block goes into a
queue the loop reads, and the loudspeaker takes its block from a sample FIFO the loop fills with
decoded audio (decoded chunks need not be one block long: the vocoder's first output is shorter).
Playback starts once a whole block is buffered; after that a short FIFO is padded with silence and
counted as a late step (`late_steps`). The model runs in the caller's thread.
"""
from __future__ import annotations

import collections
import queue
import threading
import time

import numpy as np
import torch


def import_sounddevice():
    """sounddevice, or an ImportError/OSError that says what to install."""
    try:
        import sounddevice
    except ImportError as e:
        raise ImportError("live mode needs sounddevice: pip install 'duet[live]' (or pip install sounddevice)") from e
    except OSError as e:  # the wheel imports, PortAudio itself is missing
        raise OSError(f"live mode needs the PortAudio library ({e}): apt-get install libportaudio2") from e
    return sounddevice


class MicrophoneSource:
    """A step source for `dialogue.pipeline.stream_duplex` (batch 1): blocks of `step_samples`
    from the default (or given) input device, for `seconds` or until `stop()`; `play` queues the
    system's audio for the output device."""

    batch_size = 1

    def __init__(self, sample_rate: int, step_samples: int, seconds: float, device=None, sounddevice=None,
                 max_buffered_steps: int = 4) -> None:
        if seconds <= 0:
            raise ValueError(f"MicrophoneSource: seconds must be > 0, got {seconds}")
        self.sd = sounddevice or import_sounddevice()
        self.sample_rate, self.step_samples, self.device = sample_rate, step_samples, device
        self.num_steps = max(1, int(round(seconds * sample_rate / step_samples)))
        self.captured: queue.Queue[np.ndarray] = queue.Queue()
        self.max_buffered = max_buffered_steps * step_samples  # beyond this, the oldest audio is dropped
        self.recorded_blocks: list[np.ndarray] = []
        self.late_steps = 0  # output blocks that were not (wholly) ready when the device needed them
        self.overflows = 0  # input blocks PortAudio reported as lost
        self._fifo: collections.deque[np.ndarray] = collections.deque()
        self._buffered = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = False  # playback starts once a whole block is buffered

    def _callback(self, indata, outdata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        self.captured.put(indata[:, 0].copy())
        with self._lock:
            self._started = self._started or self._buffered >= frames
            n = self._pull(outdata[:, 0], frames) if self._started else 0
        outdata[n:] = 0
        self.late_steps += self._started and n < frames

    def _pull(self, out: np.ndarray | None, frames: int) -> int:
        """Move up to `frames` samples from the FIFO into `out` (None: drop them); returns how many."""
        n = 0
        while n < frames and self._fifo:
            head = self._fifo[0]
            take = min(len(head), frames - n)
            if out is not None:
                out[n:n + take] = head[:take]
            n += take
            if take == len(head):
                self._fifo.popleft()
            else:
                self._fifo[0] = head[take:]
        self._buffered -= n
        return n

    def __iter__(self):
        try:
            stream = self.sd.Stream(samplerate=self.sample_rate, blocksize=self.step_samples, channels=1,
                                    dtype="float32", device=self.device, callback=self._callback)
        except Exception as e:  # PortAudioError: no device, or the rate is not supported
            raise RuntimeError(f"cannot open the audio device {self.device or '(default)'} at "
                               f"{self.sample_rate} Hz, {self.step_samples}-sample blocks: {e}") from e
        with stream:
            for _ in range(self.num_steps):
                if self._stop.is_set():
                    break
                block = self._next_block()
                self.recorded_blocks.append(block)
                yield torch.from_numpy(block)[None]

    def _next_block(self) -> np.ndarray:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                return self.captured.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise RuntimeError("the audio device delivered nothing for 5 s (is the microphone in use?)")

    def play(self, audio: torch.Tensor) -> None:
        """Queue decoded system audio [1, n] for the loudspeaker; beyond `max_buffered_steps` of
        backlog the oldest samples are dropped (latency stays bounded)."""
        block = audio[0].detach().float().cpu().numpy().astype(np.float32)
        with self._lock:
            self._fifo.append(block)
            self._buffered += len(block)
            if self._buffered > self.max_buffered:
                self._pull(None, self._buffered - self.max_buffered)

    def stop(self) -> None:
        self._stop.set()

    def recorded(self) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(self.recorded_blocks))[None]
