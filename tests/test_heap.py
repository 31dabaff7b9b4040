"""Returning freed heap to the OS between jobs: only when no job is in flight, through glibc's real
`malloc_trim`, from every handler."""

from __future__ import annotations

import asyncio
import ctypes
import threading

import psutil
import pytest

from tts_worker import heap
from tts_worker.handler import make_async_handler, make_handler, make_streaming_handler


class Recorder:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, pad: int) -> int:
        with self.lock:
            self.calls.append(pad)
        return 1


def test_only_the_last_job_in_flight_trims_and_a_failed_job_counts_too():
    trim = Recorder()
    idle = heap.IdleTrim(trim)
    with idle.job():
        with idle.job():
            pass
        assert trim.calls == []  # the outer job is still running
    assert trim.calls == [0]
    with pytest.raises(RuntimeError), idle.job():
        raise RuntimeError("job failed")
    assert trim.calls == [0, 0]


def test_jobs_that_overlap_on_threads_trim_once_they_all_end():
    trim = Recorder()
    idle = heap.IdleTrim(trim)
    inside = threading.Barrier(4)
    release = threading.Event()

    def job() -> None:
        with idle.job():
            inside.wait()
            release.wait()

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    inside.wait()
    assert trim.calls == []
    release.set()
    for t in threads:
        t.join()
    assert 1 <= len(trim.calls) <= 3 and idle._running == 0


@pytest.mark.skipif(heap.malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_malloc_trim_gives_back_freed_heap_that_malloc_keeps():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    trim = heap.malloc_trim()
    assert trim is not None
    proc = psutil.Process()
    block, count = 64 * 1024, 1600  # under glibc's mmap threshold: from the heap; 100 MiB in all
    blocks = [libc.malloc(block) for _ in range(count)]
    for address in blocks:
        ctypes.memset(address, 1, block)
    pin = libc.malloc(block)  # above them: the freed blocks are not the heap's top, so free keeps them
    ctypes.memset(pin, 1, block)
    for address in blocks:
        libc.free(address)
    try:
        kept = proc.memory_info().rss
        trim(0)
        returned = kept - proc.memory_info().rss
    finally:
        libc.free(pin)
    assert returned > 0.8 * block * count, f"malloc_trim returned {returned / 2**20:.1f} MiB of 100"


@pytest.mark.parametrize("kind", ["sync", "async", "streaming"])
def test_every_handler_trims_after_each_job_even_a_failed_one(worker, monkeypatch, kind):
    trim = Recorder()
    monkeypatch.setattr(heap, "malloc_trim", lambda: trim)
    job = {"id": "heap-test", "input": {"text": ""}}  # refused: a failed job allocated too
    if kind == "sync":
        result = make_handler(worker)(job)
    elif kind == "async":
        result = asyncio.run(make_async_handler(worker)(job))
    else:

        async def last() -> dict:
            return [r async for r in make_streaming_handler(worker)(job)][-1]

        result = asyncio.run(last())
    assert "error" in result
    assert trim.calls == [0]
