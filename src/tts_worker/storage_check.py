"""`python -m tts_worker check-storage`: the worker's storage settings tried step by step, before deploying.

Reads the same settings as the worker (the environment, through `Settings`) and prints one line per
step on stdout, each failure with what to change:

    [1/8] ok   settings parsed: bucket tts-out (from the host of BUCKET_ENDPOINT_URL) on Backblaze B2 ...
    [2/8] FAIL credentials accepted: S3 answered SignatureDoesNotMatch: ... check BUCKET_SECRET_ACCESS_KEY ...
    [3/8] skip bucket reachable: not tried (step 2 failed)

Steps: 1 settings parsed; 2 credentials accepted; 3 bucket reachable; 4 write, read and delete of a
probe object; 5 a presigned GET fetched over HTTP; 6 the public base URL fetched (when
S3_PUBLIC_BASE_URL is set); 7 a multipart upload; 8 the addressing style in use (when requests could
not reach the endpoint, the other style is tried and recommended if it works). Exit status 0 when no
step failed, 1 otherwise.

Never prints a secret: not the keys, not a presigned URL (its query carries the key id and the
signature); only bucket names, hosts and S3 error codes. Probe objects are
`output/check-storage-<uuid>.*`, each deleted after its step. Each request is tried at most twice
(fewer if S3_MAX_ATTEMPTS says so), so an unreachable endpoint fails in seconds.

With no bucket configured it checks that STORAGE_DIR can be written and says results would be paths
on this machine.

It drives `S3Storage` and its boto3 client (s3.py), and reads failures as `s3.classify` gives them
(it imports no botocore): their codes are what tell a wrong secret from a missing bucket.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from tts_worker import log
from tts_worker.bucket_endpoint import BucketTarget
from tts_worker.errors import StorageError
from tts_worker.s3 import S3Failure, S3Storage, classify
from tts_worker.settings import Settings, describe_errors
from tts_worker.storage import LocalStorage

out = logging.getLogger(__name__)

STEPS = (
    "settings parsed",
    "credentials accepted",
    "bucket reachable",
    "write, read and delete a probe object",
    "presigned GET over HTTP",
    "public base URL",
    "multipart upload",
    "addressing style",
)
KEY_VARS = "BUCKET_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID)"
SECRET_VARS = "BUCKET_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY)"  # noqa: S105 (variable names, not a secret)
_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"})
_REGION_CODES = frozenset({"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"})
_NO_ANSWER = ("unreachable", "timeout")  # the request never got an answer from the endpoint
MULTIPART_PROBE_BYTES = 6 * 1024 * 1024  # two parts at the smallest part size S3 allows (5 MiB)


class Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, step: int, status: str, detail: str) -> None:
        self.failed = self.failed or status == "FAIL"
        out.info("[%d/%d] %-4s %s: %s", step, len(STEPS), status, STEPS[step - 1], detail)

    def skip_rest(self, first: int, why: str, last: int = len(STEPS)) -> None:
        for step in range(first, last + 1):
            self.line(step, "skip", why)


def _list(storage: S3Storage) -> S3Failure | None:
    """None when the bucket answers a listing, else how the request failed."""
    try:
        storage.client.list_objects_v2(Bucket=storage.bucket, MaxKeys=1)
    except Exception as exc:
        return classify(exc)
    return None


class _Check:
    """The S3 steps, on one bucket. Holds no secret beyond the S3Storage it builds."""

    def __init__(self, settings: Settings, target: BucketTarget, report: Report) -> None:
        self.settings = settings.model_copy(update={"s3_max_attempts": min(settings.s3_max_attempts, 2)})
        self.target, self.report = target, report
        self.storage = S3Storage.from_settings(self.settings)
        self.host = urlsplit(target.endpoint_url).netloc if target.endpoint_url else f"AWS S3 ({target.region})"
        self.endpoint_var = (
            "BUCKET_ENDPOINT_URL"
            if settings.bucket_endpoint_url
            else "AWS_ENDPOINT_URL"
            if settings.aws_endpoint_url
            else "AWS_REGION"
        )
        self.bucket_var = "S3_BUCKET" if target.bucket_from == "S3_BUCKET" else f"the bucket in {self.endpoint_var}"
        self.unreachable = False  # some request could not reach the endpoint: step 8 tries the other style

    def run(self) -> None:
        if not self.credentials_and_bucket():
            return
        self.probe_object()
        self.urls()
        self.multipart()
        self.addressing_style()

    def credentials_and_bucket(self) -> bool:
        failure = _list(self.storage)
        step2 = self._credentials_problem(failure)
        if step2:
            self.report.line(2, "FAIL", step2)
            if failure is not None and failure.kind in _NO_ANSWER:
                self.report.skip_rest(3, "not tried (step 2 failed)", last=7)
                self.addressing_style()
            else:
                self.report.skip_rest(3, "not tried (step 2 failed)")
            return False
        self.report.line(2, "ok", "the endpoint verified the key and the signature")
        bucket = self.target.bucket
        if failure is None:
            self.report.line(3, "ok", f"{bucket} at {self.host} answers a listing")
            return True
        if failure.code == "NoSuchBucket":
            detail = f"bucket {bucket} does not exist at {self.host}; check {self.bucket_var}"
        elif failure.code in ("AccessDenied", "403"):
            detail = (
                f"S3 answered {failure.code}: the key may not list {bucket}; it needs s3:ListBucket (the voice "
                "library lists voices/), s3:GetObject, s3:PutObject and s3:DeleteObject, or the bucket belongs "
                "to another account"
            )
        else:
            detail = f"listing {bucket} failed: S3 answered {failure.code or failure.kind}"
        self.report.line(3, "FAIL", detail)
        self.report.skip_rest(4, "not tried (step 3 failed)")
        return False

    def _credentials_problem(self, failure: S3Failure | None) -> str | None:
        if failure is None:
            return None
        if failure.kind in _NO_ANSWER:
            self.unreachable = True
            return (
                f"could not reach {self.host}: check {self.endpoint_var}, and that this machine can reach it "
                "(step 8 tries the other addressing style)"
            )
        if failure.kind == "nocreds":
            return f"no credentials are set: set {KEY_VARS} and {SECRET_VARS}"
        if failure.kind != "answer":
            return f"the endpoint did not answer like an S3 API ({failure.name}); check {self.endpoint_var}"
        if failure.code in _REGION_CODES or (failure.region and failure.region != self.target.region):
            where = f"set AWS_REGION={failure.region}" if failure.region else "check AWS_REGION"
            return f"S3 answered {failure.code}: the bucket is in another region than {self.target.region}; {where}"
        if failure.code == "InvalidAccessKeyId":
            return (
                f"S3 answered InvalidAccessKeyId: the endpoint does not know this key id; check {KEY_VARS}, and "
                f"that {self.endpoint_var} is the provider that issued it"
            )
        if failure.code == "SignatureDoesNotMatch":
            return f"S3 answered SignatureDoesNotMatch: the secret does not match the key id; check {SECRET_VARS}"
        if failure.code in _CREDENTIAL_CODES:
            return f"S3 answered {failure.code}; check {KEY_VARS} and {SECRET_VARS}"
        return None

    def probe_object(self) -> None:
        key = f"output/check-storage-{uuid.uuid4().hex}.txt"
        data = f"tts-worker check-storage probe {key}\n".encode()
        try:
            self.storage.put(key, data, "text/plain")
            got = self.storage.get(key)
            if got != data:
                raise StorageError(f"read back {len(got or b'')} bytes, not the {len(data)} written")
            self.storage.delete(key)
            if self.storage.exists(key):
                raise StorageError("the probe object is still there after its delete")
        except StorageError as exc:
            hint = ""
            if "AccessDenied" in exc.message or "HTTP 403" in exc.message:
                hint = "; the key needs s3:PutObject, s3:GetObject and s3:DeleteObject on output/, timings/, voices/"
            self.report.line(4, "FAIL", exc.message + hint)
            self._delete(key)
            return
        self.report.line(4, "ok", f"{len(data)} bytes written to {key}, read back and deleted")

    def urls(self) -> None:
        base = self.settings.s3_public_base_url
        key = f"output/check-storage-{uuid.uuid4().hex}.txt"
        data = f"tts-worker check-storage URL probe {key}\n".encode()
        try:
            self.storage.put(key, data, "text/plain")
        except StorageError as exc:
            self.report.line(5, "FAIL", exc.message)
            self.report.line(6, "skip", "not tried (no probe object)")
            return
        try:
            if base:
                self.report.line(5, "skip", "S3_PUBLIC_BASE_URL is set: results carry public URLs, not presigned")
            else:
                self._presigned(key, data)
            if base:
                self._public(base.rstrip("/"), key, data)
            else:
                self.report.line(6, "-", "S3_PUBLIC_BASE_URL not set: results carry presigned URLs")
        finally:
            self._delete(key)

    def _fetch(self, url: str) -> Any:
        import httpx

        timeout = httpx.Timeout(self.settings.s3_read_timeout, connect=self.settings.s3_connect_timeout)
        return httpx.get(url, timeout=timeout)

    def _presigned(self, key: str, data: bytes) -> None:
        import httpx

        url = self.storage.url(key)
        netloc = urlsplit(url).netloc
        try:
            response = self._fetch(url)
        except httpx.HTTPError as exc:
            self.unreachable = True
            self.report.line(5, "FAIL", f"could not fetch it from {netloc} ({exc.__class__.__name__}); see step 8")
            return
        if response.status_code == 200 and response.content == data:
            expiry = self.settings.s3_presign_expiry_seconds
            self.report.line(5, "ok", f"HTTP 200 from {netloc}; results' URLs stay valid for {expiry} s")
            return
        code = _xml_code(response.text)
        hint = {
            "SignatureDoesNotMatch": "a proxy or CDN in front of the endpoint changes the request, or AWS_REGION "
            "is wrong",
            "AccessDenied": "the key needs s3:GetObject",
        }.get(code, "clients would not get the files either")
        self.report.line(5, "FAIL", f"HTTP {response.status_code}{', ' + code if code else ''} from {netloc}; {hint}")

    def _public(self, base: str, key: str, data: bytes) -> None:
        import httpx

        netloc = urlsplit(base).netloc
        try:
            response = self._fetch(f"{base}/{key}")
        except httpx.HTTPError as exc:
            self.report.line(6, "FAIL", f"could not fetch S3_PUBLIC_BASE_URL/<key> ({exc.__class__.__name__})")
            return
        if response.status_code == 200 and response.content == data:
            self.report.line(6, "ok", f"{netloc} serves the probe object")
        elif response.status_code == 200:
            self.report.line(
                6,
                "FAIL",
                f"{netloc} answered 200 but not with the object: point S3_PUBLIC_BASE_URL at the bucket's root",
            )
        else:
            self.report.line(
                6,
                "FAIL",
                f"{netloc} answered HTTP {response.status_code} for the probe object: make the bucket (or the CDN in "
                "front of it) publicly readable with S3_PUBLIC_BASE_URL at its root, or unset S3_PUBLIC_BASE_URL "
                "for presigned URLs",
            )

    def multipart(self) -> None:
        threshold = self.settings.s3_multipart_threshold_mb
        storage = S3Storage.from_settings(self.settings.model_copy(update={"s3_multipart_threshold_mb": 5}))
        parts: list[int] = []
        storage.client.meta.events.register("before-send.s3.UploadPart", lambda **_: parts.append(1))
        key = f"output/check-storage-{uuid.uuid4().hex}.bin"
        try:
            storage.put(key, os.urandom(MULTIPART_PROBE_BYTES), "application/octet-stream")
            sizes = [o.size for o in storage.list(key) if o.key == key]
        except StorageError as exc:
            self.report.line(
                7, "FAIL", f"{exc.message}; files from S3_MULTIPART_THRESHOLD_MB={threshold} MB up would not store"
            )
            return
        finally:
            self._delete(key)
        if len(parts) < 2 or sizes != [MULTIPART_PROBE_BYTES]:
            self.report.line(7, "FAIL", f"{len(parts)} parts sent, stored sizes {sizes}: not a complete upload")
            return
        self.report.line(7, "ok", f"6 MiB in {len(parts)} parts, complete; files from {threshold} MB up go this way")

    def addressing_style(self) -> None:
        style, example = _style(self.storage)
        configured = self.settings.s3_addressing_style
        detail = f"{style}: {example} (S3_ADDRESSING_STYLE={configured}"
        detail += f": {self.target.addressing_style} for this endpoint)" if configured == "auto" else ")"
        if not self.unreachable:
            self.report.line(8, "ok", detail)
            return
        other = "path" if style == "virtual-hosted" else "virtual"
        alternative = S3Storage.from_settings(self.settings.model_copy(update={"s3_addressing_style": other}))
        if _style(alternative)[0] == style:
            self.report.line(8, "ok", f"{detail}; the other style is not possible for this endpoint")
        elif _list(alternative) is None:
            self.report.line(
                8, "FAIL", f"{detail}; {style} requests fail from here but {other} ones work: "
                f"set S3_ADDRESSING_STYLE={other}"
            )  # fmt: skip
        else:
            self.report.line(8, "ok", f"{detail}; {other} requests fail too, so the style is not the problem")

    def _delete(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except StorageError:
            out.info("  (could not delete the probe %s; delete it by hand)", key)


def _style(storage: S3Storage) -> tuple[str, str]:
    """The addressing style boto3 uses for this client, from a URL it signs (no request is sent)."""
    url = urlsplit(storage.client.generate_presigned_url("get_object", Params={"Bucket": storage.bucket, "Key": "k"}))
    if url.netloc.startswith(f"{storage.bucket}."):
        return "virtual-hosted", f"{url.scheme}://{url.netloc}/<key>"
    return "path", f"{url.scheme}://{url.netloc}{url.path[: -len('/k')]}/<key>"


def _xml_code(text: str) -> str:
    match = re.search(r"<Code>([A-Za-z0-9.]{1,64})</Code>", text)
    return match.group(1) if match else ""


def _check_local(settings: Settings, report: Report) -> None:
    root = settings.storage_dir.resolve()
    if settings.aws_access_key_id or settings.aws_secret_access_key:
        report.line(1, "FAIL", "credentials are set but no bucket: set S3_BUCKET (or BUCKET_ENDPOINT_URL)")
    else:
        report.line(1, "ok", f"no bucket configured: local storage in {root} (STORAGE_DIR)")
    report.line(2, "skip", "local storage needs no credentials")
    storage = LocalStorage(root)
    try:
        storage.check()
    except StorageError as exc:
        report.line(3, "FAIL", f"{exc.message}; set STORAGE_DIR to a writable directory")
        report.skip_rest(4, "not tried (step 3 failed)")
        return
    report.line(3, "ok", f"no bucket; the directory {root} is writable")
    key = f"output/check-storage-{uuid.uuid4().hex}.txt"
    try:
        storage.put(key, b"probe", "text/plain")
        ok = storage.get(key) == b"probe"
        storage.delete(key)
        report.line(4, "ok" if ok else "FAIL", f"{key} written, read back and deleted" if ok else "read back differs")
    except StorageError as exc:
        report.line(4, "FAIL", exc.message)
    report.line(5, "skip", "no bucket: results would be paths on this machine, which no client elsewhere can fetch")
    report.skip_rest(6, "no bucket (set S3_BUCKET or BUCKET_ENDPOINT_URL for URLs clients can fetch)")


def check() -> bool:
    """Run every step, reporting each; True when none failed."""
    report = Report()
    try:
        settings = Settings()
    except ValidationError as exc:
        report.line(1, "FAIL", describe_errors(exc))
        report.skip_rest(2, "not tried (step 1 failed)")
        return False
    target = settings.storage_target()
    if target is None:
        _check_local(settings, report)
        return not report.failed
    keys = "key id and secret set" if settings.aws_secret_access_key else f"no secret set ({SECRET_VARS})"
    report.line(1, "ok", f"{target.describe()}; {keys}")
    _Check(settings, target, report).run()
    return not report.failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tts_worker check-storage",
        description="Try the storage settings the worker would use: credentials, bucket, writes, URLs, "
        "multipart uploads, addressing style. Exit status 1 when a step fails.",
    )
    parser.parse_args(argv)
    log.configure("WARNING")  # the library's own warnings restate what the steps report
    logging.getLogger("tts_worker.storage").setLevel(logging.ERROR)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    out.handlers[:] = [handler]
    out.setLevel(logging.INFO)
    out.propagate = False
    passed = check()
    out.info("storage check %s", "passed" if passed else "FAILED: change what the failing steps say")
    return 0 if passed else 1
