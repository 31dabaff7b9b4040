"""A loopback fake of RunPod's job API, and the worker started against it as RunPod starts it.

The runpod SDK's production loop (`runpod.serverless.start` without `--test_input`, runpod 1.12) talks to:

    GET  RUNPOD_WEBHOOK_GET_JOB (+ "&job_in_progress=0|1")  job-take: 204 = no job, 200 = {"id", "input"}
         .../job-take-batch/...&batch_size=N                 the same when concurrency > 1: 200 = a list of jobs
    GET  .../job-stop/...   (the job-take URL, renamed)      long-poll for jobs to cancel: 204 or {"jobsToStop": [...]}
    POST RUNPOD_WEBHOOK_POST_OUTPUT ($ID = job id, + "&isStream=false")  job-done: JSON body
         {"output": ...} | {"error": "..."}, "stopPod": true when the handler asked for `refresh_worker`;
         also {"status": "IN_PROGRESS", "output": ...} from `runpod.serverless.progress_update`
    POST RUNPOD_WEBHOOK_POST_STREAM (+ "&isStream=true")     one partial result of a generator handler
    GET  RUNPOD_WEBHOOK_PING ("job_id", "runpod_version")    heartbeat, from a forked child process

`FakeRunPod` serves all of these on 127.0.0.1 (a free port), hands out the jobs a test queues and records
everything the worker sends back with a timestamp. Bodies are JSON even though the SDK labels them
form-encoded. `WorkerProcess` starts `python -m tts_worker` in its own session (the heartbeat child is in it
too, so stopping the group leaves nothing behind) with the SDK's fitness checks skipped: without
`RUNPOD_SKIP_AUTO_SYSTEM_CHECKS` a check connects to a public DNS server and exits the process.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

POD_ID = "fake-pod"
# How long an empty job-take is held open before 204 (RunPod long-polls). The SDK asks again at once after
# a 204, so answering at once would make it spin; holding it too long delays a SIGTERM'd worker's exit.
TAKE_HOLD_SECONDS = 0.5


@dataclass
class Result:
    """One job-done or job-stream POST."""

    job_id: str
    body: dict[str, Any]
    stream: bool
    at: float  # time.monotonic() when it arrived

    @property
    def ok(self) -> bool:
        return "error" not in self.body

    @property
    def output(self) -> Any:
        return self.body.get("output")

    @property
    def error(self) -> str | None:
        return self.body.get("error")


@dataclass
class Take:
    """One job-take request: its query (job_in_progress, batch_size) and the job ids it handed out."""

    at: float
    path: str
    query: dict[str, str]
    job_ids: list[str] = field(default_factory=list)


class FakeRunPod:
    """RunPod's job API on 127.0.0.1. Use as a context manager; queue jobs with `submit`, read `results`."""

    def __init__(self, on_result: Callable[[Result], None] | None = None) -> None:
        """`on_result` runs in the server thread as each job-done post arrives, before the worker gets its
        reply: the moment the handler has returned, e.g. to look for files the job left behind."""
        self._on_result = on_result
        self._lock = threading.Condition()
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._stop: list[str] = []
        self.results: list[Result] = []  # job-done posts, in arrival order
        self.streams: list[Result] = []  # job-stream posts
        self.progress: list[Result] = []  # job-done posts with status IN_PROGRESS (runpod's progress_update)
        self.takes: list[Take] = []
        self.pings: list[float] = []
        self.submitted: dict[str, float] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-runpod", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FakeRunPod:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """The RUNPOD_* variables a worker pod gets, pointing at this fake."""
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{self.base}/v2/fake/job-take/$ID?gpu=cpu",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{self.base}/v2/fake/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{self.base}/v2/fake/job-stream/$RUNPOD_POD_ID/$ID?gpu=cpu",
            "RUNPOD_WEBHOOK_PING": f"{self.base}/v2/fake/ping/$RUNPOD_POD_ID?gpu=cpu",
            "RUNPOD_PING_INTERVAL": "1000",
            "RUNPOD_POD_ID": POD_ID,
            "RUNPOD_AI_API_KEY": "fake-key-not-a-secret",
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }

    # --- the test's side ---------------------------------------------------------------------
    def submit(self, job_input: Any, job_id: str | None = None) -> str:
        job_id = job_id or f"job-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._queue.append({"id": job_id, "input": job_input})
            self.submitted[job_id] = time.monotonic()
            self._lock.notify_all()
        return job_id

    def stop_job(self, job_id: str) -> None:
        """Ask the worker to cancel a job (RunPod's job-stop channel)."""
        with self._lock:
            self._stop.append(job_id)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def result(self, job_id: str) -> Result | None:
        with self._lock:
            return next((r for r in self.results if r.job_id == job_id), None)

    def wait_results(
        self, job_ids: list[str], timeout: float, process: WorkerProcess | None = None
    ) -> dict[str, Result]:
        """Every job's job-done post, or AssertionError naming what is missing (or the worker's death)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                done = {r.job_id: r for r in self.results if r.job_id in job_ids}
                if len(done) == len(set(job_ids)):
                    return done
                if process is not None and process.poll() is not None:
                    raise AssertionError(
                        f"worker exited with {process.poll()} before {len(job_ids) - len(done)} results; "
                        f"log tail:\n{process.log_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [j for j in job_ids if j not in done]
                    tail = process.log_tail() if process is not None else ""
                    raise AssertionError(f"no result within {timeout:.0f} s for {missing[:5]}...\n{tail}")
                self._lock.wait(min(left, 0.5))

    def wait_take(self, after: int = 0, timeout: float = 120.0, process: WorkerProcess | None = None) -> Take:
        """The first job-take request numbered `after` or later: the worker is ready for jobs."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.takes) <= after:
                if process is not None and process.poll() is not None:
                    raise AssertionError(f"worker exited with {process.poll()}:\n{process.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = process.log_tail() if process is not None else ""
                    raise AssertionError(f"worker asked for no job within {timeout:.0f} s\n{tail}")
                self._lock.wait(min(left, 0.2))
            return self.takes[after]

    # --- the worker's side -------------------------------------------------------------------
    def _take(self, path: str, query: dict[str, str]) -> Any:
        batch = "/job-take-batch/" in path
        want = int(query.get("batch_size", "1")) if batch else 1
        take = Take(at=time.monotonic(), path=path, query=query)
        with self._lock:
            self.takes.append(take)
            self._lock.notify_all()
            self._lock.wait_for(lambda: bool(self._queue), timeout=TAKE_HOLD_SECONDS)
            jobs = [self._queue.popleft() for _ in range(min(want, len(self._queue)))]
            take.job_ids = [j["id"] for j in jobs]
        if not jobs:
            return None
        return jobs if batch else jobs[0]

    def _post(self, path: str, query: dict[str, str], body: bytes) -> None:
        job_id = path.rstrip("/").rsplit("/", 1)[-1]
        stream = query.get("isStream") == "true" or "/job-stream/" in path
        record = Result(job_id=job_id, body=json.loads(body), stream=stream, at=time.monotonic())
        if "/job-stream/" in path:
            target = self.streams
        elif record.body.get("status") == "IN_PROGRESS":
            target = self.progress
        else:
            target = self.results
            if self._on_result is not None:
                self._on_result(record)
        with self._lock:
            target.append(record)
            self._lock.notify_all()

    def _stop_signals(self) -> list[str]:
        with self._lock:
            ids, self._stop = self._stop, []
        return ids

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _reply(self, status: int, payload: Any = None) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if "/job-take" in url.path:
                    job = fake._take(url.path, query)
                    self._reply(204) if job is None else self._reply(200, job)
                elif "/job-stop/" in url.path:
                    ids = fake._stop_signals()
                    self._reply(200, {"jobsToStop": ids}) if ids else self._reply(204)
                elif "/ping/" in url.path:
                    with fake._lock:
                        fake.pings.append(time.monotonic())
                    self._reply(200, {})
                else:
                    self._reply(404, {"error": f"no such path {url.path}"})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if "/job-done/" in url.path or "/job-stream/" in url.path:
                    fake._post(url.path, query, body)
                    self._reply(200, {})
                else:
                    self._reply(404, {"error": f"no such path {url.path}"})

        return Handler


class WorkerProcess:
    """`python -m tts_worker` in the production loop against a FakeRunPod; its output goes to `log_path`."""

    def __init__(
        self,
        fake: FakeRunPod,
        model_dir: Path,
        workdir: Path,
        *,
        extra_env: dict[str, str] | None = None,
        storage_dir: Path | None = None,
        tmp_dir: Path | None = None,
        relay_log: bool = False,
    ) -> None:
        """`storage_dir` / `tmp_dir` default to `workdir/storage` and `workdir/tmp`. With `relay_log` the worker
        writes its output to a pipe that a thread copies to `log_path`, so a file-size limit put on the worker
        (RLIMIT_FSIZE) does not stop its logging."""
        self.workdir = workdir
        self.storage_dir = storage_dir or workdir / "storage"
        self.tmp_dir = tmp_dir or workdir / "tmp"
        self.log_path = workdir / "worker.log"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
        env.update(fake.env())
        env.update(
            MODEL_DIR=str(model_dir),
            STORAGE_DIR=str(self.storage_dir),
            DEVICE="cpu",
            TMPDIR=str(self.tmp_dir),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env or {})
        self.env = env
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tts_worker"],
            env=env,
            cwd=workdir,
            stdout=subprocess.PIPE if relay_log else self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._relay: threading.Thread | None = None
        if relay_log:
            self._relay = threading.Thread(target=self._copy_log, name="worker-log", daemon=True)
            self._relay.start()

    def _copy_log(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, chars: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def terminate(self) -> None:
        """SIGTERM to the worker alone, as the container runtime sends it to PID 1."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole session after `grace` seconds (the heartbeat child included)."""
        if self.proc.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session we created: only our worker and its children
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self._relay is not None:
            self._relay.join(timeout=10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
