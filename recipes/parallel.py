"""`worker_pool(n)`: a spawn-context process pool, or the same `imap` interface in this process
when n == 1 (tests and debugging run the exact code path, minus the processes); `Prefetcher`: an
iterator run ahead in a thread (the trainer's batches)."""
from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from typing import Callable, Iterator


class _InProcess:
    def __enter__(self) -> "_InProcess":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def imap(self, fn, items, chunksize: int = 1):
        return map(fn, items)


def worker_pool(num_workers: int, initializer: Callable | None = None, initargs: tuple = ()):
    """Context manager with `.imap(fn, items, chunksize)` (ordered results). Spawn, not fork: the
    workers must not inherit torch's thread pools or open TTS engine handles. `initializer` runs in
    each worker process; with one worker nothing is spawned and it does not run (it would change
    the caller's own settings, e.g. its torch thread count)."""
    if num_workers < 1:
        raise ValueError(f"worker_pool: num_workers must be >= 1, got {num_workers}")
    if num_workers == 1:
        return _InProcess()
    return mp.get_context("spawn").Pool(num_workers, initializer=initializer, initargs=initargs)


class Prefetcher:
    """An iterator run `depth` items ahead in a daemon thread (`transform`, e.g. pinning, runs there too),
    so a training step does not wait for its batch. The items and their order are the source's: a
    batch that is a function of (seed, step, rank) stays one. The source must not draw from the
    global RNGs (torch.manual_seed is the step's, in the training thread); an exception in it is
    raised by the `next()` that would have returned its item."""

    def __init__(self, source: Iterator, depth: int = 2, transform: Callable | None = None) -> None:
        if depth < 1:
            raise ValueError(f"Prefetcher: depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._source = source
        self._thread = threading.Thread(target=self._run, args=(transform,), daemon=True, name="prefetch")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self, transform) -> None:
        try:
            for item in self._source:
                if not self._put((True, transform(item) if transform else item)):
                    break
            else:
                self._put((False, StopIteration()))
        except BaseException as e:  # handed to the consumer
            self._put((False, e))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None and self._stop.is_set():
                close()

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self):
        ok, item = self._queue.get()
        if not ok:
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
