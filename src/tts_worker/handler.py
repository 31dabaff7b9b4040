"""The RunPod handler: validate the job input, run the pipeline, shape the result.

Every result has `processing_time`, the job's seconds: synthesize and align time their stages and
set it, and the handler sets it for the other operations.

Every failure becomes `{"error": "<code>: <message>"}` (a string, so RunPod marks
the job FAILED) and the worker keeps serving; an unexpected exception is logged
with its traceback and answered without one. The field a message names is
written as the request sent it (`parsing.name_fields`: `local_voice`, not `voice`).

`make_handler` is the synchronous handler (tests, `--test_input`);
`make_async_handler` runs it in a thread so RunPod's loop can hold up to
`MAX_CONCURRENCY` jobs at once: their downloads, alignment and uploads overlap,
and their chunks are sampled in shared batches (batching.py).

`make_streaming_handler` (STREAMING=true) is an async generator: a request with
`stream` yields each chunk as it is stored, then the whole result; any other
request yields just the whole result. RunPod posts each yield to the job's
stream and, with `return_aggregate_stream`, returns them all as a list from
/runsync. A failed job yields its error last, and RunPod marks it FAILED.

Every handler gives the heap's freed memory back to the OS when its last job in
flight ends (heap.py), so a warm worker's resident set stays flat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tts_worker.errors import WorkerError
from tts_worker.heap import IdleTrim
from tts_worker.log import job_context
from tts_worker.parsing import name_fields, parse_request
from tts_worker.pipeline import Emit, Worker
from tts_worker.schemas import Request

logger = logging.getLogger(__name__)

Job = dict[str, Any]
ProgressHook = Callable[[Job, dict[str, Any]], None]


def make_handler(worker: Worker, progress: ProgressHook | None = None) -> Callable[[Job], dict[str, Any]]:
    """`progress(job, update)` receives each job's progress updates (RunPod's `progress_update`)."""
    heap = IdleTrim()

    def handler(job: Job) -> dict[str, Any]:
        return _handle(worker, job, progress, None, heap)

    return handler


def _handle(
    worker: Worker, job: Job, progress: ProgressHook | None, emit: Emit | None, heap: IdleTrim
) -> dict[str, Any]:
    job_id = str(job.get("id", "local"))

    def report(update: dict[str, Any]) -> None:
        if progress is not None:
            progress(job, update)

    with job_context(job_id), heap.job():
        request: Request | None = None
        try:
            request = parse_request(job.get("input"), worker.limits)
            logger.info("%s started", request.operation)
            started = time.perf_counter()
            result: dict[str, Any] = dict(worker.run(request, job_id, report, emit))
            seconds = time.perf_counter() - started
            # Every result carries its time (the original API's field); synthesize and align set theirs.
            result.setdefault("processing_time", round(seconds, 4))
            logger.info("%s completed in %.2f s", request.operation, seconds)
            return result
        except WorkerError as exc:
            # The stages name fields canonically; the user reads the names they sent (local_voice, ...).
            message = name_fields(exc.message, request.sent_names) if request is not None else exc.message
            logger.warning("failed: %s: %s", exc.code, message)
            return exc.as_result(message)
        except Exception:
            logger.exception("unexpected failure")
            return {"error": "internal_error: the worker failed unexpectedly; the worker log has the details"}


def make_async_handler(
    worker: Worker, progress: ProgressHook | None = None
) -> Callable[[Job], Awaitable[dict[str, Any]]]:
    heap = IdleTrim()

    async def async_handler(job: Job) -> dict[str, Any]:
        return await asyncio.to_thread(_handle, worker, job, progress, None, heap)

    return async_handler


def make_streaming_handler(
    worker: Worker, progress: ProgressHook | None = None, on_refresh: Callable[[], None] | None = None
) -> Callable[[Job], AsyncIterator[dict[str, Any]]]:
    """The handler for STREAMING=true. RunPod's generator path drops a result's `refresh_worker`, so a
    model failure calls `on_refresh` instead (which sets it in the worker's config)."""
    heap = IdleTrim()

    async def streaming_handler(job: Job) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        partials: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def emit(partial: dict[str, Any]) -> None:  # from the job's thread
            loop.call_soon_threadsafe(partials.put_nowait, partial)

        done = asyncio.ensure_future(asyncio.to_thread(_handle, worker, job, progress, emit, heap))
        while True:
            getter = asyncio.ensure_future(partials.get())
            await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            yield getter.result()
        while not partials.empty():  # emitted just before the job returned
            yield partials.get_nowait()
        result = done.result()
        if result.pop("refresh_worker", False) and on_refresh is not None:
            on_refresh()
        yield result

    return streaming_handler
