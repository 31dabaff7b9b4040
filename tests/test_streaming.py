"""Streaming (STREAMING=true): the async-generator handler on tiny random-weight models, in process.
Through RunPod's real loop (job-stream posts, the aggregated /runsync output) in test_production_loop."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tts_worker import synthesis
from tts_worker.handler import make_handler, make_streaming_handler

FAST = {"nfe_steps": 4}
RATE = 24_000
FADE = int(synthesis.CROSS_FADE_SECONDS * 24_000)
LONG = " ".join(f"Sentence number {i} is here to make the text long enough for several chunks." for i in range(8))


def collect(handler, job_input: dict[str, Any], job_id: str = "s1") -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        return [item async for item in handler({"id": job_id, "input": job_input})]

    return asyncio.run(run())


def decode(worker, stored: dict[str, Any]) -> np.ndarray:
    data = worker.storage.get(stored["key"])
    assert data is not None, stored["key"]
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE
    return samples


@pytest.fixture(scope="module")
def streaming(worker):
    refreshed: list[bool] = []
    return make_streaming_handler(worker, on_refresh=lambda: refreshed.append(True)), refreshed


def test_each_chunk_is_yielded_stored_and_placed_in_the_whole(worker, streaming):
    handler, _ = streaming
    items = collect(handler, {"text": LONG, "stream": True, "seed": 3, **FAST})
    *partials, final = items
    assert final["type"] == "result" and final["status"] == "completed"
    assert len(partials) == len(final["chunks"]) > 1
    whole = decode(worker, final["audio"])
    assert len(whole) == final["samples"]
    for i, (part, chunk) in enumerate(zip(partials, final["chunks"], strict=True)):
        assert part["type"] == "chunk" and part["index"] == i and part["chunks"] == len(partials)
        assert part["text"] == chunk["text"] and part["job_id"] == "s1"
        samples = decode(worker, part["audio"])
        assert len(samples) == part["samples"] and abs(len(samples) / RATE - part["duration"]) < 1e-3
        start = part["start_sample"]
        assert part["start"] == round(start / RATE, 4)
        # Where the final result says the chunk's range begins: mid-way through its fade-in.
        assert start <= chunk["start_sample"] <= start + FADE
        # Away from the cross-fades, the chunk's file is that stretch of the whole.
        inner = slice(FADE, len(samples) - FADE)
        stretch = whole[start + FADE : start + len(samples) - FADE]
        assert np.abs(samples[inner] - stretch).max() <= 2 / 32768
    assert partials[-1]["start"] + partials[-1]["duration"] == pytest.approx(final["duration"], abs=1e-3)


def test_streamed_word_timings_sit_inside_their_chunk(streaming):
    handler, _ = streaming
    *partials, final = collect(handler, {"text": LONG, "stream": True, "word_timings": True, **FAST})
    streamed = [w for p in partials for w in p["word_timings"]]
    assert [w["word"] for w in streamed] == [w["word"] for w in final["word_timings"]]
    for part in partials:
        for w in part["word_timings"]:
            assert part["start"] - 1e-3 <= w["start"] <= w["end"] <= part["start"] + part["duration"] + 1e-3


def test_requests_without_stream_yield_only_the_whole_result(worker, streaming):
    handler, _ = streaming
    (only,) = collect(handler, {"text": "Just one result.", "seed": 1, **FAST})
    assert only["status"] == "completed" and "type" not in only
    assert len(decode(worker, only["audio"])) == only["samples"]
    (voices,) = collect(handler, {"operation": "list_voices"})
    assert voices["operation"] == "list_voices"


def test_a_bad_request_yields_its_error(streaming):
    handler, _ = streaming
    (error,) = collect(handler, {"text": "", "stream": True})
    assert error["error"].startswith("invalid_input: text:")


def test_stream_needs_a_streaming_endpoint(worker):
    result = make_handler(worker)({"id": "x", "input": {"text": "Hello.", "stream": True}})
    assert result["error"] == "invalid_input: stream: this endpoint does not stream; deploy it with STREAMING=true"


def test_a_job_failing_after_some_chunks_leaves_none_of_them(worker, streaming, monkeypatch):
    """The model breaks on the third chunk: two chunks were streamed, the error comes last, their files
    are removed with the failed job, RunPod is asked for a new worker, and this one still answers."""
    handler, refreshed = streaming
    real = worker.engine._sample
    calls = []

    def break_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(worker.engine, "_sample", break_on_third)
        *partials, last = collect(handler, {"text": LONG, "stream": True, **FAST}, job_id="s-fail")
    assert len(partials) == 2
    assert last == {"error": "model_error: synthesis failed in the model; the worker will restart"}
    assert refreshed == [True]
    for part in partials:
        assert worker.storage.get(part["audio"]["key"]) is None  # streamed, then removed with the failed job
    (ok,) = collect(handler, {"text": "Serving again.", **FAST})
    assert ok["status"] == "completed"
