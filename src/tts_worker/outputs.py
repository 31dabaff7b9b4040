"""Where a job's files go, and whether they come back inside its result.

`output_of(request, storage, stem, inline)` gives the job's `job.Output`:

- by default each file is `output/<stem>.<ext>` or `timings/<stem>.<ext>` in the worker's bucket;
- `output_key` (`output/dir/name.wav`) names the audio, and its subtitles and video go next to it
  (`output/dir/name.srt`, `.mp4`); `output_prefix` (`output/dir/`) puts every file at `<prefix><stem>.<ext>`;
- `output_url` (the original API's `audio_url`, `s3://bucket/dir/name.wav`) names the audio in the
  worker's bucket or one listed in `S3_EXTRA_BUCKETS`, its other files next to it as for `output_key`.

A named output replaces an object already at that key (the original API overwrote too); a job that
then fails deletes what it wrote there, as it does with every file. In the worker's own bucket a
named output may not go under `voices/` (the library) and `output_key`/`output_prefix` stay under
`output/`.

Files inline: with `return_base64`, or on RunPod without a bucket (`inline_reason`), every stored file
also appears in the result as base64. RunPod answers at most `RESULT_MAX_BYTES` of JSON (its
documented payload limit of /run, the smaller of /run's 10 MB and /runsync's 20 MB:
docs.runpod.io/serverless/references/operations), so `check_size` fails a larger result with
`ResultTooLarge`, naming what to change; the job's files are then deleted like any failed job's.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from tts_worker.audio import FORMATS
from tts_worker.errors import InvalidInput, ResultTooLarge
from tts_worker.job import Emit, Output
from tts_worker.storage import check_key

if TYPE_CHECKING:
    from tts_worker.schemas import Request
    from tts_worker.settings import Settings
    from tts_worker.storage import Storage

logger = logging.getLogger(__name__)

RESULT_MAX_BYTES = 10_000_000
BUCKET_SETTINGS = (
    "S3_BUCKET with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL (or RunPod's "
    "BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY)"
)
NO_BUCKET = "no-bucket"  # inline because the worker runs on RunPod without a bucket
SETTING = "setting"  # inline because INLINE_FILES=on


# -- the rules of a place a request names (the schema's validators of output_key, output_prefix, output_url) --

_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


def parse_s3_url(value: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; ValueError when it is not one."""
    if not value.lower().startswith("s3://"):
        raise ValueError("not an s3:// URL")
    bucket, _, key = value[5:].partition("/")
    if not _BUCKET.match(bucket) or not key:
        raise ValueError("not s3://bucket/key")
    return bucket, key


def _named_key(key: str, example: str) -> str:
    """The rules of a key a request chooses for its audio: a valid storage key with no `..` anywhere, ending
    in an output format's extension."""
    try:
        check_key(key)
    except ValueError:
        raise ValueError(
            f"is not a valid key: '/'-separated names of letters, digits, '.', '_' and '-', like {example}"
        ) from None
    if ".." in key:
        raise ValueError(f"must not contain '..', like {example}")
    if key.rpartition(".")[2].lower() not in FORMATS:
        raise ValueError(
            f"must end in the audio format's extension ({', '.join('.' + f for f in FORMATS)}), like {example}"
        )
    return key


def output_key_rule(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if not value.startswith("output/") or value == "output/":
            raise ValueError("should be a key under output/, like output/stories/chapter-1.wav")
        _named_key(value, "output/stories/chapter-1.wav")
    return value


def output_prefix_rule(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().rstrip("/") + "/"
        if not value.startswith("output/"):
            raise ValueError("should be a prefix under output/, like output/stories/")
        try:
            check_key(value.rstrip("/"))
        except ValueError:
            raise ValueError(
                "is not a valid prefix: '/'-separated names of letters, digits, '.', '_' and '-', like output/stories/"
            ) from None
        if ".." in value:
            raise ValueError("must not contain '..', like output/stories/")
    return value


def output_url_rule(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        where = "s3://bucket/key.wav in the worker's bucket (S3_BUCKET) or one listed in S3_EXTRA_BUCKETS"
        try:
            _, key = parse_s3_url(value)
        except ValueError:
            raise ValueError(f"should be an s3:// URL to store the audio at, {where}") from None
        _named_key(key, "s3://bucket/stories/chapter-1.wav")
    return value


# -- the job's Output ----------------------------------------------------------------------------------


def inline_reason(settings: Settings, storage: Storage) -> str | None:
    """Why every job's files go inline (`NO_BUCKET`, `SETTING`), or None when only a request's
    `return_base64` asks for it. Logged once, at start."""
    if settings.inline_files == "on":
        logger.info("results: every job's files are also returned inline as base64 (INLINE_FILES=on)")
        return SETTING
    if settings.inline_files == "auto" and settings.on_runpod() and storage.name == "local":
        logger.warning(
            "results: files are returned inline as base64, since this worker runs on RunPod without a bucket "
            "and no client can reach its disk; results over %g MB fail. For URLs, configure %s",
            RESULT_MAX_BYTES / 1_000_000,
            BUCKET_SETTINGS,
        )
        return NO_BUCKET
    return None


def output_of(request: Request, storage: Storage, stem: str, reason: str | None) -> Output:
    """The `Output` of a job for `request`; `InvalidInput` naming the field when its place can't be used."""
    inline = reason is not None or bool(getattr(request, "return_base64", False))
    key, prefix, url = (getattr(request, f, None) for f in ("output_key", "output_prefix", "output_url"))
    if key is not None:
        return Output(base=_base(key), inline=inline)
    if prefix is not None:
        return Output(base=prefix + stem, inline=inline)
    if url is not None:
        bucket, key = _bucket_and_key(url, storage)
        return Output(base=_base(key), bucket=bucket, inline=inline)
    return Output(inline=inline)


def _base(key: str) -> str:
    return key.rpartition(".")[0]


def _bucket_and_key(url: str, storage: Storage) -> tuple[str | None, str]:
    """(bucket, key) of an `output_url`; bucket None for the worker's own."""
    bucket, key = parse_s3_url(url)
    if not storage.buckets:
        raise InvalidInput(
            "output_url: storing at an s3:// URL needs S3 storage, and this worker has no bucket configured"
        )
    if bucket not in storage.buckets:
        raise InvalidInput(
            f"output_url: bucket {bucket!r} is not one this worker writes to (S3_BUCKET or S3_EXTRA_BUCKETS)"
        )
    if bucket == storage.bucket:
        if key.startswith("voices/"):
            raise InvalidInput("output_url: voices/ holds the voice library; store the audio under another key")
        return None, key
    return bucket, key


class Tally:
    """The JSON bytes of a streaming job's partial results: with `return_aggregate_stream` RunPod answers
    them all, with the result, in one list."""

    def __init__(self) -> None:
        self.bytes = 0

    def counting(self, emit: Emit) -> Emit:
        def counted(partial: dict[str, Any]) -> None:
            self.bytes += len(json.dumps(partial)) + 2  # and its separator in the list
            emit(partial)

        return counted


def check_size(result: Any, reason: str | None, streamed: int = 0) -> None:
    """`ResultTooLarge` when `result` (with its files inline), after `streamed` bytes of partial results,
    is more JSON than RunPod answers."""
    size = len(json.dumps(result)) + streamed
    if size <= RESULT_MAX_BYTES:
        return
    mb, limit = size / 1_000_000, RESULT_MAX_BYTES / 1_000_000
    what = "the result with the chunks streamed before it" if streamed else "the result"
    too_large = f"with its files inline {what} is {mb:.2f} MB, more than the {limit:g} MB RunPod answers with"
    if reason == NO_BUCKET:
        raise ResultTooLarge(
            f"result: {too_large} (this worker has no bucket, so its files can only travel inside the result); "
            f"configure a bucket to get URLs instead: {BUCKET_SETTINGS}"
        )
    if reason == SETTING:
        raise ResultTooLarge(f"result: {too_large}; set INLINE_FILES=auto to get URLs from the bucket instead")
    raise ResultTooLarge(f"return_base64: {too_large}; leave return_base64 out and fetch the files from their URLs")
