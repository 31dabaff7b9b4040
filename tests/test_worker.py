"""Synthesis jobs through the runpod SDK's own job runner (`rp_job.run_job`), on tiny random-weight
models loaded by the real f5_tts and vocos code. Outputs are checked by decoding them."""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import uuid

import numpy as np
import pytest
import soundfile as sf
import torch
from runpod.serverless.modules import rp_job

from tts_worker.handler import make_handler

FAST = {"nfe_steps": 4}


@pytest.fixture(scope="module")
def handler(worker):
    return make_handler(worker)


def run(handler, job_input):
    return asyncio.run(rp_job.run_job(handler, {"id": f"test-{uuid.uuid4().hex[:8]}", "input": job_input}))


def ok(handler, job_input):
    result = run(handler, job_input)
    assert "error" not in result, result
    return result["output"]


def stored_bytes(worker, output):
    data = worker.storage.get(output["audio"]["key"])
    assert data is not None
    return data


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "ogg"])
def test_synthesis_produces_decodable_audio(handler, worker, fmt):
    out = ok(handler, {"text": "Hello world. This is a test.", "output_format": fmt, "seed": 7, **FAST})
    data = stored_bytes(worker, out)
    samples, rate = sf.read(io.BytesIO(data))
    assert rate == out["sample_rate"] == 24_000
    assert sf.info(io.BytesIO(data)).format == {"wav": "WAV", "mp3": "MP3", "flac": "FLAC", "ogg": "OGG"}[fmt]
    assert abs(len(samples) / rate - out["duration"]) < (0.06 if fmt == "mp3" else 1e-3)
    assert out["status"] == "completed" and out["format"] == fmt and out["seed"] == 7
    assert out["audio_url"] == out["audio"]["url"] and out["storage"] == "local"
    assert out["audio"]["key"].startswith("output/") and out["audio"]["key"].endswith(f".{fmt}")
    assert out["model"] == {"name": "F5TTS_tiny", "tiny": True}
    stages = out["processing_stages"]
    assert {"reference", "synthesis", "vocoder", "encode", "storage"} <= set(stages)
    assert isinstance(out["processing_time"], float) and out["processing_time"] >= sum(stages.values()) * 0.99


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_same_seed_gives_byte_identical_audio(handler, worker, fmt):
    job = {"text": "Same input, same seed. Two sentences here.", "seed": 1234, "output_format": fmt, **FAST}
    first, second = ok(handler, job), ok(handler, job)
    assert first["audio"]["key"] != second["audio"]["key"]
    assert stored_bytes(worker, first) == stored_bytes(worker, second)


def test_ogg_same_seed_gives_identical_samples(handler, worker):
    # Ogg streams carry a random serial number, so the bytes differ; the audio must not.
    job = {"text": "Ogg output.", "seed": 5, "output_format": "ogg", **FAST}
    a, _ = sf.read(io.BytesIO(stored_bytes(worker, ok(handler, job))))
    b, _ = sf.read(io.BytesIO(stored_bytes(worker, ok(handler, job))))
    assert np.array_equal(a, b)


def test_seed_is_drawn_and_reproduces(handler, worker):
    first = ok(handler, {"text": "No seed given.", **FAST})
    assert isinstance(first["seed"], int)
    again = ok(handler, {"text": "No seed given.", "seed": first["seed"], **FAST})
    assert stored_bytes(worker, first) == stored_bytes(worker, again)
    other = ok(handler, {"text": "No seed given.", "seed": first["seed"] + 1, **FAST})
    assert stored_bytes(worker, other) != stored_bytes(worker, first)


def test_long_text_is_chunked_and_ranges_cover_the_audio(handler, worker):
    text = " ".join(f"This is sentence number {i}, and it carries a few more words." for i in range(30))
    out = ok(handler, {"text": text, "seed": 3, **FAST})
    chunks = out["chunks"]
    assert len(chunks) > 1
    assert chunks[0]["start_sample"] == 0 and chunks[-1]["end_sample"] == out["samples"]
    assert all(a["end_sample"] == b["start_sample"] for a, b in itertools.pairwise(chunks))
    assert all(text[c["char_start"] : c["char_end"]] == c["text"] for c in chunks)
    samples, rate = sf.read(io.BytesIO(stored_bytes(worker, out)))
    assert len(samples) == out["samples"] and math.isclose(out["duration"], len(samples) / rate, abs_tol=1e-3)


def test_a_long_run_without_spaces_is_timed_over_all_the_chunks_it_was_spoken_in(handler):
    """A 300-character "word" (a URL) is cut across chunks; its timing covers every chunk it reached,
    from where it starts in the first to where its part ends in the last, and the words after it follow."""
    url = "https://example.com/" + "abcdefghij" * 28
    assert len(url) == 300
    text = f"Please open {url} and read the page it shows."
    # As written (the normaliser would spell the URL out, as one unit: test_normalize covers that).
    out = ok(handler, {"text": text, "seed": 11, "normalize": False, **FAST})
    rate, words = out["sample_rate"], out["word_timings"]
    begin = text.index(url)
    reached = [c for c in out["chunks"] if c["char_start"] < begin + len(url) and c["char_end"] > begin]
    assert len(reached) >= 2
    assert "".join(c["text"] for c in reached).find(url[20:]) >= 0  # cut, not dropped
    first, last = reached[0], reached[-1]
    timing = words[text.split().index(url)]
    assert timing["word"] == url
    ms = 1e-3  # timings are rounded to milliseconds
    assert first["start_sample"] / rate - ms <= timing["start"] <= first["end_sample"] / rate
    assert last["start_sample"] / rate < timing["end"] <= last["end_sample"] / rate + ms
    previous = timing["end"]
    for word in words[text.split().index(url) + 1 :]:
        assert previous <= word["start"] <= word["end"] <= out["duration"]
        assert word["start"] >= last["start_sample"] / rate - ms  # in the last chunk or later
        previous = word["end"]


def test_speed_changes_duration(handler):
    text = "A sentence long enough to have a duration that depends on speed."
    slow = ok(handler, {"text": text, "speed": 0.5, "seed": 1, **FAST})
    fast = ok(handler, {"text": text, "speed": 2.0, "seed": 1, **FAST})
    assert slow["duration"] > 3 * fast["duration"]


def test_original_api_synthesis_request_with_library_voice(handler, worker):
    # The original layout: voices/<name>.wav with its transcript in voices/<name>.txt.
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(3 * 16_000) / 16_000)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, tone, 16_000, format="WAV")
    worker.storage.put("voices/my-voice.wav", buf.getvalue(), "audio/wav")
    worker.storage.put("voices/my-voice.txt", b"A short reference sentence.", "text/plain")
    out = ok(handler, {"text": "Speaking in my own voice.", "local_voice": "my-voice.wav", "speed": 1.0})
    assert out["voice"] == "my-voice" and out["status"] == "completed" and out["duration"] > 0
    assert out["audio_url"].endswith(".wav")


def expect_error(handler, job_input, code):
    result = run(handler, job_input)
    assert "output" not in result or not result["output"], result
    error = result["error"]
    assert isinstance(error, str) and error.startswith(f"{code}: "), error
    assert "Traceback" not in error and "/tmp" not in error and "site-packages" not in error
    return error


@pytest.mark.parametrize(
    ("job_input", "code", "names"),
    [
        ({"operation": "dance", "text": "a"}, "unknown_operation", "operation"),
        ({"text": "a", "colour": "red"}, "invalid_input", "colour"),
        ({"text": ["a"]}, "invalid_input", "text"),
        ({"text": "   "}, "invalid_input", "text"),
        ({"text": "x" * 5001}, "invalid_input", "text"),
        ({"text": "a", "speed": 7}, "invalid_input", "speed"),
        ({"text": "a", "speed": float("nan")}, "invalid_input", "speed"),
        ({"text": "a", "output_format": "wma"}, "invalid_input", "output_format"),
        ({"text": "a", "voice": "nobody-here"}, "voice_not_found", "voice"),
    ],
)
def test_bad_input_fails_the_job_and_the_next_job_succeeds(handler, job_input, code, names):
    error = expect_error(handler, job_input, code)
    assert f"{names}:" in error
    ok(handler, {"text": "Still serving.", **FAST})


def test_corrupt_reference_audio(handler, worker):
    worker.storage.put("voices/broken.wav", b"RIFF\x00\x00garbage" * 50, "audio/wav")
    worker.storage.put("voices/broken.txt", b"Some text.", "text/plain")
    error = expect_error(handler, {"text": "a", "voice": "broken"}, "invalid_audio")
    assert "voice:" in error
    ok(handler, {"text": "Still serving.", **FAST})


def test_model_failure_asks_runpod_to_refresh_the_worker(handler, worker, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(worker.engine._model.transformer, "forward", out_of_memory)
    result = run(handler, {"text": "This will fail.", **FAST})
    assert result["error"].startswith("model_error: ") and "20.00 GiB" not in result["error"]
    assert result["stopPod"] is True
    monkeypatch.undo()
    ok(handler, {"text": "Recovered.", **FAST})


def test_unexpected_exception_is_not_a_traceback(handler, worker, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyError("secret-internal-detail")

    monkeypatch.setattr(worker.engine, "generate_batch", boom)
    error = expect_error(handler, {"text": "x", **FAST}, "internal_error")
    assert "secret-internal-detail" not in error


def test_progress_is_reported_per_chunk_and_stage(worker):
    updates = []
    progress_handler = make_handler(worker, progress=lambda job, update: updates.append((job["id"], update)))
    text = " ".join(f"Sentence {i} is here to make the text long enough for several chunks." for i in range(12))
    result = progress_handler({"id": "p1", "input": {"text": text, **FAST}})
    chunks = len(result["chunks"])
    assert chunks > 1
    stages = [u for _, u in updates]
    assert stages[:chunks] == [{"stage": "synthesis", "chunk": i + 1, "chunks": chunks} for i in range(chunks)]
    assert stages[chunks:] == [{"stage": "alignment"}, {"stage": "storage"}]
    assert {job_id for job_id, _ in updates} == {"p1"}


def test_concurrent_jobs_each_get_their_own_audio(worker):
    """Jobs run at once through the async handler (as RunPod's loop runs them with MAX_CONCURRENCY > 1)
    are sampled as one batch and come out as they do one at a time, up to float rounding: each job's
    audio is its own text and seed, not a neighbour's."""
    from tts_worker.handler import make_async_handler

    async_handler = make_async_handler(worker)
    jobs = [{"id": f"c{i}", "input": {"text": f"Job number {i} speaks its own words.", "seed": 100 + i,
                                      "word_timings": False, **FAST}} for i in range(4)]  # fmt: skip

    async def all_at_once():
        return await asyncio.gather(*(async_handler(job) for job in jobs))

    together = asyncio.run(all_at_once())
    alone = [make_handler(worker)(job) for job in jobs]
    assert max(c["batch_size"] for out in together for c in out["chunks"]) > 1
    assert all(c["batch_size"] == 1 for out in alone for c in out["chunks"])
    decoded = [[sf.read(io.BytesIO(stored_bytes(worker, out)))[0] for out in outs] for outs in (together, alone)]
    for i, (a, job) in enumerate(zip(together, jobs, strict=True)):
        assert a["text"] == job["input"]["text"] and a["seed"] == job["input"]["seed"]
        batched, single = decoded[0][i], decoded[1][i]
        assert batched.shape == single.shape
        assert np.abs(batched - single).max() <= 2 / 32768  # 16-bit wav: a rounding step at most
        others = [d for j, d in enumerate(decoded[1]) if j != i and d.shape == single.shape]
        assert all(np.abs(batched - d).max() > 0.01 for d in others)
