"""The RunPod handler: validate the job input, run the pipeline, shape the result.

Every failure becomes `{"error": "<code>: <message>"}` (a string, so RunPod marks
the job FAILED) and the worker keeps serving; an unexpected exception is logged
with its traceback and answered without one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tts_worker.errors import WorkerError
from tts_worker.log import job_context
from tts_worker.pipeline import Worker
from tts_worker.schemas import parse_request

logger = logging.getLogger(__name__)

Job = dict[str, Any]


def make_handler(worker: Worker) -> Callable[[Job], dict[str, Any]]:
    def handler(job: Job) -> dict[str, Any]:
        job_id = str(job.get("id", "local"))
        with job_context(job_id):
            try:
                request = parse_request(job.get("input"), worker.limits)
                logger.info("%s started", request.operation)
                started = time.perf_counter()
                result = worker.run(request, job_id)
                logger.info("%s completed in %.2f s", request.operation, time.perf_counter() - started)
                return result
            except WorkerError as exc:
                logger.warning("failed: %s: %s", exc.code, exc.message)
                return exc.as_result()
            except Exception:
                logger.exception("unexpected failure")
                return {"error": "internal_error: the worker failed unexpectedly; the worker log has the details"}

    return handler
