"""S3Storage against a real SeaweedFS on 127.0.0.1 with the real boto3 client, and open_storage/StagedWrites."""

from __future__ import annotations

import logging
import os
import re
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from s3server import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedS3, s3_server, s3_settings
from tts_worker.errors import StorageError
from tts_worker.s3 import S3Storage
from tts_worker.settings import Settings
from tts_worker.storage import JobPrefix, LocalStorage, StagedWrites, job_key, new_stem, open_storage

__all__ = ["s3_server"]  # the fixture, imported so pytest sees it here

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def storage(s3_server: SeaweedS3) -> S3Storage:
    return S3Storage.from_settings(s3_settings(s3_server))


def new_key(prefix: JobPrefix, extension: str) -> str:
    """A key under a fresh stem, as a job's first file gets."""
    return job_key(prefix, new_stem(), extension)


def _record_requests(storage: S3Storage) -> list[tuple[str, dict[str, str]]]:
    """(operation, headers) of every request the storage's client sends."""
    sent: list[tuple[str, dict[str, str]]] = []

    def hook(request, **kwargs):  # type: ignore[no-untyped-def]
        sent.append((kwargs["event_name"].rsplit(".", 1)[-1], {k.lower(): str(v) for k, v in request.headers.items()}))

    storage.client.meta.events.register("before-send.s3", hook)
    return sent


def test_open_storage_is_local_without_bucket_and_s3_with_one(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("AWS_", "BUCKET_", "S3_")):
            monkeypatch.delenv(name)
    assert isinstance(open_storage(Settings(storage_dir=tmp_path)), LocalStorage)

    # RunPod's own variable names configure the endpoint and credentials; S3_BUCKET names the bucket.
    monkeypatch.setenv("S3_BUCKET", "tts-out")
    monkeypatch.setenv("BUCKET_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BUCKET_ACCESS_KEY_ID", "runpod-key-id")
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", "runpod-secret-value")
    settings = Settings()
    assert settings.bucket_endpoint_url == "http://127.0.0.1:9"
    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == "runpod-secret-value"
    assert "runpod-secret-value" not in repr(settings) and "runpod-key-id" not in repr(settings)
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage) and storage.name == "s3" and storage.bucket == "tts-out"


def test_runpod_bucket_variables_alone_store_in_the_bucket_the_endpoint_names(s3_server: SeaweedS3, monkeypatch):
    """Only BUCKET_* set, the bucket in the endpoint's path (on 127.0.0.1 there is no DNS for bucket-in-host;
    tests/test_bucket_endpoint.py covers those shapes)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "BUCKET_", "S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BUCKET_ENDPOINT_URL", f"{s3_server.endpoint}/{BUCKET}")
    monkeypatch.setenv("BUCKET_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", SECRET_KEY)
    storage = open_storage(Settings(s3_max_attempts=1))
    assert isinstance(storage, S3Storage) and storage.bucket == BUCKET
    stored = storage.put(new_key("output/", "wav"), b"RIFF runpod-style", "audio/wav")
    # In the bucket itself, at the key itself: not under a `<bucket>/` prefix, not in a `bucket.bucket` host.
    assert stored.key in s3_server.keys(BUCKET, "output/")
    assert urlsplit(stored.url).path == f"/{BUCKET}/{stored.key}"
    assert httpx.get(stored.url, timeout=5).content == b"RIFF runpod-style"
    assert [o.key for o in storage.list("output/") if o.key == stored.key] == [stored.key]
    storage.delete(stored.key)


def test_put_returns_a_presigned_url_that_serves_the_object(storage: S3Storage):
    key = new_key("output/", "wav")
    assert key.startswith("output/") and len(key) == len("output/") + 32 + 4
    data = b"RIFF" + os.urandom(2000)
    stored = storage.put(key, data, "audio/wav")
    assert (stored.key, stored.size, stored.content_type) == (key, len(data), "audio/wav")

    response = httpx.get(stored.url, timeout=5)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "audio/wav"
    assert storage.get(key) == data and storage.exists(key)


def test_tampered_or_expired_presigned_urls_are_refused(s3_server: SeaweedS3):
    # Long enough for the first GET on a loaded machine (1 s was not), short enough to wait out.
    storage = S3Storage.from_settings(s3_settings(s3_server, s3_presign_expiry_seconds=5))
    other = storage.put(new_key("output/", "wav"), b"someone else's audio", "audio/wav")
    signed_at = time.monotonic()
    stored = storage.put(new_key("output/", "wav"), b"audio bytes", "audio/wav")
    assert httpx.get(stored.url, timeout=5).status_code == 200

    parts = urlsplit(stored.url)
    query = parts.query.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    other_path = urlsplit(other.url).path
    tampered = [
        urlunsplit(parts._replace(query=query)),  # signature changed
        urlunsplit(parts._replace(path=other_path)),  # the same signature for another key
        urlunsplit(parts._replace(query=parts.query.replace("X-Amz-Expires=5", "X-Amz-Expires=99"))),
    ]
    for url in tampered:
        assert httpx.get(url, timeout=5).status_code == 403, url

    time.sleep(max(0.0, signed_at + 6.2 - time.monotonic()))
    expired = httpx.get(stored.url, timeout=5)
    assert expired.status_code == 403
    assert b"audio bytes" not in expired.content


def test_public_base_url_replaces_presigning(s3_server: SeaweedS3):
    storage = S3Storage.from_settings(
        s3_settings(s3_server, s3_public_base_url="https://cdn.example.com/voices-bucket/")
    )
    stored = storage.put("output/public-test.wav", b"x", "audio/wav")
    assert stored.url == "https://cdn.example.com/voices-bucket/output/public-test.wav"


def test_b2_style_checksums_are_sent_only_when_required(s3_server: SeaweedS3, storage: S3Storage):
    assert storage.config.request_checksum_calculation == "when_required"
    assert storage.config.response_checksum_validation == "when_required"
    sent = _record_requests(storage)
    stored = storage.put(new_key("output/", "json"), b'{"words": []}', "application/json")
    assert storage.get(stored.key) == b'{"words": []}'
    storage.delete_many([stored.key])  # DeleteObjects is an operation that does require a checksum
    headers = {op: h for op, h in sent}
    assert not [h for h in headers["PutObject"] if h.startswith("x-amz-checksum-") or "sdk-checksum" in h]
    assert any(h.startswith(("x-amz-checksum-", "content-md5")) for h in headers["DeleteObjects"])

    # The check has teeth: boto3's default client does add a checksum to every PutObject (B2 rejects it).
    import boto3

    default = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    seen: list[dict[str, str]] = []
    default.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: seen.append({k.lower(): "" for k in request.headers})
    )
    default.put_object(Bucket=BUCKET, Key="output/default-client", Body=b"x")
    assert any(h.startswith("x-amz-checksum-") for h in seen[0])


def test_large_files_upload_in_parts(s3_server: SeaweedS3):
    storage = S3Storage.from_settings(s3_settings(s3_server, s3_multipart_threshold_mb=5))
    sent = _record_requests(storage)
    data = os.urandom(11 * 1024 * 1024)
    stored = storage.put(new_key("output/", "wav"), data, "audio/wav")
    operations = [op for op, _ in sent]
    assert operations.count("CreateMultipartUpload") == 1 and operations.count("CompleteMultipartUpload") == 1
    assert operations.count("UploadPart") >= 2
    assert storage.get(stored.key) == data


def test_get_exists_delete_and_list(storage: S3Storage):
    keys = [f"timings/list-{i}.json" for i in range(3)]
    for key in keys:
        storage.put(key, b"{}", "application/json")
    listed = [o for o in storage.list("timings/") if o.key.startswith("timings/list-")]
    assert [o.key for o in listed] == keys and all(o.size == 2 and o.modified > 0 for o in listed)
    assert storage.get("timings/missing.json") is None and not storage.exists("timings/missing.json")
    storage.delete(keys[0])
    storage.delete(keys[0])  # deleting what is gone is fine
    storage.delete_many([keys[1], keys[2], "timings/never-existed.json"])
    assert not any(storage.exists(k) for k in keys)
    with pytest.raises(ValueError):
        storage.put("../escape", b"x", "text/plain")


def test_errors_name_the_operation_but_no_secret(s3_server: SeaweedS3, caplog):
    caplog.set_level(logging.DEBUG, logger="tts_worker")
    wrong = S3Storage.from_settings(s3_settings(s3_server, aws_secret_access_key="wrong-secret-abcdef"))
    with pytest.raises(StorageError) as caught:
        wrong.put("output/denied.wav", b"x", "audio/wav")
    message = caught.value.as_result()["error"]
    assert isinstance(message, str) and message.startswith("storage_error: could not upload output/denied.wav")
    assert "SignatureDoesNotMatch" in message
    for secret in ("wrong-secret-abcdef", SECRET_KEY, ACCESS_KEY, s3_server.endpoint, "127.0.0.1", "Signature="):
        assert secret not in message
        assert secret not in caplog.text
    assert "upload output/denied.wav failed" in caplog.text

    missing = S3Storage.from_settings(s3_settings(s3_server, bucket="no-such-bucket"))
    with pytest.raises(StorageError, match="could not open bucket no-such-bucket"):
        missing.check()
    S3Storage.from_settings(s3_settings(s3_server)).check()


def test_a_failed_job_removes_what_it_wrote(storage: S3Storage):
    with pytest.raises(RuntimeError), StagedWrites(storage) as staged:
        audio = staged.put(new_key("output/", "wav"), b"audio", "audio/wav")
        timings = staged.put(new_key("timings/", "json"), b"{}", "application/json")
        assert storage.exists(audio.key) and storage.exists(timings.key)
        raise RuntimeError("alignment failed after the uploads")
    assert not storage.exists(audio.key) and not storage.exists(timings.key)

    with StagedWrites(storage) as staged:
        kept = staged.put(new_key("output/", "wav"), b"audio", "audio/wav")
    assert storage.exists(kept.key)


def test_server_stopped_mid_job_gives_a_storage_error_and_no_partial_object(tmp_path):
    server = SeaweedS3.launch(tmp_path)
    try:
        server.create_bucket(BUCKET)
        storage = S3Storage.from_settings(s3_settings(server, s3_multipart_threshold_mb=5, s3_max_attempts=2))
        parts = []

        def stop_on_second_part(**_):  # type: ignore[no-untyped-def]
            parts.append(1)
            if len(parts) == 2:
                server.kill()

        storage.client.meta.events.register("before-send.s3.UploadPart", stop_on_second_part)
        staged = StagedWrites(storage)
        first = staged.put(new_key("output/", "wav"), b"first file of the job", "audio/wav")
        big_key = new_key("output/", "wav")
        t0 = time.monotonic()
        with pytest.raises(StorageError) as caught:
            staged.put(big_key, os.urandom(11 * 1024 * 1024), "audio/wav")
        assert time.monotonic() - t0 < 20
        assert re.fullmatch(
            rf"could not upload {big_key} \((could not connect to|timed out waiting for) the storage endpoint\)",
            caught.value.message,
        )
        # Storage is down, so the rollback cannot delete yet; it keeps the keys to retry.
        assert [ref.key for ref in staged.rollback()] == [first.key, big_key]

        server.start()
        assert server.keys(BUCKET, "output/") == [first.key]  # the interrupted upload left no object
        assert staged.rollback() == []
        assert server.keys(BUCKET, "output/") == []
        again = storage.put(big_key, b"the next job's file", "audio/wav")
        assert httpx.get(again.url, timeout=5).content == b"the next job's file"
    finally:
        server.stop()
