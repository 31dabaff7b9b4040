"""Cross-request batching: chunks of concurrent jobs sampled as one tensor batch.

With `MAX_CONCURRENCY` > 1 several jobs are in flight on one worker. Each job hands
all its chunks to the `Batcher` at once; one thread takes what is queued (oldest
first, up to `BATCH_MAX_SIZE` generations that share their sampling parameters)
and runs it through the engine's `generate_batch`, so N chunks cost about one forward
pass per step instead of N. A job arriving while a batch runs waits for the next
one, so batches form by themselves under load.

When the engine is idle the first job starts at once, unless another job has
announced itself (`Batcher.incoming`, entered before the job prepares its voice)
and has not submitted yet: then the batch waits up to `BATCH_WAIT_MS` for it. That
is what makes jobs that arrive together (RunPod hands them out together) share a
batch.

On a CPU a batch is slower than its items one after another (the cores are busy
with one item already, and the padding mask sends attention to torch's unfused
path), so `BATCH_MAX_SIZE` defaults to 1 there and to 4 on CUDA.

Every item's noise is seeded by its own seed, so a job's audio does not depend on
what it was batched with beyond float rounding (about 1e-7 on CPU); run alone, or
with `BATCH_MAX_SIZE=1`, the same request gives the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tts_worker.engine import ChunkAudio, Engine, Generation

if TYPE_CHECKING:
    from tts_worker.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Queued:
    gen: Generation
    future: Future[ChunkAudio]


class Incoming:
    """A job that will submit generations: `Batcher.incoming()` hands one out."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self.submitted = False

    def submit(self, gens: list[Generation]) -> list[Future[ChunkAudio]]:
        """Queue `gens`; their futures resolve as their batches finish. The first call ends the
        announcement (a streaming job submits again, a chunk at a time)."""
        first, self.submitted = not self.submitted, True
        return self._batcher._enqueue(gens, announced=first)


class Batcher:
    def __init__(self, engine: Engine, *, max_size: int, wait_seconds: float) -> None:
        self.engine = engine
        self.max_size = max_size
        self.wait_seconds = wait_seconds
        self._cond = threading.Condition()
        self._queue: list[_Queued] = []
        self._announced = 0  # jobs inside `incoming()` that have not submitted yet
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> Batcher:
        """`BATCH_MAX_SIZE` (by default per device) and `BATCH_WAIT_MS`."""
        return cls(
            engine,
            max_size=settings.resolved_batch_max_size(engine.device),
            wait_seconds=settings.batch_wait_ms / 1000,
        )

    @contextlib.contextmanager
    def incoming(self) -> Iterator[Incoming]:
        """Announce a job from before it prepares its voice until it submits (or fails)."""
        job = Incoming(self)
        with self._cond:
            self._announced += 1
        try:
            yield job
        finally:
            if not job.submitted:
                with self._cond:
                    self._announced -= 1
                    self._cond.notify_all()

    def submit(self, gens: list[Generation]) -> list[Future[ChunkAudio]]:
        """Queue generations of a job that did not announce itself."""
        return self._enqueue(gens, announced=False)

    def _enqueue(self, gens: list[Generation], *, announced: bool) -> list[Future[ChunkAudio]]:
        queued = [_Queued(g, Future()) for g in gens]
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tts-batcher", daemon=True)
                self._thread.start()
            self._queue += queued
            if announced:
                self._announced -= 1
            self._cond.notify_all()
        return [q.future for q in queued]

    def _take(self) -> list[_Queued]:
        """The oldest queued item and the next ones that can share its batch (called with the lock)."""
        key = self._queue[0].gen.batch_key
        batch = [q for q in self._queue if q.gen.batch_key == key][: self.max_size]
        taken = {id(q) for q in batch}
        self._queue = [q for q in self._queue if id(q) not in taken]
        return batch

    def _fillable(self) -> bool:
        key = self._queue[0].gen.batch_key
        return sum(q.gen.batch_key == key for q in self._queue) < self.max_size

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                deadline = time.monotonic() + self.wait_seconds
                while self._announced > 0 and self._fillable():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = self._take()
            live = [q for q in batch if q.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                outs = self.engine.generate_batch([q.gen for q in live])
            except Exception as exc:  # the jobs report it (ModelError asks RunPod for a new worker)
                for q in live:
                    q.future.set_exception(exc)
                continue
            if len(live) > 1:
                logger.debug("sampled %d generations in one batch in %.2f s", len(live), outs[0].sample_seconds)
            for q, out in zip(live, outs, strict=True):
                q.future.set_result(out)
