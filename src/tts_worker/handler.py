"""The RunPod handler: validate the job input, run the pipeline, shape the result.

Every failure becomes `{"error": "<code>: <message>"}` (a string, so RunPod marks
the job FAILED) and the worker keeps serving; an unexpected exception is logged
with its traceback and answered without one.

`make_handler` is the synchronous handler (tests, `--test_input`);
`make_async_handler` runs it in a thread so RunPod's loop can hold up to
`MAX_CONCURRENCY` jobs at once: their downloads, alignment and uploads overlap,
while generation itself runs one chunk at a time (the engine's lock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tts_worker.errors import WorkerError
from tts_worker.log import job_context
from tts_worker.pipeline import Worker
from tts_worker.schemas import parse_request

logger = logging.getLogger(__name__)

Job = dict[str, Any]


def make_handler(
    worker: Worker, progress: Callable[[Job, dict[str, Any]], None] | None = None
) -> Callable[[Job], dict[str, Any]]:
    """`progress(job, update)` receives each job's progress updates (RunPod's `progress_update`)."""

    def handler(job: Job) -> dict[str, Any]:
        job_id = str(job.get("id", "local"))

        def report(update: dict[str, Any]) -> None:
            if progress is not None:
                progress(job, update)

        with job_context(job_id):
            try:
                request = parse_request(job.get("input"), worker.limits)
                logger.info("%s started", request.operation)
                started = time.perf_counter()
                result = worker.run(request, job_id, report)
                logger.info("%s completed in %.2f s", request.operation, time.perf_counter() - started)
                return result
            except WorkerError as exc:
                logger.warning("failed: %s: %s", exc.code, exc.message)
                return exc.as_result()
            except Exception:
                logger.exception("unexpected failure")
                return {"error": "internal_error: the worker failed unexpectedly; the worker log has the details"}

    return handler


def make_async_handler(
    worker: Worker, progress: Callable[[Job, dict[str, Any]], None] | None = None
) -> Callable[[Job], Awaitable[dict[str, Any]]]:
    handler = make_handler(worker, progress)

    async def async_handler(job: Job) -> dict[str, Any]:
        return await asyncio.to_thread(handler, job)

    return async_handler
