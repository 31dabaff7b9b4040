"""The worker as RunPod runs it: `python -m tts_worker` in the runpod SDK's production loop (job-take,
job-done, heartbeat), driven through `fake_runpod.FakeRunPod` on 127.0.0.1 with tiny random-weight models.

Two worker processes: one (MAX_CONCURRENCY unset: one job at a time) serves the many-jobs, bad-jobs,
progress and SIGTERM tests, in that order (the SIGTERM test ends it); one with MAX_CONCURRENCY=2 serves
the concurrency test and then is given a model failure for the refresh test.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import soundfile as sf

from fake_runpod import FakeRunPod, Result, WorkerProcess

pytestmark = pytest.mark.slow

START_TIMEOUT = 240.0  # import torch + whisperx, load models, warm up: 30-60 s on 2 busy cores
SAMPLE_RATE = 24_000
# The default voice speaks its 51-character transcript in 5.33 s: about 9.6 characters per second.
DEFAULT_VOICE_CHARS_PER_SECOND = 51 / 5.33


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    with FakeRunPod() as fake:
        worker = WorkerProcess(fake, tiny_model_dir, tmp_path_factory.mktemp("loop"))
        try:
            fake.wait_take(process=worker, timeout=START_TIMEOUT)
            yield fake, worker
        finally:
            worker.stop()


def read_output(worker: WorkerProcess, result: Result) -> tuple[Any, int]:
    assert result.ok, result.body
    return sf.read(worker.storage_dir / result.output["audio"]["key"], dtype="float32")


def assert_intact(worker: WorkerProcess, result: Result, job_input: dict[str, Any]) -> Any:
    """The stored file decodes to exactly the samples the result reports, about as long as the text needs."""
    samples, rate = read_output(worker, result)
    out = result.output
    # On RunPod without a bucket the worker's disk is out of the client's reach: the file comes inline.
    assert base64.b64decode(out["audio"]["base64"]) == (worker.storage_dir / out["audio"]["key"]).read_bytes()
    assert rate == SAMPLE_RATE == out["sample_rate"]
    assert len(samples) == out["samples"] and abs(len(samples) / rate - out["duration"]) < 1e-3
    expected = len(job_input["text"]) / DEFAULT_VOICE_CHARS_PER_SECOND / job_input.get("speed", 1.0)
    assert 0.6 * expected < out["duration"] < 1.5 * expected + 0.5, (out["duration"], expected)
    assert out["job_id"] == result.job_id and out["text"] == job_input["text"].strip()
    return samples


def test_many_jobs_in_a_row_all_complete(served):
    fake, worker = served
    formats = ["wav", "flac", "ogg"]
    inputs = [
        {
            "text": f"Job {i} of the run: " + "a few more words to say. " * (1 + i % 3),
            "seed": 100 + i,
            "nfe_steps": 2,
            "output_format": formats[i % 3],
            "speed": [1.0, 1.25, 0.8][i % 3],
        }
        for i in range(9)
    ]
    inputs.append(dict(inputs[0]))  # the first job again: same text and seed give the same audio
    ids = [fake.submit(job) for job in inputs]
    results = fake.wait_results(ids, timeout=180, process=worker)

    audio = [assert_intact(worker, results[i], job) for i, job in zip(ids, inputs, strict=True)]
    assert all("stopPod" not in results[i].body for i in ids)
    assert [results[i].output["seed"] for i in ids] == [job["seed"] for job in inputs]
    first, again = results[ids[0]].output, results[ids[-1]].output
    assert (audio[0] == audio[-1]).all() and first["audio"]["key"] != again["audio"]["key"]
    # One job at a time, answered in the order taken; each take says whether a job is still running.
    assert [r.job_id for r in sorted(results.values(), key=lambda r: r.at)] == ids
    handed = [t for t in fake.takes if t.job_ids]
    assert [j for t in handed for j in t.job_ids][-len(ids) :] == ids
    assert all(t.query.get("job_in_progress") == "0" and "batch" not in t.path for t in handed)
    assert fake.pings, "the heartbeat child never pinged"


BAD_JOBS: list[tuple[Any, str]] = [
    ({"text": ""}, "invalid_input: text: must not be empty or only white space"),
    ({"endpoint": "nope", "text": "x"}, "unknown_operation: endpoint: 'nope' is not an operation"),
    ({"text": "x", "speed": "fast"}, "invalid_input: speed: should be a valid number"),
    ({"text": "x", "nfe_steps": 0}, "invalid_input: nfe_steps:"),
    ({"text": "Who is this?", "voice": "nobody-here", "nfe_steps": 2}, "voice_not_found:"),
    ("just a string", "invalid_input: input: should be a JSON object"),
    ({"text": "x", "bogus": 1}, "invalid_input: bogus: unknown field"),
]


def test_bad_jobs_fail_with_their_error_and_the_next_succeeds(served):
    fake, worker = served
    good = {"text": "The job after a failure still works.", "seed": 7, "nfe_steps": 2}
    ids = []
    for job_input, _ in BAD_JOBS:
        ids += [fake.submit(job_input), fake.submit(good)]
    results = fake.wait_results(ids, timeout=120, process=worker)

    for (job_input, message), bad_id, good_id in zip(BAD_JOBS, ids[::2], ids[1::2], strict=True):
        bad = results[bad_id]
        # Exactly what RunPod gets: a string error (the job is FAILED), no output, no worker restart.
        assert set(bad.body) == {"error"} and isinstance(bad.error, str), bad.body
        assert bad.error.startswith(message), (job_input, bad.error)
        assert "Traceback" not in bad.error and str(worker.workdir) not in bad.error
        assert_intact(worker, results[good_id], good)
        assert "stopPod" not in results[good_id].body
    assert worker.poll() is None


def test_long_jobs_report_progress_before_the_result(served):
    fake, worker = served
    text = "This sentence is long enough to need more than one chunk of speech from the model. " * 6
    job_id = fake.submit({"text": text, "seed": 1, "nfe_steps": 2})
    result = fake.wait_results([job_id], timeout=120, process=worker)[job_id]
    chunks = len(result.output["chunks"])
    assert chunks >= 2
    # runpod's progress_update posts from a thread of its own: one sent just before the result may land after.
    in_time = [p.output for p in fake.progress if p.job_id == job_id and p.at <= result.at]
    synthesis = [u for u in in_time if u.get("stage") == "synthesis"]
    assert sorted((u["chunk"], u["chunks"]) for u in synthesis) == [(i + 1, chunks) for i in range(chunks)]
    assert len(in_time) > chunks  # and the stages after synthesis


def test_sigterm_lets_the_job_in_flight_finish_and_post_its_result(served):
    """RunPod stops a worker with SIGTERM (then SIGKILL after a grace period). The runpod SDK's handler only
    sets a shutdown flag: the job running finishes, its result is posted, no new job is taken, exit 0."""
    fake, worker = served
    job = {"text": "A long job that is still running when the worker is told to stop. " * 2, "nfe_steps": 24}
    job_id = fake.submit(job)
    while not any(job_id in t.job_ids for t in fake.takes):
        assert worker.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)  # into the synthesis
    assert fake.result(job_id) is None, "the job finished before the signal: make it longer"
    worker.terminate()
    signalled = time.monotonic()
    waiting = fake.submit({"text": "Never taken: the worker is draining.", "nfe_steps": 2})

    assert worker.wait(timeout=90) == 0, worker.log_tail()
    exited = time.monotonic()
    result = fake.result(job_id)
    assert result is not None, worker.log_tail()
    assert signalled < result.at < exited
    assert_intact(worker, result, job)
    assert fake.result(waiting) is None and fake.pending() == 1


@pytest.fixture(scope="module")
def concurrent(tiny_model_dir, tmp_path_factory):
    """A second worker with MAX_CONCURRENCY=2 and batching on (off by default on CPU); the refresh test (last)
    leaves it unusable."""
    with FakeRunPod() as fake:
        workdir = tmp_path_factory.mktemp("concurrent")
        worker = WorkerProcess(fake, tiny_model_dir, workdir, extra_env={"MAX_CONCURRENCY": "2", "BATCH_MAX_SIZE": "2"})
        try:
            fake.wait_take(process=worker, timeout=START_TIMEOUT)
            yield fake, worker, listing(worker.tmp_dir)  # what start-up wrote to $TMPDIR (onnxruntime, wandb)
        finally:
            worker.stop()


def test_concurrent_jobs_overlap_and_each_gets_its_own_audio(concurrent):
    """Two jobs at a time on one worker: each output is what its input gives when run alone (up to a 16-bit
    rounding step when the two were sampled in one batch), never its neighbour's."""
    fake, worker, startup_tmp = concurrent
    inputs = [
        {"text": "The first voice says one thing, slowly.", "seed": 11, "nfe_steps": 2, "speed": 0.8},
        {"text": "The second one says something else entirely, and a little more of it.", "seed": 22, "nfe_steps": 2},
        {"text": "A third, short.", "seed": 33, "nfe_steps": 2, "output_format": "flac"},
    ]
    alone = []
    for job in inputs:
        job_id = fake.submit(job)
        alone.append(assert_intact(worker, fake.wait_results([job_id], 60, worker)[job_id], job))

    together = [(k, fake.submit(inputs[k])) for k in (0, 1, 2, 1, 0, 2)]
    results = fake.wait_results([j for _, j in together], timeout=120, process=worker)
    for k, job_id in together:
        samples = assert_intact(worker, results[job_id], inputs[k])
        assert samples.shape == alone[k].shape and abs(samples - alone[k]).max() <= 2 / 32768, (k, job_id)
    assert len({results[j].output["audio"]["key"] for _, j in together}) == len(together)

    # Held at once: a batch take handed out two jobs, or a job was taken while another one was running.
    ids = {j for _, j in together}
    takes = [t for t in fake.takes if ids & set(t.job_ids)]
    assert any(len(t.job_ids) > 1 or t.query.get("job_in_progress") == "1" for t in takes), [
        (t.path, t.query, t.job_ids) for t in takes
    ]
    assert listing(worker.tmp_dir) == startup_tmp, "a job left temp files"


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.mark.skipif(sys.platform != "linux", reason="limits another process's address space with prlimit")
def test_model_failure_asks_runpod_to_refresh_the_worker(concurrent):
    """A genuine model failure: the worker's address space is capped at what it uses now (as a GPU runs out
    of memory), so the model's next allocations fail inside torch. The job fails with `model_error` and the
    job-done post carries `stopPod` (the SDK's form of `refresh_worker`), which makes RunPod replace the
    worker. User errors and successes never ask for that (see the tests above). Runs last on its worker."""
    fake, worker, _ = concurrent
    warm = fake.submit({"text": "A warm job first.", "seed": 1, "nfe_steps": 2})
    assert fake.wait_results([warm], timeout=60, process=worker)[warm].ok
    time.sleep(1.5)  # back to waiting for jobs

    proc = psutil.Process(worker.pid)
    proc.rlimit(psutil.RLIMIT_AS, (proc.memory_info().vms + 8 * 2**20, psutil.RLIM_INFINITY))
    text = "This sentence is long enough to fill a chunk of the largest size the reference allows. " * 6
    failing = fake.submit({"text": text, "seed": 2, "nfe_steps": 2, "speed": 0.5})
    result = fake.wait_results([failing], timeout=120, process=worker)[failing]

    assert result.error is not None and result.error.startswith("model_error: "), result.body
    assert "the worker will restart" in result.error and "Traceback" not in result.error
    assert result.body.get("stopPod") is True
    assert worker.poll() is None  # the worker answers; RunPod does the restart


@pytest.fixture(scope="module")
def streaming(tiny_model_dir, tmp_path_factory):
    """A third worker, deployed with STREAMING=true: its handler is an async generator."""
    with FakeRunPod() as fake:
        worker = WorkerProcess(fake, tiny_model_dir, tmp_path_factory.mktemp("stream"), extra_env={"STREAMING": "1"})
        try:
            fake.wait_take(process=worker, timeout=START_TIMEOUT)
            yield fake, worker
        finally:
            worker.stop()


def test_streamed_chunks_are_posted_as_they_are_ready_and_aggregated(streaming):
    """Each chunk goes to RunPod's job-stream as soon as it is stored, before the job is done; the job-done
    post (what /runsync returns) holds every partial and then the whole result."""
    fake, worker = streaming
    text = " ".join(f"Streamed sentence {i} is long enough to fill part of a chunk on its own." for i in range(6))
    job = {"text": text, "stream": True, "seed": 5, "nfe_steps": 2}
    job_id = fake.submit(job)
    done = fake.wait_results([job_id], timeout=120, process=worker)[job_id]
    posted = [s for s in fake.streams if s.job_id == job_id]

    assert done.ok, done.body
    *partials, final = done.output
    assert len(partials) == len(final["chunks"]) > 1 and final["type"] == "result"
    assert [p.output for p in posted] == done.output  # every yield streamed, in order
    assert all(p.at < done.at for p in posted) and posted[0].at < posted[-1].at
    whole = assert_intact(worker, Result(job_id, {"output": final}, stream=False, at=done.at), job)
    for part in partials:
        samples, rate = sf.read(worker.storage_dir / part["audio"]["key"], dtype="float32")
        assert rate == SAMPLE_RATE and len(samples) == part["samples"]
        assert part["start_sample"] + len(samples) <= len(whole)

    plain = fake.submit({"text": "Not streamed.", "nfe_steps": 2})
    result = fake.wait_results([plain], timeout=60, process=worker)[plain]
    assert result.ok and len(result.output) == 1 and result.output[0]["status"] == "completed"

    bad = fake.submit({"text": "", "stream": True})
    failed = fake.wait_results([bad], timeout=60, process=worker)[bad]
    assert failed.error is not None and failed.error.startswith("invalid_input: text:"), failed.body
