"""The S3 backend of `tts_worker.storage.Storage`: any S3-compatible service (AWS, Backblaze B2,
Cloudflare R2, MinIO, SeaweedFS). The only module that imports boto3.

`S3Storage(bucket, S3Options(...))`, or `S3Storage.from_settings(settings)` as the worker builds it (the
options the settings mean are `bucket_endpoint.s3_options`).
`put` returns a presigned GET URL (or `<public base>/<key>` when a public base URL is set). Checksums
are sent only when the operation requires them (B2 rejects the ones boto3 adds by default), requests
retry with backoff on throttling, 5xx and dropped connections, large files go up in parts (a
multipart upload is invisible until completed, and aborted on failure). `put_if_absent` is one PUT
with `If-None-Match: *`. Every failure is a `StorageError` with a short, secret-free cause. `classify(exc)`
is the one reading of botocore's errors (`S3Failure`): the storage's messages and `storage_check` use it.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from tts_worker.bucket_endpoint import S3Options, s3_options
from tts_worker.errors import StorageError
from tts_worker.storage import ObjectInfo, StoredObject, check_key

if TYPE_CHECKING:
    from tts_worker.settings import Settings

logger = logging.getLogger(__name__)


# Answers that mean the key pair is wrong, revoked or lacks the permission (AWS, B2, R2, MinIO, SeaweedFS).
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidSecurity"}
)


@dataclass(frozen=True)
class S3Failure:
    """What one boto3/botocore exception means (`classify`). `kind`: "answer" (the store answered an
    error), "timeout", "unreachable", "nocreds", "botocore" (another of botocore's) or "other"."""

    kind: str
    name: str  # the exception's class name
    code: str = ""  # "answer": the store's error code, else its HTTP status ("NoSuchKey", "404")
    status: int | None = None  # "answer": the HTTP status
    region: str | None = None  # "answer": the region the store says the bucket is in, when it says


def classify(exc: BaseException) -> S3Failure:
    """The one reading of botocore's exceptions: the storage's messages (`_cause`) and storage_check use it."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    name = exc.__class__.__name__
    if isinstance(exc, ClientError):
        error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode") if isinstance(meta.get("HTTPStatusCode"), int) else None
        region = error.get("Region") or meta.get("HTTPHeaders", {}).get("x-amz-bucket-region")
        return S3Failure("answer", name, str(error.get("Code") or status or "error")[:64], status, region)
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return S3Failure("timeout", name)
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        return S3Failure("unreachable", name)
    if isinstance(exc, NoCredentialsError):
        return S3Failure("nocreds", name)
    return S3Failure("botocore" if isinstance(exc, BotoCoreError) else "other", name)


_CAUSES = {
    "timeout": "timed out waiting for the storage endpoint",
    "unreachable": "could not connect to the storage endpoint",
    "nocreds": "no storage credentials are configured",
}


def _cause(exc: BaseException) -> str:
    """A short, secret-free cause: the first botocore exception in the chain, classified."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        failure = classify(seen)
        code, status = failure.code, failure.status
        if failure.kind == "answer":
            # A HEAD has no body, so its error code is just the status ("403").
            if code == str(status):
                answer = f"S3 answered HTTP {status}"
            else:
                answer = f"S3 answered {code}" + (f", HTTP {status}" if status else "")
            if code in _CREDENTIAL_CODES or status in (401, 403):
                answer += "; check the storage credentials"
            return answer
        if failure.kind != "other":
            return _CAUSES.get(failure.kind, failure.name)
        seen = seen.__cause__ or seen.__context__
    return exc.__class__.__name__


def _not_found(exc: BaseException) -> bool:
    return classify(exc).code in ("NoSuchKey", "404", "NotFound")


# How stores without conditional writes answer one: AWS before 2024 said NotImplemented (501); others
# reject the header as a bad argument. Either way a plain PUT after a look-up is what remains.
_NO_CONDITIONS = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest"})
_PUT_META = "put-token"  # user metadata (x-amz-meta-put-token) that tells our own conditional PUT apart


class S3Storage:
    """Objects in one bucket of an S3-compatible service. Thread-safe (one boto3 client)."""

    name = "s3"

    def __init__(self, bucket: str, options: S3Options | None = None) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        o = options or S3Options()
        self.bucket = bucket
        # False once the store answered NotImplemented to If-None-Match (put_if_absent then looks up first)
        self.conditional_writes = True
        self.presign_expiry_seconds = o.presign_expiry_seconds
        self.public_base_url = o.public_base_url.rstrip("/") if o.public_base_url else None
        self.url_expiry = None if self.public_base_url else o.presign_expiry_seconds
        # Buckets an `s3://` URL of a request may read or write: ours, plus those the operator lists. Any
        # bucket the credentials reach would let a request read or overwrite objects it was never meant to.
        self.buckets = frozenset({bucket, *o.extra_buckets})
        self._presigned_base: tuple[str, str, str] | None = None
        self.config = Config(
            signature_version="s3v4",
            region_name=o.region or "us-east-1",
            s3={"addressing_style": o.addressing_style},
            retries={"max_attempts": o.max_attempts, "mode": o.retry_mode},
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            # Backblaze B2 (and some other S3-compatibles) reject the CRC checksums boto3 >= 1.36 adds
            # to every request; send and validate them only where the operation requires it.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A private session: nothing global is configured, and credentials stay in this object.
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=o.endpoint_url or None,
            aws_access_key_id=o.access_key_id,
            aws_secret_access_key=o.secret_access_key,
            config=self.config,
        )
        self.transfer = TransferConfig(
            multipart_threshold=o.multipart_threshold,
            multipart_chunksize=max(o.multipart_threshold // 2, 5 * 1024 * 1024),
            max_concurrency=4,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        """The bucket the settings name, reached as they say (`bucket_endpoint.s3_options`); ValueError when
        they name none."""
        return cls(*s3_options(settings))

    def _fail(self, what: str, exc: BaseException) -> StorageError:
        cause = _cause(exc)
        logger.warning("storage: %s failed: %s", what, cause)
        return StorageError(f"could not {what} ({cause})")

    def _bucket(self, bucket: str | None) -> str:
        if bucket is None:
            return self.bucket
        if bucket not in self.buckets:  # callers check first; this is the backstop
            raise StorageError(f"bucket {bucket} is not one this worker may use")
        return bucket

    def url(self, key: str, *, bucket: str | None = None) -> str:
        """Where a client fetches `key`: the public URL (our bucket only), or a presigned GET valid for the
        configured time."""
        check_key(key)
        if self.public_base_url and bucket in (None, self.bucket):
            return f"{self.public_base_url}/{key}"
        try:
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self._bucket(bucket), "Key": key},
                    ExpiresIn=self.presign_expiry_seconds,
                )
            )
        except Exception as exc:
            raise self._fail(f"sign a URL for {key}", exc) from None

    def put(self, key: str, data: bytes, content_type: str, *, bucket: str | None = None) -> StoredObject:
        check_key(key)
        target = self._bucket(bucket)
        try:
            # upload_fileobj: one PUT below the threshold, else a multipart upload that s3transfer
            # aborts when a part fails. Either way the object appears only once it is complete.
            self.client.upload_fileobj(
                io.BytesIO(data),
                target,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=self.transfer,
            )
        except Exception as exc:
            raise self._fail(f"upload {key}", exc) from None
        logger.info("stored %s (%d bytes) in bucket %s", key, len(data), target)
        other = target if target != self.bucket else None
        return StoredObject(key, self.url(key, bucket=other), len(data), content_type, bucket=other)

    def stat(self, key: str) -> StoredObject | None:
        check_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise self._fail(f"look up {key}", exc) from None
        return StoredObject(key, self.url(key), int(head.get("ContentLength", 0)), str(head.get("ContentType", "")))

    def key_of(self, url: str) -> str | None:
        """The key of a URL `url()` gave: `<public base>/<key>`, or a presigned GET of our bucket at our
        endpoint (its signature and expiry are not looked at: a fresh one replaces it)."""
        parts = urlsplit(url.strip())
        candidates = []
        if self.public_base_url:
            base = urlsplit(self.public_base_url)
            candidates.append((base.scheme, base.netloc, base.path.rstrip("/") + "/"))
        candidates.append(self._presigned_prefix())
        for scheme, netloc, prefix in candidates:
            if (parts.scheme.lower(), parts.netloc.lower()) == (scheme.lower(), netloc.lower()):
                path = unquote(parts.path)
                if path.startswith(prefix):
                    try:
                        return check_key(path[len(prefix) :])
                    except ValueError:
                        return None
        return None

    def _presigned_prefix(self) -> tuple[str, str, str]:
        """(scheme, host, path before the key) of this client's presigned URLs for our bucket: path-style
        `/<bucket>/` or virtual-hosted `/`, as the client's addressing style makes them."""
        if self._presigned_base is None:
            probe = "k"
            parts = urlsplit(
                self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": probe})
            )
            self._presigned_base = (parts.scheme, parts.netloc, parts.path[: -len(probe)])
        return self._presigned_base

    def put_if_absent(self, key: str, data: bytes, content_type: str) -> StoredObject | None:
        """One PutObject with `If-None-Match: *` (never multipart: CreateMultipartUpload takes no
        condition everywhere). 412 means the key is taken; 409 (AWS: a conditional write racing this one)
        is retried briefly. A retried request whose first attempt did land answers 412 too, so each
        attempt carries a token in its metadata and a 412 on our own token is our success."""
        check_key(key)
        token = uuid.uuid4().hex
        conflicts = 0
        while True:
            if not self.conditional_writes:
                return None if self.exists(key) else self.put(key, data, content_type)
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    ContentType=content_type,
                    Metadata={_PUT_META: token},
                    IfNoneMatch="*",
                )
            except Exception as exc:
                failure = classify(exc)
                code, status = failure.code, failure.status
                if code == "PreconditionFailed" or status == 412:
                    return self._ours(key, token, data, content_type)
                if code == "ConditionalRequestConflict" or status == 409:
                    conflicts += 1
                    if conflicts == 3:
                        return None  # still racing another writer of the key: it is theirs
                    time.sleep(0.1 * conflicts)
                    continue
                if code in _NO_CONDITIONS or status == 501:
                    logger.warning(
                        "storage: the store refused If-None-Match on PutObject (%s); creating objects such as "
                        "new voices is atomic within one worker only",
                        code or status,
                    )
                    self.conditional_writes = False
                    continue
                raise self._fail(f"upload {key}", exc) from None
            logger.info("created %s (%d bytes) in bucket %s", key, len(data), self.bucket)
            return StoredObject(key=key, url=self.url(key), size=len(data), content_type=content_type)

    def _ours(self, key: str, token: str, data: bytes, content_type: str) -> StoredObject | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _not_found(exc):
                return None  # taken, then deleted again: still not ours
            raise self._fail(f"look up {key}", exc) from None
        if head.get("Metadata", {}).get(_PUT_META) != token:
            return None
        return StoredObject(key=key, url=self.url(key), size=len(data), content_type=content_type)

    def get(self, key: str) -> bytes | None:
        check_key(key)
        return self.read_object(self.bucket, key)

    def read_object(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes | None:
        """The object's bytes (at most `max_bytes + 1` of them, so a caller can tell it is too large),
        or None when it does not exist."""
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise self._fail(f"read {key}", exc) from None
        body = response["Body"]
        try:
            return bytes(body.read() if max_bytes is None else body.read(max_bytes + 1))
        except Exception as exc:
            raise self._fail(f"read {key}", exc) from None
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _not_found(exc):
                return False
            raise self._fail(f"look up {key}", exc) from None
        return True

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._fail(f"delete {key}", exc) from None

    def delete_many(self, keys: Iterable[str], *, bucket: str | None = None) -> None:
        pending = [check_key(k) for k in dict.fromkeys(keys)]
        target = self._bucket(bucket)
        failed: list[str] = []
        for start in range(0, len(pending), 1000):  # DeleteObjects takes at most 1000 keys
            batch = pending[start : start + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=target, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except Exception as exc:
                raise self._fail(f"delete {len(pending)} objects", exc) from None
            failed += [str(e.get("Key")) for e in response.get("Errors", [])]
        if failed:
            logger.warning("storage: could not delete %s", ", ".join(failed))
            raise StorageError(f"could not delete {len(failed)} of {len(pending)} objects")

    def list(self, prefix: str) -> list[ObjectInfo]:
        out = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                out += [
                    ObjectInfo(str(o["Key"]), int(o["Size"]), o["LastModified"].timestamp())
                    for o in page.get("Contents", [])
                ]
        except Exception as exc:
            raise self._fail(f"list {prefix or 'the bucket'}", exc) from None
        return sorted(out, key=lambda o: o.key)

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise self._fail(f"open bucket {self.bucket}", exc) from None
