"""The `download` operation (the original API's file downloader): a stored file again, by key or by a URL
this worker returned earlier, with a fresh URL or its content.

A URL is mapped back to its key by the storage (`Storage.key_of`): a presigned URL of the worker's
bucket at its endpoint (its signature and expiry are ignored, so an expired one works), a URL under
`S3_PUBLIC_BASE_URL`, or a path in the local storage directory. Only keys under `output/`, `timings/`
and `voices/` are served. With `inline`, the content comes back as base64, for files up to
`INLINE_MAX_BYTES` (7 MiB: 9.8 MB of base64, inside RunPod's 10 MB answer, `outputs.RESULT_MAX_BYTES`).
"""

from __future__ import annotations

import base64
import mimetypes

from tts_worker import audio, subtitles
from tts_worker.errors import InvalidInput
from tts_worker.results import DownloadResult
from tts_worker.schemas import DownloadRequest
from tts_worker.storage import PREFIXES, Storage, check_key

INLINE_MAX_BYTES = 7 * 1024 * 1024


def content_type(key: str) -> str:
    """The content type the worker stores a file of this name with, for a backend that records none
    (local files); else a guess from the extension."""
    ext = key.rpartition(".")[2].lower()
    if ext in audio.FORMATS:
        return audio.FORMATS[ext].content_type
    if ext in subtitles.CONTENT_TYPES:
        return subtitles.CONTENT_TYPES[ext]
    if ext == "txt":  # a voice's transcript
        return "text/plain"
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class Downloads:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def run(self, req: DownloadRequest) -> DownloadResult:
        field, key = self._key(req)
        if not key.startswith(PREFIXES):
            raise InvalidInput(f"{field}: only files under {', '.join(PREFIXES)} are served")
        obj = self.storage.stat(key)
        if obj is None:
            raise InvalidInput(f"{field}: there is no file {key!r} in storage")
        result = DownloadResult(
            status="success",
            operation="download",
            key=key,
            url=obj.url,
            expires_in=self.storage.url_expiry,
            size=obj.size,
            content_type=obj.content_type or content_type(key),
            storage=self.storage.name,
        )
        if req.inline:
            if obj.size > INLINE_MAX_BYTES:
                raise InvalidInput(
                    f"inline: {key} is {obj.size / 1024 / 1024:.1f} MiB; files come inline up to "
                    f"{INLINE_MAX_BYTES // 1024 // 1024} MiB (RunPod's answer limit); fetch its url instead"
                )
            data = self.storage.get(key)
            if data is None:
                raise InvalidInput(f"{field}: there is no file {key!r} in storage")
            result["base64"] = base64.b64encode(data).decode("ascii")
        return result

    def _key(self, req: DownloadRequest) -> tuple[str, str]:
        if req.url is not None:
            key = self.storage.key_of(req.url)
            if key is None:
                raise InvalidInput(
                    "url: is not a URL this worker returned (one of its bucket at its endpoint or public base URL, "
                    "or a path in its storage directory)"
                )
            return "url", key
        assert req.key is not None
        try:
            return "key", check_key(req.key.strip())
        except ValueError:
            raise InvalidInput("key: is not a valid storage key (like output/<id>.wav)") from None
