"""Hand the C heap's free memory back to the operating system when the worker falls idle.

glibc's malloc keeps what a job freed in its arenas for reuse instead of returning it: the audio, mel
and activation buffers of a job (each of a new size) leave free holes that the next job's buffers do not
fit exactly, so the resident set of a warm worker drifts up and down by tens of MB between jobs and
mostly up. `malloc_trim(0)` returns the free pages of every arena. Measured over 200 tiny-model jobs
(tests/test_soak.py's inputs, in one process): without it idle RSS ended 39 MB above its level after
warm-up, of which one trim at the end took back 84 MB (down to -45 MB); trimmed after every job, the
growth was 5 MB, at a median 4 ms (at most 70 ms) per trim.

`IdleTrim().job()` wraps one job; when the last job in flight leaves, the heap is trimmed, so
concurrent jobs (MAX_CONCURRENCY > 1) never have their memory taken from under them mid-job. On a C
library without `malloc_trim` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator

Trim = Callable[[int], int]


def malloc_trim() -> Trim | None:
    """glibc's `malloc_trim(pad)`, or None when this process's C library has none."""
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


class IdleTrim:
    """Counts the jobs in flight; the last one to finish trims the heap."""

    def __init__(self, trim: Trim | None = None) -> None:
        self._trim = trim if trim is not None else malloc_trim()
        self._lock = threading.Lock()
        self._running = 0

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                idle = self._running == 0
            if idle and self._trim is not None:
                self._trim(0)
