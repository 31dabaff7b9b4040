"""`python -m tts_worker check-storage` run as a user runs it (a subprocess), against a real SeaweedFS.

Good settings pass every step; a wrong secret, a missing bucket, an unreachable endpoint, the wrong
addressing style and a public base URL that isn't public each fail at the step that finds it, saying
what to change, with exit status 1. The secret key never appears in the output, also on failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from s3server import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedS3, s3_server

__all__ = ["s3_server"]

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def check_storage(tmp_path: Path, secret: str = SECRET_KEY, **env: str) -> tuple[int, list[str], str]:
    """Exit status, the step lines, and all the output (stdout + stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BUCKET_", "S3_"))}
    base.update(PYTHONPATH=str(SRC), STORAGE_DIR=str(tmp_path / "store"), S3_CONNECT_TIMEOUT="1", S3_READ_TIMEOUT="5")
    if secret:
        base["BUCKET_SECRET_ACCESS_KEY"] = secret
    base.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "tts_worker", "check-storage"],
        env=base, cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\d/8\]", line)]
    assert len(lines) == 8, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, lines, proc.stdout + proc.stderr


def status(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines]


def assert_no_secret(output: str, *secrets: str) -> None:
    for secret in (SECRET_KEY, ACCESS_KEY, "X-Amz-Signature", "X-Amz-Credential", *secrets):
        assert secret not in output


def runpod_env(server: SeaweedS3, bucket: str = BUCKET) -> dict[str, str]:
    return {"BUCKET_ENDPOINT_URL": f"{server.endpoint}/{bucket}", "BUCKET_ACCESS_KEY_ID": ACCESS_KEY}


def test_good_runpod_settings_pass_every_step_and_leave_nothing(s3_server: SeaweedS3, tmp_path: Path):
    before = s3_server.keys(BUCKET)
    code, lines, output = check_storage(tmp_path, **runpod_env(s3_server))
    assert code == 0, output
    assert status(lines) == ["ok", "ok", "ok", "ok", "ok", "-", "ok", "ok"], output
    assert f"bucket {BUCKET} (from the path of BUCKET_ENDPOINT_URL)" in lines[0]
    assert "HTTP 200 from 127.0.0.1:" in lines[4]
    assert re.search(r"6 MiB in [2-9] parts", lines[6])
    assert f"path: http://127.0.0.1:{s3_server.s3}/{BUCKET}/<key>" in lines[7]
    assert output.rstrip().endswith("storage check passed")
    assert s3_server.keys(BUCKET) == before  # every probe object deleted
    assert_no_secret(output)


def test_wrong_secret_fails_at_credentials_naming_the_variable(s3_server: SeaweedS3, tmp_path: Path):
    code, lines, output = check_storage(tmp_path, secret="wrong-secret-0123456789", **runpod_env(s3_server))
    assert code == 1
    assert status(lines) == ["ok", "FAIL"] + ["skip"] * 6
    assert "SignatureDoesNotMatch" in lines[1] and "check BUCKET_SECRET_ACCESS_KEY" in lines[1]
    assert_no_secret(output, "wrong-secret-0123456789")


def test_unknown_key_id_fails_at_credentials(s3_server: SeaweedS3, tmp_path: Path):
    code, lines, output = check_storage(
        tmp_path, BUCKET_ENDPOINT_URL=f"{s3_server.endpoint}/{BUCKET}", BUCKET_ACCESS_KEY_ID="nobody-key"
    )
    assert code == 1 and "InvalidAccessKeyId" in lines[1] and "check BUCKET_ACCESS_KEY_ID" in lines[1]
    assert_no_secret(output)


def test_missing_bucket_fails_at_bucket_naming_where_it_came_from(s3_server: SeaweedS3, tmp_path: Path):
    code, lines, _ = check_storage(tmp_path, **runpod_env(s3_server, "no-such-bucket"))
    assert code == 1
    assert status(lines) == ["ok", "ok", "FAIL"] + ["skip"] * 5
    assert "bucket no-such-bucket does not exist" in lines[2] and "the bucket in BUCKET_ENDPOINT_URL" in lines[2]

    code, lines, _ = check_storage(
        tmp_path, S3_BUCKET="no-such-bucket", AWS_ENDPOINT_URL=s3_server.endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY
    )
    assert code == 1 and lines[2].endswith("check S3_BUCKET")


def test_unreachable_endpoint_fails_fast_naming_the_endpoint(tmp_path: Path):
    code, lines, output = check_storage(
        tmp_path, BUCKET_ENDPOINT_URL=f"http://127.0.0.1:9/{BUCKET}", BUCKET_ACCESS_KEY_ID=ACCESS_KEY
    )
    assert code == 1
    assert status(lines)[:3] == ["ok", "FAIL", "skip"]
    assert "could not reach 127.0.0.1:9: check BUCKET_ENDPOINT_URL" in lines[1]
    assert "the other style is not possible for this endpoint" in lines[7]  # no bucket-in-host for an IP
    assert_no_secret(output)


def test_virtual_hosted_style_on_a_server_without_bucket_dns_recommends_path(s3_server: SeaweedS3, tmp_path: Path):
    endpoint = s3_server.endpoint.replace("127.0.0.1", "localhost")
    code, lines, output = check_storage(
        tmp_path, S3_BUCKET=BUCKET, BUCKET_ENDPOINT_URL=endpoint, BUCKET_ACCESS_KEY_ID=ACCESS_KEY,
        S3_ADDRESSING_STYLE="virtual",
    )  # fmt: skip
    if status(lines)[1] == "ok":
        pytest.skip(f"{BUCKET}.localhost resolves on this machine")
    assert code == 1 and lines[1].startswith("[2/8] FAIL") and "could not reach localhost:" in lines[1]
    assert lines[7].startswith("[8/8] FAIL") and lines[7].endswith("set S3_ADDRESSING_STYLE=path")
    assert_no_secret(output)


def test_a_public_base_url_that_is_not_public_fails_at_its_step(s3_server: SeaweedS3, tmp_path: Path):
    code, lines, output = check_storage(
        tmp_path, S3_PUBLIC_BASE_URL=f"{s3_server.endpoint}/{BUCKET}", **runpod_env(s3_server)
    )
    assert code == 1
    assert status(lines) == ["ok", "ok", "ok", "ok", "skip", "FAIL", "ok", "ok"], output
    assert "answered HTTP 403" in lines[5] and "publicly readable" in lines[5]
    assert_no_secret(output)


def test_bad_settings_fail_at_step_one_without_echoing_values(tmp_path: Path):
    code, lines, output = check_storage(
        tmp_path, BUCKET_ENDPOINT_URL="https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
    )
    assert code == 1 and status(lines) == ["FAIL"] + ["skip"] * 7
    assert "BUCKET_ENDPOINT_URL: names no bucket (an R2 account endpoint never does); set S3_BUCKET" in lines[0]
    assert_no_secret(output)


def test_local_storage_checks_the_directory_and_says_results_are_local_paths(tmp_path: Path):
    code, lines, output = check_storage(tmp_path, secret="")
    assert code == 0, output
    assert status(lines) == ["ok", "skip", "ok", "ok", "skip", "skip", "skip", "skip"]
    assert "paths on this machine" in lines[4]
    assert not list((tmp_path / "store" / "output").iterdir())  # the probe was deleted

    (tmp_path / "readonly").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        code, lines, _ = check_storage(tmp_path, secret="", STORAGE_DIR=str(tmp_path / "readonly"))
        assert code == 1 and "set STORAGE_DIR to a writable directory" in lines[2]

    code, lines, _ = check_storage(tmp_path, AWS_ACCESS_KEY_ID="AKIDEXAMPLE")
    assert code == 1 and "credentials are set but no bucket: set S3_BUCKET" in lines[0]
