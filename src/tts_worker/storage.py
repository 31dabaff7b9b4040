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
- `s3.S3Storage`: any S3-compatible service (AWS, Backblaze B2, Cloudflare R2, MinIO,
  SeaweedFS), in its own module, the only one that imports boto3 (its docstring has the details).

`buckets` are the buckets a request may name in an `s3://` URL: `read_object(bucket, key,
max_bytes)` reads an input from one of them, and `put(..., bucket=...)` / `delete_many(...,
bucket=...)` write and remove a named output there (`S3_BUCKET` plus `S3_EXTRA_BUCKETS`; empty for
local storage). Without `bucket` every call is about the worker's own bucket or directory.

`open_storage(settings)` picks the backend; which bucket, endpoint, region and
addressing style the settings mean is `Settings.storage_target()` (bucket_endpoint.py).
Every failure is a `StorageError` whose message names the operation and key and a short cause (an S3 error code,
with a hint to check the credentials when the store refuses them; "could not
connect", "timed out"); never credentials, endpoint URLs or signatures.
`StagedWrites` records what one job puts (an `ObjectRef`: key and bucket) so a failed job removes it.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol
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
        """The key behind a URL this storage handed out (a presigned URL, expired or not, a public URL, a
        local path), or None."""
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
            tmp = self._complete_copy(path, data)
            try:
                tmp.replace(path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"could not write {key} to local storage ({exc.strerror or 'I/O error'})") from exc
        return StoredObject(key=key, url=str(path), size=len(data), content_type=content_type)

    @staticmethod
    def _complete_copy(path: Path, data: bytes) -> Path:
        """`data` in a new hidden temp file beside `path` (never listed), complete when this returns."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def put_if_absent(self, key: str, data: bytes, content_type: str) -> StoredObject | None:
        """A complete temp file hard-linked to the key: the link fails when the name exists, so two
        processes can never both create it, and the object appears only once complete."""
        path = self._path(key)
        try:
            tmp = self._complete_copy(path, data)
            try:
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
                        tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
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


def open_storage(settings: Settings) -> Storage:
    """S3 when a bucket is named (`S3_BUCKET`, or in `BUCKET_ENDPOINT_URL`), else the local directory
    `STORAGE_DIR`. Touches no network."""
    target = settings.storage_target()
    if target is not None:
        from tts_worker.s3 import S3Storage

        storage: Storage = S3Storage.from_settings(settings)
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
            audio = staged.put(job_key("output/", stem, "wav"), data, "audio/wav")
            timings = staged.put(job_key("timings/", stem, "json"), text, "application/json")
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
