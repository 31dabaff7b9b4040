"""Logging with the job id on every line.

`job_context(job_id)` binds the id for the code running the job; a filter adds
it to every record, so modules just use `logging.getLogger(__name__)`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")


class _JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job_id.get()
        return True


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_JobIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [job %(job_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("tts_worker").setLevel(level)
