"""Soak: 200 jobs through the production loop (`fake_runpod`) on one worker process with tiny models.

A warm worker serves thousands of jobs between restarts, so what one job leaks, 200 jobs show: resident
memory after warm-up grows by less than 50 MB, open file descriptors come back to their baseline, the
worker's temp directory ($TMPDIR, fresh) holds nothing a job left behind at the moment each job's result
is posted, and every output decodes to what its result says. The jobs run once (a module fixture); each
property is its own test.

Time is bounded by the SDK, not the models: with one job at a time the loop sleeps 1 s before asking for
the next job, so a tiny-model job takes 1.1-1.5 s end to end (4-5 min for 200, plus start-up and the
tiny bake, depending on the machine's load). The figures are printed (`pytest -s`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import soundfile as sf

from fake_runpod import FakeRunPod, Result, WorkerProcess

pytestmark = pytest.mark.slow

JOBS = 200
WARMUP_JOBS = 12  # every length x speed x format combination of job_input once
START_TIMEOUT = 240.0
SECONDS_PER_JOB_LIMIT = 2.0  # the whole run must finish in JOBS * this
RSS_GROWTH_LIMIT = 50 * 2**20
FORMATS = ("wav", "flac", "ogg", "mp3")


def job_input(i: int) -> dict[str, Any]:
    return {
        "text": f"Soak job number {i}. " + "Some more words to vary the length. " * (i % 4),
        "seed": i,
        "nfe_steps": 2,
        "speed": (1.0, 1.2, 0.9)[i % 3],
        "output_format": FORMATS[i % len(FORMATS)],
    }


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


class Sampler(threading.Thread):
    """Open descriptors of the worker (its main process) every 0.25 s."""

    def __init__(self, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.fds: set[int] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.25):
            try:
                self.fds.add(self.proc.num_fds())
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def idle_figures(proc: psutil.Process) -> tuple[int, int]:
    """RSS and FDs once the worker is back to waiting for a job (the loop's 1 s sleep included)."""
    time.sleep(2.0)
    return proc.memory_info().rss, proc.num_fds()


@dataclass
class Soak:
    inputs: list[dict[str, Any]]
    ids: list[str]
    results: dict[str, Result]
    storage_dir: Path
    seconds: float
    rss: tuple[int, int]  # idle after warm-up, idle after the run
    fds: tuple[int, int]
    fds_seen: list[int]
    rss_after_job: list[int]
    startup_tmp: list[str]
    left_behind: dict[str, set[str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def soak(tiny_model_dir, tmp_path_factory) -> Soak:
    workdir = tmp_path_factory.mktemp("soak")
    tmp_dir = workdir / "tmp"  # WorkerProcess points TMPDIR here
    baseline_tmp: set[str] = set()
    left_behind: dict[str, set[str]] = {}
    rss_after_job: list[int] = []
    watched: list[psutil.Process] = []

    def after_job(result: Result) -> None:  # the handler has returned; the next job has not started
        extra = listing(tmp_dir) - baseline_tmp
        if extra:
            left_behind[result.job_id] = extra
        if watched:
            rss_after_job.append(watched[0].memory_info().rss)

    with FakeRunPod(on_result=after_job) as fake, WorkerProcess(fake, tiny_model_dir, workdir) as worker:
        fake.wait_take(process=worker, timeout=START_TIMEOUT)
        proc = psutil.Process(worker.pid)
        # What start-up wrote is not a job's leak (e.g. onnxruntime, imported by whisperx's VAD, writes `.ses`).
        baseline_tmp |= listing(tmp_dir)

        warm = [fake.submit(job_input(10_000 + i)) for i in range(WARMUP_JOBS)]
        assert all(r.ok for r in fake.wait_results(warm, timeout=120, process=worker).values())
        rss0, fds0 = idle_figures(proc)
        watched.append(proc)

        sampler = Sampler(proc)
        sampler.start()
        t0 = time.monotonic()
        inputs = [job_input(i) for i in range(JOBS)]
        ids = [fake.submit(job) for job in inputs]
        try:
            results = fake.wait_results(ids, timeout=JOBS * SECONDS_PER_JOB_LIMIT, process=worker)
        finally:
            sampler.stop()
        seconds = time.monotonic() - t0
        rss1, fds1 = idle_figures(proc)

    run = Soak(
        inputs=inputs,
        ids=ids,
        results=results,
        storage_dir=worker.storage_dir,
        seconds=seconds,
        rss=(rss0, rss1),
        fds=(fds0, fds1),
        fds_seen=sorted(sampler.fds),
        rss_after_job=rss_after_job,
        startup_tmp=sorted(baseline_tmp),
        left_behind=left_behind,
    )
    mb = 2**20
    trend = ", ".join(f"{n}: {rss_after_job[n - 1] / mb:.0f}" for n in range(25, len(rss_after_job) + 1, 25))
    print(
        f"\nsoak: {JOBS} jobs in {seconds:.1f} s ({seconds / JOBS:.3f} s/job); idle RSS after warm-up "
        f"{rss0 / mb:.1f} MB -> after the run {rss1 / mb:.1f} MB ({(rss1 - rss0) / mb:+.1f} MB); RSS MB after "
        f"job n: {trend}; FDs {fds0} -> {fds1} (during the run: {run.fds_seen}); temp files from start-up: "
        f"{run.startup_tmp}"
    )
    return run


def test_every_job_completes_and_its_output_is_intact(soak):
    failed = {i: soak.results[i].body for i in soak.ids if not soak.results[i].ok}
    assert not failed, list(failed.items())[:3]
    keys = set()
    for job_id, job in zip(soak.ids, soak.inputs, strict=True):
        out = soak.results[job_id].output
        assert out["job_id"] == job_id and out["seed"] == job["seed"] and out["format"] == job["output_format"]
        path = soak.storage_dir / out["audio"]["key"]
        assert path.stat().st_size == out["audio"]["size"]
        samples, rate = sf.read(path, dtype="float32")
        assert rate == out["sample_rate"] == 24_000
        if job["output_format"] == "mp3":  # MP3 frames pad the end: up to two frames more
            assert 0 <= len(samples) - out["samples"] <= 2 * 1152
        else:
            assert len(samples) == out["samples"]
        assert abs(out["duration"] - out["samples"] / rate) < 1e-3 and samples.any()
        keys.add(out["audio"]["key"])
    assert len(keys) == JOBS


def test_no_job_leaves_temp_files(soak):
    assert not soak.left_behind, list(soak.left_behind.items())[:5]


def test_open_descriptors_return_to_baseline(soak):
    assert soak.fds[1] == soak.fds[0], f"open descriptors {soak.fds[0]} -> {soak.fds[1]}"


def test_resident_memory_after_warm_up_grows_less_than_50_mb(soak):
    growth = soak.rss[1] - soak.rss[0]
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / 2**20:.1f} MB over {JOBS} jobs"
