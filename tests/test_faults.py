"""Faults around the worker as RunPod runs it (`python -m tts_worker` in the runpod SDK's production loop,
driven through `fake_runpod.FakeRunPod`): storage that stops mid-job, answers slowly or refuses the
credentials; a reference URL that hangs or sends endless bytes; a full disk.

Each fault must give the job a clear error string (code, subject, cause; no traceback, no secret, not in
the worker's log either), leave nothing the job wrote in storage, and the NEXT job on the same worker must
succeed. Two workers serve all cases in order:

- `s3`: a worker on a real SeaweedFS seen through `faultproxy.FaultProxy` (fault by fault: server killed
  mid-upload, slow answers, revoked credentials); plus one start with a wrong secret, which must exit.
- `local`: a worker on local storage whose TMPDIR and STORAGE_DIR are on a small tmpfs, fetching reference
  audio from a loopback server it is allowed to reach through `FETCH_ALLOW_NETWORKS` (hang, stall, endless
  body, slow drip; then the disk filled up). Without permission to mount, the disk is "full" through a
  file-size limit (RLIMIT_FSIZE) put on the worker process instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import soundfile as sf

from fake_runpod import FakeRunPod, Result, WorkerProcess
from faultproxy import FaultProxy
from s3server import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedS3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

START_TIMEOUT = 240.0  # import torch + whisperx, load models, warm up: 30-60 s on 2 busy cores
JOB_TIMEOUT = 120.0
SAMPLE_RATE = 24_000
JOB = {"text": "The next job on this worker works again.", "seed": 3, "nfe_steps": 2}
WRONG_SECRET = "wrong-secret-9f8e7d6c5b4a"


def run(fake: FakeRunPod, worker: WorkerProcess, job_input: dict[str, Any], timeout: float = JOB_TIMEOUT) -> Result:
    job_id = fake.submit(job_input)
    return fake.wait_results([job_id], timeout=timeout, process=worker)[job_id]


def assert_clean_failure(result: Result, worker: WorkerProcess, prefix: str) -> str:
    """A FAILED job whose error is one clear line: no traceback, no secret, no machine path, no restart."""
    assert set(result.body) == {"error"} and isinstance(result.error, str), result.body
    error = result.error
    assert error.startswith(prefix), (prefix, error)
    assert "\n" not in error and "Traceback" not in error and str(worker.workdir) not in error
    for secret in (SECRET_KEY, WRONG_SECRET, ACCESS_KEY, "Signature="):
        assert secret not in error
    log = worker.log_path.read_text(errors="replace")
    assert SECRET_KEY not in log and WRONG_SECRET not in log
    return error


def assert_audio(data: bytes) -> None:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SAMPLE_RATE and len(samples) / rate > 0


# -- S3 -------------------------------------------------------------------------------------------------


@dataclass
class S3Rig:
    server: SeaweedS3
    proxy: FaultProxy
    fake: FakeRunPod
    worker: WorkerProcess

    def keys(self) -> list[str]:
        return self.server.keys(BUCKET)

    def next_job_succeeds(self) -> str:
        result = run(self.fake, self.worker, JOB)
        assert result.ok, result.body
        key = result.output["audio"]["key"]
        assert_audio(self.server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
        return str(key)


def s3_env(endpoint: str, secret: str = SECRET_KEY) -> dict[str, str]:
    return {
        "S3_BUCKET": BUCKET,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1",
        "S3_ADDRESSING_STYLE": "path",
        "S3_MAX_ATTEMPTS": "2",
        "S3_CONNECT_TIMEOUT": "2",
        "S3_READ_TIMEOUT": "4",  # generous for 2 busy cores; the slow case holds answers 10 s
    }


@pytest.fixture(scope="module")
def s3(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Rig]:
    """Its own SeaweedFS (the tests kill it), the worker reaching it through the fault proxy."""
    server = SeaweedS3.launch(tmp_path_factory.mktemp("faults-seaweed"))
    try:
        server.create_bucket(BUCKET)
        with FaultProxy(server.s3, delay=10.0) as proxy, FakeRunPod() as fake:
            workdir = tmp_path_factory.mktemp("faults-s3")
            worker = WorkerProcess(fake, tiny_model_dir, workdir, extra_env=s3_env(proxy.endpoint))
            try:
                fake.wait_take(process=worker, timeout=START_TIMEOUT)
                yield S3Rig(server, proxy, fake, worker)
            finally:
                worker.stop()
    finally:
        server.stop()


def test_s3_killed_mid_job_fails_the_job_and_the_next_job_cleans_up(s3: S3Rig):
    """SeaweedFS dies after the job stored its audio, as the subtitles go up: the job fails with a storage
    error; the audio it had stored cannot be removed while the server is down, so the worker keeps its key
    and removes it before the next job, once storage is back."""
    before = s3.keys()

    def kill_at_subtitles(line: bytes) -> None:
        if line.startswith(b"PUT ") and f"/{BUCKET}/timings/".encode() in line:
            s3.proxy.on_request = None
            s3.server.kill()

    s3.proxy.on_request = kill_at_subtitles
    t0 = time.monotonic()
    try:
        result = run(s3.fake, s3.worker, {**JOB, "subtitles": {"formats": ["srt"]}})
    finally:
        s3.proxy.on_request = None
        if s3.server.proc is None or s3.server.proc.poll() is not None:
            s3.server.start()
    error = assert_clean_failure(result, s3.worker, "storage_error: could not upload timings/")
    assert error.endswith(".srt (could not connect to the storage endpoint)"), error
    assert time.monotonic() - t0 < 90
    assert "a failed job left 2 objects not yet removed" in s3.worker.log_path.read_text(errors="replace")
    left = sorted(set(s3.keys()) - set(before))
    assert len(left) <= 1 and all(k.startswith("output/") for k in left), left  # the audio, if it survived

    kept = s3.next_job_succeeds()
    assert s3.keys() == sorted([*before, kept])  # the failed job's audio is gone, the new one is there
    assert "removed 2 objects left by an earlier failed job" in s3.worker.log_path.read_text(errors="replace")


def test_s3_answering_too_slowly_fails_in_bounded_time(s3: S3Rig):
    """Answers held longer than S3_READ_TIMEOUT: every attempt times out. The uploads and the rollback's
    delete reach the server (only their answers are late), so whatever they did is cleaned up later."""
    before = s3.keys()
    s3.proxy.set("delay")
    t0 = time.monotonic()
    try:
        result = run(s3.fake, s3.worker, JOB)
    finally:
        s3.proxy.set("pass")
    took = time.monotonic() - t0
    error = assert_clean_failure(result, s3.worker, "storage_error: could not upload output/")
    assert error.endswith(".wav (timed out waiting for the storage endpoint)"), error
    # Two attempts of S3_READ_TIMEOUT=4 for the upload and for the rollback, plus backoff and synthesis.
    assert took < 60, took

    kept = s3.next_job_succeeds()
    assert s3.keys() == sorted([*before, kept])


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch"])
def test_s3_refusing_the_credentials_fails_the_job_naming_them(s3: S3Rig, code: str):
    """The key pair is revoked or rotated while the worker runs: every request is answered 403."""
    before = s3.keys()
    s3.proxy.deny_code = code
    s3.proxy.set("deny")
    try:
        result = run(s3.fake, s3.worker, JOB)
    finally:
        s3.proxy.set("pass")
    error = assert_clean_failure(result, s3.worker, "storage_error: could not upload output/")
    assert error.endswith(f".wav (S3 answered {code}, HTTP 403; check the storage credentials)"), error
    assert s3.keys() == before

    kept = s3.next_job_succeeds()
    assert s3.keys() == sorted([*before, kept])


def test_a_wrong_secret_stops_the_worker_at_start(s3: S3Rig, tiny_model_dir: Path, tmp_path: Path):
    """Straight to SeaweedFS, which checks signatures: the start-up check of the bucket is refused, and the
    worker exits before loading models, naming storage and the credentials, without the secret."""
    with FakeRunPod() as fake:
        worker = WorkerProcess(fake, tiny_model_dir, tmp_path, extra_env=s3_env(s3.server.endpoint, WRONG_SECRET))
        try:
            code = worker.wait(timeout=START_TIMEOUT)
        finally:
            worker.stop()
        assert fake.takes == []
    log = worker.log_path.read_text(errors="replace")
    assert code != 0, log
    expected = f"cannot start: could not open bucket {BUCKET} (S3 answered HTTP 403; check the storage credentials)"
    assert expected in log, log
    assert "Traceback" not in log and WRONG_SECRET not in log and SECRET_KEY not in log


# -- reference URLs and the disk ------------------------------------------------------------------------


class FaultSite(ThreadingHTTPServer):
    """A loopback web server whose answers go wrong in the ways the internet's do. `release` ends every
    answer still held (at the end of the module, or after at most a minute)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FaultHandler)
        self.release = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FaultHandler(BaseHTTPRequestHandler):
    server: FaultSite
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send_head(self, length: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        if length is None:
            self.send_header("Connection", "close")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()

    def do_GET(self) -> None:
        release, deadline = self.server.release, time.monotonic() + 60
        with contextlib.suppress(OSError):
            if self.path == "/hang":  # accepts, reads the request, never answers
                release.wait(60)
            elif self.path == "/stall":  # answers, sends part of the body, then nothing
                self._send_head(200_000)
                self.wfile.write(b"RIFF" + b"\0" * 4096)
                self.wfile.flush()
                release.wait(60)
            elif self.path == "/endless":  # a body that never ends, as fast as it can be taken
                self._send_head(None)
                while not release.is_set() and time.monotonic() < deadline:
                    self.wfile.write(b"\0" * 65536)
            elif self.path == "/drip":  # a few bytes at a time, each in time, never done
                self._send_head(200_000)
                while not release.wait(0.5) and time.monotonic() < deadline:
                    self.wfile.write(b"\0" * 64)
                    self.wfile.flush()
            else:
                self.send_error(404)
        self.close_connection = True


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[bool]:
    """A tmpfs of `size` at `path`: True when mounted (always unmounted afterwards), False when this machine
    does not allow mounting (then the caller simulates a full disk another way)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    mounted = False
    if not mount or os.geteuid() != 0:
        why = "not root" if mount else "no mount command"
    else:
        done = subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            timeout=30,
        )
        mounted = done.returncode == 0
        why = done.stderr.decode(errors="replace").strip()
    if not mounted:
        print(f"no tmpfs ({why}): the full disk is simulated with RLIMIT_FSIZE on the worker")
    try:
        yield mounted
    finally:
        if mounted:
            for attempt in range(10):
                done = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
                if done.returncode == 0:
                    break
                time.sleep(0.5 * (attempt + 1))
            else:
                subprocess.run(["umount", "-l", str(path)], timeout=30)


@dataclass
class LocalRig:
    site: FaultSite
    fake: FakeRunPod
    worker: WorkerProcess
    disk: Path
    mounted: bool

    def next_job_succeeds(self) -> str:
        result = run(self.fake, self.worker, JOB)
        assert result.ok, result.body
        key = result.output["audio"]["key"]
        assert_audio((self.worker.storage_dir / key).read_bytes())
        return str(key)

    def files(self) -> set[str]:
        """Everything in storage and TMPDIR, hidden partial files included."""
        return {str(p.relative_to(self.disk)) for p in self.disk.rglob("*") if p.name != "filler"}


FETCH_LIMIT_KIB = 1024


@pytest.fixture(scope="module")
def local(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRig]:
    workdir = tmp_path_factory.mktemp("faults-local")
    disk = workdir / "disk"
    env = {
        "FETCH_ALLOW_NETWORKS": "127.0.0.1/32",  # the fault site stands in for an internal asset server
        "FETCH_ALLOW_HTTP": "true",
        "FETCH_CONNECT_TIMEOUT": "2",
        "FETCH_READ_TIMEOUT": "2",
        "FETCH_DEADLINE_SECONDS": "5",
        "FETCH_MAX_BYTES": str(FETCH_LIMIT_KIB * 1024),
    }
    with small_disk(disk, "64m") as mounted, FakeRunPod() as fake:
        site = FaultSite()
        serving = threading.Thread(target=site.serve_forever, daemon=True)
        serving.start()
        worker = WorkerProcess(
            fake,
            tiny_model_dir,
            workdir,
            extra_env=env,
            storage_dir=disk / "storage",
            tmp_dir=disk / "tmp",
            relay_log=not mounted,
        )
        try:
            fake.wait_take(process=worker, timeout=START_TIMEOUT)
            yield LocalRig(site, fake, worker, disk, mounted)
        finally:
            site.release.set()
            worker.stop()
            site.shutdown()
            site.server_close()


URL_FAULTS = [
    ("/hang", "invalid_input: voice_url: 127.0.0.1 did not answer in time"),
    ("/stall", "invalid_input: voice_url: 127.0.0.1 stopped sending the file (nothing for 2 s)"),
    ("/endless", f"invalid_input: voice_url: the file at 127.0.0.1 is larger than the {FETCH_LIMIT_KIB} KiB limit"),
    ("/drip", "invalid_input: voice_url: the download took longer than 5 s"),
]


@pytest.mark.parametrize(("path", "message"), URL_FAULTS, ids=[p.strip("/") for p, _ in URL_FAULTS])
def test_a_reference_url_that_hangs_or_never_ends_fails_the_job(local: LocalRig, path: str, message: str):
    before = local.files()
    t0 = time.monotonic()
    job = {**JOB, "voice_url": f"{local.site.base}{path}", "ref_text": "Some words of the reference."}
    result = run(local.fake, local.worker, job)
    took = time.monotonic() - t0
    assert assert_clean_failure(result, local.worker, message) == message
    assert took < 30, took  # FETCH_READ_TIMEOUT=2, FETCH_DEADLINE_SECONDS=5: bounded, never the server's minute
    assert local.files() == before

    kept = local.next_job_succeeds()
    assert local.files() == before | {f"storage/{kept}", "storage/output"}


@contextlib.contextmanager
def full_disk(rig: LocalRig, leave: int = 16 * 1024) -> Iterator[None]:
    """The tmpfs filled up to `leave` bytes; without one, the worker may write no file beyond `leave` bytes."""
    if rig.mounted:
        filler = rig.disk / "filler"
        stat = os.statvfs(rig.disk)
        with filler.open("wb") as f:
            block = b"\xff" * 2**20
            left = stat.f_bavail * stat.f_frsize - leave
            while left > 0:
                left -= f.write(block[: min(left, len(block))])
        try:
            yield
        finally:
            filler.unlink()
        return
    proc = psutil.Process(rig.worker.pid)
    proc.rlimit(psutil.RLIMIT_FSIZE, (leave, psutil.RLIM_INFINITY))
    try:
        yield
    finally:
        proc.rlimit(psutil.RLIMIT_FSIZE, (psutil.RLIM_INFINITY, psutil.RLIM_INFINITY))


@pytest.mark.skipif(sys.platform != "linux", reason="tmpfs or RLIMIT_FSIZE on a running process")
def test_a_full_disk_fails_the_job_and_leaves_no_partial_file(local: LocalRig):
    """Storage and TMPDIR full after the worker started: the output cannot be written; its temp file is
    removed, nothing half-written is published, and once space is free the next job works."""
    local.next_job_succeeds()  # the output directory exists, so the failure is the file itself
    before = local.files()
    with full_disk(local):
        result = run(local.fake, local.worker, {**JOB, "text": "This one does not fit on the disk any more."})
    cause = "No space left on device" if local.mounted else "File too large"
    error = assert_clean_failure(result, local.worker, "storage_error: could not write output/")
    assert error.endswith(f".wav to local storage ({cause})"), error
    assert local.files() == before, local.files() ^ before  # no .partial-* file, no output
    assert not list(local.disk.rglob(".partial-*"))

    kept = local.next_job_succeeds()
    assert local.files() == before | {f"storage/{kept}"}
