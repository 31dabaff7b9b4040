"""Components whose models load after start-up, while the worker already takes jobs.

The TTS model is loaded (and, on CUDA, warmed up) before the RunPod loop starts; the normalisation grammars, the
aligner and the ASR model can load in one background thread meanwhile (`BACKGROUND_LOAD`,
docs/PERFORMANCE.md says why it is the default). A component that loads this way holds a
`Readiness`; each of its methods that needs the models calls `wait()` first, so a job that needs
them early waits for them, never fails for it, and never loads them a second time.

A load that fails in the background is fatal as a failure at start-up is: `on_failure` (the
entry point's) logs the reason and ends the process. Without one (a `Worker` built in-process, as
in tests), the error is kept and every job that needs the component fails with `ModelError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from tts_worker.errors import ModelDirError, ModelError

logger = logging.getLogger(__name__)

WAIT_SECONDS = 600.0  # a load that has not finished by then is stuck: the job fails and the worker restarts


class Readiness:
    """Whether a component's models are loaded. Starts ready unless `pending`."""

    def __init__(self, what: str, *, pending: bool = False) -> None:
        self.what = what
        self._event = threading.Event()
        self._error: BaseException | None = None
        if not pending:
            self._event.set()

    @property
    def ready(self) -> bool:
        return self._event.is_set() and self._error is None

    def done(self, error: BaseException | None = None) -> None:
        self._error = error
        self._event.set()

    def wait(self) -> None:
        """Return once the models are loaded; `ModelError` if their load failed."""
        if not self._event.is_set():
            t0 = time.perf_counter()
            if not self._event.wait(WAIT_SECONDS):
                raise ModelError(f"{self.what} did not finish loading in {WAIT_SECONDS:.0f} s; the worker will restart")
            logger.info("waited %.2f s for %s to load", time.perf_counter() - t0, self.what)
        if self._error is not None:
            raise ModelError(f"{self.what} failed to load; the worker will restart") from self._error


def load_in_background(
    steps: Sequence[tuple[Readiness, Callable[[], None]]], on_failure: Callable[[BaseException], None] | None
) -> threading.Thread:
    """Run each step's load in order in one daemon thread, marking its `Readiness` done. After a failure the
    remaining steps are marked failed too, then `on_failure` is called with the error."""

    def run() -> None:
        t0 = time.perf_counter()
        for i, (readiness, load) in enumerate(steps):
            t1 = time.perf_counter()
            try:
                load()
            except BaseException as exc:
                if not isinstance(exc, ModelDirError):
                    logger.exception("%s failed to load", readiness.what)
                for later, _ in steps[i:]:
                    later.done(exc)
                if on_failure is not None:
                    on_failure(exc)
                return
            readiness.done()
            logger.info("start-up: %s loaded in the background in %.2f s", readiness.what, time.perf_counter() - t1)
        logger.info("background models ready in %.1f s", time.perf_counter() - t0)

    thread = threading.Thread(target=run, name="background-load", daemon=True)
    thread.start()
    return thread
