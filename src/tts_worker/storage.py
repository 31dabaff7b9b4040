"""Where outputs and the voice library live, behind one small protocol.

Keys are relative, `/`-separated (`output/<stem>.wav`, `timings/<stem>.json`,
`voices/<name>.wav`). A job's files share one unguessable stem (`new_stem()`), and
`job_key(prefix, stem, ext)` is the one key scheme for them. A backend
makes an object visible only once it is complete, and refuses keys that could
escape its root. `list(prefix)` takes a directory-like prefix ending in `/`.
`put_if_absent` creates an object only when its key is free, atomically between
processes where the backend can: a hard link on local disk, `If-None-Match: *`
on S3 (a store that refuses the header, NotImplemented or InvalidArgument, gets
a look-up then a PUT instead, logged once: atomic within one process's lock
only; a store that ignores the header overwrites, see docs/DEPLOY.md).

Backends:
- `LocalStorage`: a directory; the default when no bucket is configured.
- `S3Storage`: any S3-compatible service (AWS, Backblaze B2, Cloudflare R2,
  MinIO, SeaweedFS). The only module that imports boto3. `put` returns a
  presigned GET URL (or `<public base>/<key>` when a public base URL is set).
  Checksums are sent only when the operation requires them (B2 rejects the
  ones boto3 adds by default), requests retry with backoff on throttling, 5xx
  and dropped connections, large files go up in parts (a multipart upload is
  invisible until completed, and aborted on failure).

`buckets` are the buckets a request may name in an `s3://` URL: `read_object(bucket, key,
max_bytes)` reads an input from one of them, and `put(..., bucket=...)` / `delete_many(...,
bucket=...)` write and remove a named output there (`S3_BUCKET` plus `S3_EXTRA_BUCKETS`; empty for
local storage). Without `bucket` every call is about the worker's own bucket or directory.

`stat(key)` describes a stored object with a fresh URL; `key_of(url)` is the key behind a URL this
storage handed out earlier (a presigned URL, expired or not, a public URL, a local path), or None.

`open_storage(settings)` picks the backend; which bucket, endpoint, region and
addressing style the settings mean is `Settings.storage_target()` (bucket_endpoint.py).
Every failure is a `StorageError` whose message names the operation and key and a short cause (an S3 error code,
with a hint to check the credentials when the store refuses them; "could not
connect", "timed out"); never credentials, endpoint URLs or signatures.
`StagedWrites` records what one job puts (an `ObjectRef`: key and bucket) so a failed job removes it.
"""

from __future__ import annotations

import errno
import io
import logging
import mimetypes
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

from tts_worker.errors import StorageError, quote

if TYPE_CHECKING:
    from tts_worker.settings import Settings

logger = logging.getLogger(__name__)

_KEY = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")  # fullmatch: `$` would let a trailing newline through
# os.link's answers on filesystems without hard links (some FUSE and network mounts)
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV})


@dataclass(frozen=True)
class StoredObject:
    key: str
    url: str  # where a client fetches it: a presigned/public URL, or a local path
    size: int
    content_type: str
    bucket: str | None = None  # set when the object is in another bucket than the worker's own


@dataclass(frozen=True)
class ObjectRef:
    """One stored object: its key, in `bucket` (None: the worker's own bucket or directory)."""

    key: str
    bucket: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # POSIX timestamp


class Storage(Protocol):
    name: str
    buckets: frozenset[str]
    """Buckets an `s3://` URL of a request may name, to read or to write (empty: this storage has none)."""

    @property
    def bucket(self) -> str | None:
        """The worker's own bucket (None: local storage)."""
        ...

    @property
    def url_expiry(self) -> int | None:
        """Seconds a URL `put`/`stat` returns stays valid; None when it does not expire."""
        ...

    def put(self, key: str, data: bytes, content_type: str, *, bucket: str | None = None) -> StoredObject:
        """Store `data` under `key` (replacing what was there), in `bucket` (one of `buckets`) or our own."""
        ...

    def put_if_absent(self, key: str, data: bytes, content_type: str) -> StoredObject | None:
        """Create the object only if no object has the key; None (nothing written) when one has."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_many(self, keys: Iterable[str], *, bucket: str | None = None) -> None:
        """Delete every key (missing ones are fine); raises StorageError if any could not be deleted."""
        ...

    def exists(self, key: str) -> bool: ...

    def stat(self, key: str) -> StoredObject | None:
        """The object under `key` with a fresh URL (content type "" when the backend does not record one),
        or None when there is none."""
        ...

    def key_of(self, url: str) -> str | None:
        """The key of a URL this storage hands out (expired presigned URLs included), or None."""
        ...

    def list(self, prefix: str) -> list[ObjectInfo]: ...

    def read_object(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes | None:
        """An object of one of `buckets` (at most `max_bytes + 1` bytes of it), or None when it does not exist."""
        ...

    def check(self) -> None:
        """Fail fast at start: raises StorageError when the backend can't be written to."""
        ...


PREFIXES = ("output/", "timings/", "voices/")
JobPrefix = Literal["output/", "timings/"]


def new_stem() -> str:
    """An unguessable stem for one job's files: `3f2c...e1`."""
    return uuid.uuid4().hex


def job_key(prefix: JobPrefix, stem: str, extension: str, *, part: str | None = None) -> str:
    """The key of a job's file: `<prefix><stem>.<ext>`, or `<prefix><stem>/<part>.<ext>` for one piece
    of it (a streamed chunk)."""
    name = f"{stem}/{part}" if part else stem
    return check_key(f"{prefix}{name}.{extension.lstrip('.')}")


def new_key(prefix: JobPrefix, extension: str) -> str:
    """A key under a new stem: `output/3f2c...e1.wav`."""
    return job_key(prefix, new_stem(), extension)


def named_key(base: str, extension: str, *, part: str | None = None) -> str:
    """The key of a job's file when the request named its output (`output_key`, `output_url`): every file
    of the job shares the audio's `base` (its key without the extension), `<base>.<ext>`, and a piece of
    it is `<base>/<part>.<ext>`."""
    name = f"{base}/{part}" if part else base
    return check_key(f"{name}.{extension.lstrip('.')}")


MAX_KEY_BYTES = 1024  # S3's limit


def check_key(key: str) -> str:
    """`key` when it is a safe relative key: `/`-separated names of letters, digits, `.`, `_` and `-`,
    none of them `.` or `..`, at most 1024 bytes; ValueError otherwise."""
    if (
        not _KEY.fullmatch(key)
        or any(part in (".", "..") for part in key.split("/"))
        or len(key.encode("utf-8")) > MAX_KEY_BYTES
    ):
        raise ValueError(f"invalid storage key {quote(key)}")
    return key


_CONTENT_TYPES = {".ass": "text/x-ssa", ".srt": "application/x-subrip", ".vtt": "text/vtt", ".txt": "text/plain"}


def guess_content_type(key: str) -> str:
    """A content type from the key's extension, for a backend that records none (local files)."""
    suffix = Path(key).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


class LocalStorage:
    """Objects as files under `root`; writes go to a temp file in the same directory, then rename."""

    name = "local"
    bucket: str | None = None
    buckets: frozenset[str] = frozenset()
    url_expiry: int | None = None

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._fallback_lock = threading.Lock()

    def read_object(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes | None:
        raise StorageError("local storage reads no buckets")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str, *, bucket: str | None = None) -> StoredObject:
        if bucket is not None:
            raise StorageError("local storage has no buckets")
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"could not write {key} to local storage ({exc.strerror or 'I/O error'})") from exc
        return StoredObject(key=key, url=str(path), size=len(data), content_type=content_type)

    def put_if_absent(self, key: str, data: bytes, content_type: str) -> StoredObject | None:
        """A complete temp file hard-linked to the key: the link fails when the name exists, so two
        processes can never both create it, and the object appears only once complete."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return None
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    logger.warning("storage: no hard links in the local directory: creating is atomic per process")
                    with self._fallback_lock:
                        if path.exists():
                            return None
                        Path(tmp).replace(path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not write {key} to local storage ({exc.strerror or 'I/O error'})") from exc
        return StoredObject(key=key, url=str(path), size=len(data), content_type=content_type)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"could not read {key} from local storage ({exc.strerror or 'I/O error'})") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {key} ({exc.strerror or 'I/O error'})") from exc

    def delete_many(self, keys: Iterable[str], *, bucket: str | None = None) -> None:
        if bucket is not None:
            raise StorageError("local storage has no buckets")
        failed = []
        for key in keys:
            try:
                self.delete(key)
            except StorageError:
                failed.append(key)
        if failed:
            raise StorageError(f"could not delete {len(failed)} objects from local storage ({', '.join(failed[:5])})")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"could not look up {key} ({exc.strerror or 'I/O error'})") from exc
        if not path.is_file():
            return None
        return StoredObject(key=key, url=str(path), size=size, content_type="")

    def key_of(self, url: str) -> str | None:
        """The key of a path `put` returned (a `file://` URL of one too)."""
        path = unquote(urlsplit(url).path) if url.startswith("file://") else url
        if not Path(path).is_absolute():
            return None
        try:
            relative = Path(os.path.normpath(path)).relative_to(self.root).as_posix()
            return check_key(relative)
        except ValueError:
            return None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"local storage directory is not usable ({exc.strerror or 'I/O error'})") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageError("local storage directory is not writable")

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".partial-"):
                st = path.stat()
                out.append(ObjectInfo(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        return out


# Answers that mean the key pair is wrong, revoked or lacks the permission (AWS, B2, R2, MinIO, SeaweedFS).
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidSecurity"}
)


def _cause(exc: BaseException) -> str:
    """A short, secret-free cause for a boto3/botocore failure (follows the exception chain)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, ClientError):
            error = seen.response.get("Error", {})
            code = str(error.get("Code") or "error")[:64]
            status = seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # A HEAD has no body, so its error code is just the status ("403").
            if code == str(status):
                answer = f"S3 answered HTTP {status}"
            else:
                answer = f"S3 answered {code}" + (f", HTTP {status}" if status else "")
            if code in _CREDENTIAL_CODES or status in (401, 403):
                answer += "; check the storage credentials"
            return answer
        if isinstance(seen, ConnectTimeoutError | ReadTimeoutError):
            return "timed out waiting for the storage endpoint"
        if isinstance(seen, EndpointConnectionError | ConnectionClosedError):
            return "could not connect to the storage endpoint"
        if isinstance(seen, NoCredentialsError):
            return "no storage credentials are configured"
        if isinstance(seen, BotoCoreError):
            return seen.__class__.__name__
        seen = seen.__cause__ or seen.__context__
    return exc.__class__.__name__


def _code(exc: BaseException) -> tuple[str, int | None]:
    """An S3 error's code and HTTP status ("", None for anything but an answer from the store)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return "", None
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(exc.response.get("Error", {}).get("Code", "")), status if isinstance(status, int) else None


def _not_found(exc: BaseException) -> bool:
    return _code(exc)[0] in ("NoSuchKey", "404", "NotFound")


# How stores without conditional writes answer one: AWS before 2024 said NotImplemented (501); others
# reject the header as a bad argument. Either way a plain PUT after a look-up is what remains.
_NO_CONDITIONS = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest"})
_PUT_META = "put-token"  # user metadata (x-amz-meta-put-token) that tells our own conditional PUT apart


class S3Storage:
    """Objects in one bucket of an S3-compatible service. Thread-safe (one boto3 client)."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str | None = None,
        presign_expiry_seconds: int = 3600,
        public_base_url: str | None = None,
        addressing_style: str = "auto",
        max_attempts: int = 5,
        retry_mode: str = "standard",
        multipart_threshold: int = 16 * 1024 * 1024,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        extra_buckets: Iterable[str] = (),
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        # False once the store answered NotImplemented to If-None-Match (put_if_absent then looks up first)
        self.conditional_writes = True
        self.presign_expiry_seconds = presign_expiry_seconds
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.url_expiry = None if self.public_base_url else presign_expiry_seconds
        # Buckets an `s3://` URL of a request may read or write: ours, plus those the operator lists. Any
        # bucket the credentials reach would let a request read or overwrite objects it was never meant to.
        self.buckets = frozenset({bucket, *extra_buckets})
        self._presigned_base: tuple[str, str, str] | None = None
        self.config = Config(
            signature_version="s3v4",
            region_name=region or "us-east-1",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": max_attempts, "mode": retry_mode},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Backblaze B2 (and some other S3-compatibles) reject the CRC checksums boto3 >= 1.36 adds
            # to every request; send and validate them only where the operation requires it.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A private session: nothing global is configured, and credentials stay in this object.
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=self.config,
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold // 2, 5 * 1024 * 1024),
            max_concurrency=4,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        """The bucket the settings name (`Settings.storage_target`); ValueError when they name none."""
        target = settings.storage_target()
        if target is None:
            raise ValueError("no bucket is configured (S3_BUCKET or BUCKET_ENDPOINT_URL)")

        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        return cls(
            target.bucket,
            endpoint_url=target.endpoint_url,
            access_key_id=secret(settings.aws_access_key_id),
            secret_access_key=secret(settings.aws_secret_access_key),
            region=target.region,
            presign_expiry_seconds=settings.s3_presign_expiry_seconds,
            public_base_url=settings.s3_public_base_url,
            addressing_style=target.addressing_style,
            max_attempts=settings.s3_max_attempts,
            retry_mode=settings.s3_retry_mode,
            multipart_threshold=settings.s3_multipart_threshold_mb * 1024 * 1024,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            extra_buckets=settings.extra_buckets(),
        )

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
                code, status = _code(exc)
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


def open_storage(settings: Settings) -> Storage:
    """S3 when a bucket is named (`S3_BUCKET`, or in `BUCKET_ENDPOINT_URL`), else the local directory
    `STORAGE_DIR`. Touches no network."""
    target = settings.storage_target()
    if target is not None:
        storage = S3Storage.from_settings(settings)
        logger.info("storage: %s; %s URLs", target.describe(), "public" if settings.s3_public_base_url else "presigned")
        return storage
    if settings.aws_access_key_id:
        logger.warning("storage: S3 credentials are set but no bucket (S3_BUCKET); using local storage")
    return LocalStorage(settings.storage_dir)


def delete_refs(storage: Storage, refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    """Delete every object (one call per bucket); returns those that could not be deleted."""
    by_bucket: dict[str | None, list[str]] = {}
    for ref in dict.fromkeys(refs):
        by_bucket.setdefault(ref.bucket, []).append(ref.key)
    left: list[ObjectRef] = []
    for bucket, keys in by_bucket.items():
        try:
            storage.delete_many(keys, bucket=bucket)
        except StorageError:
            left += [ObjectRef(k, bucket) for k in keys]
    return left


class StagedWrites:
    """The objects one job has put, so a job that fails part-way removes what it wrote.

        with StagedWrites(storage) as staged:
            audio = staged.put(new_key("output/", "wav"), data, "audio/wav")
            timings = staged.put(new_key("timings/", "json"), text, "application/json")
        # an exception inside the block deletes both (best effort), then propagates

    A key is recorded before its upload starts: an upload that failed on the client side may still
    have completed on the server. `rollback()` returns the objects it could not delete (storage down)
    and keeps them, so a later `rollback()` (e.g. at the next job) retries; they are logged. Job keys
    are unguessable uuid keys nothing links to; a named output (`output_key`, `output_url`) is removed
    the same way, in whichever bucket it went to.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.refs: list[ObjectRef] = []

    def put(self, key: str, data: bytes, content_type: str, *, bucket: str | None = None) -> StoredObject:
        self.refs.append(ObjectRef(key, bucket))
        return self.storage.put(key, data, content_type, bucket=bucket)

    def commit(self) -> None:
        """Keep everything put so far: a later rollback no longer touches it."""
        self.refs.clear()

    def rollback(self) -> list[ObjectRef]:
        """Delete everything recorded. Returns (and keeps, so a later call retries) the objects that could
        not be deleted."""
        if not self.refs:
            return []
        left = delete_refs(self.storage, self.refs)
        if left:
            logger.error("storage: a failed job left %d objects not yet removed: %s", len(left), [r.key for r in left])
        else:
            logger.info("storage: removed %d objects of a failed job", len(self.refs))
        self.refs = left
        return list(left)

    def __enter__(self) -> StagedWrites:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.rollback()
        else:
            self.commit()
