"""`worker_pool(n)`: a spawn-context process pool, or the same `imap` interface in this process
when n == 1 (tests and debugging run the exact code path, minus the processes)."""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable


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
