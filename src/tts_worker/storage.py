"""Where outputs and the voice library live, behind one small protocol.

Keys are relative, `/`-separated (`output/<uuid>.wav`, `voices/<name>.wav`).
A backend makes an object visible only once it is complete, and refuses keys
that could escape its root. Backends: `LocalStorage` (a directory, the default
when no bucket is configured).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tts_worker.errors import StorageError

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


@dataclass(frozen=True)
class StoredObject:
    key: str
    url: str  # where a client fetches it: a presigned/public URL, or a local path
    size: int
    content_type: str


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # POSIX timestamp


class Storage(Protocol):
    name: str

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject: ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> list[ObjectInfo]: ...


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """Objects as files under `root`; writes go to a temp file in the same directory, then rename."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
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
