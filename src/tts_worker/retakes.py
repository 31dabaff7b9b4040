"""The quality guard's retry loop: each chunk's take judged, failed chunks sampled again, the best kept.

`Retakes(gens, submit, judge, policy, progress)` runs one job's chunks through `submit` (the batcher's
`Incoming.submit` / `Batcher.submit`: `list[Generation] -> list[Future[ChunkAudio]]`), so first takes
and retries batch with whatever else is queued. `judge(index, take, text) -> quality.Verdict` is any
callable (the worker's `quality.AsrJudge`, or a deterministic one in tests).

    mode off    the generations go out as given and the judge is never called (byte-identical to no guard)
    mode check  every take is judged and reported, never re-sampled
    mode retry  a take that fails is sampled again with the chunk's next seed, up to `max_attempts`
                takes; the first take that passes is kept, else the best (`Verdict.score`, then the
                earlier attempt). A chunk that never passes is not an error: its record says `passed: false`

With the guard on (check, retry), chunks of a few words get a minimum generated duration
(`quality.short_input_speed`), as the judge expects.

Seed schedule: take `a` (1-based) of chunk `i` of `n` uses `(seed_i + (a - 1) * n) % 2**32`, where
`seed_i` is the seed the chunk came with: today's `(seed + i) % 2**32`. So attempt 1 is what the worker
always sampled, attempt `a` of every chunk lies in the block `[seed + (a - 1) n, seed + a n)`, and no retry
ever reuses another chunk's (or another attempt's) seed while `max_attempts * n < 2**32`. The same request
and seed give the same takes, hence the same choices and the same audio.

Usage (batch): `start()` inside the batcher's `incoming()` block, then `settle_all()`. Streaming: `start([0])`,
then `settle(i, prefetch=i + 1)` per chunk, which submits chunk i+1 as soon as chunk i's first take is back
and judges (and retries) chunk i before it is emitted. Used as a context manager, or whenever a settle
call raises, every take still queued is cancelled.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tts_worker.engine import ChunkAudio, Generation
from tts_worker.quality import Policy, Verdict, reference_rate, short_input_speed

logger = logging.getLogger(__name__)

Submit = Callable[[list[Generation]], list[Future[ChunkAudio]]]
Judge = Callable[[int, ChunkAudio, str], Verdict]
Progress = Callable[[dict[str, Any]], None]


def _no_progress(update: dict[str, Any]) -> None:
    pass


def attempt_seed(first_seed: int, attempt: int, chunks: int) -> int:
    """The seed of take `attempt` (1-based) of a chunk whose first take used `first_seed`, in a job of
    `chunks` chunks (see the module docstring)."""
    return (first_seed + (attempt - 1) * chunks) % 2**32


@dataclass(frozen=True)
class Take:
    index: int
    attempt: int
    seed: int
    audio: ChunkAudio
    verdict: Verdict | None  # None when the judge is off
    accepted: bool | None  # passed the judge and max_error_rate; None when off

    def record(self, attempts: int) -> dict[str, Any]:
        """The chunk's `quality` in the result."""
        v = self.verdict
        return {
            "attempts": attempts,
            "seed": self.seed,
            "error_rate": v.error_rate if v else None,
            "transcript": v.transcript if v else None,
            "passed": self.accepted,
            "reasons": list(v.reasons) if v else [],
        }


class Retakes:
    """One job's chunks through judge and retries; not thread-safe (one job thread drives it)."""

    def __init__(
        self, gens: list[Generation], submit: Submit, judge: Judge, policy: Policy, progress: Progress = _no_progress
    ) -> None:
        self.gens = gens
        self.policy = policy
        self._submit_fn = submit
        self._judge = judge
        self._progress = progress
        self._pending: dict[int, tuple[int, Future[ChunkAudio]]] = {}  # chunk -> (attempt, its future)
        self._takes: dict[int, list[Take]] = {i: [] for i in range(len(gens))}
        self._chosen: dict[int, Take] = {}
        self.judge_seconds = 0.0  # time spent judging, a share of the job's synthesis time

    def __enter__(self) -> Retakes:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None:
            self.cancel()

    def generation(self, index: int, attempt: int) -> Generation:
        """What take `attempt` of chunk `index` samples: the chunk as given when the guard is off."""
        gen = self.gens[index]
        if self.policy.mode == "off":
            return gen
        speed = short_input_speed(gen.text, reference_rate(gen.ref), gen.params.speed)
        params = gen.params if speed == gen.params.speed else dataclasses.replace(gen.params, speed=speed)
        return dataclasses.replace(gen, params=params, seed=attempt_seed(gen.seed, attempt, len(self.gens)))

    def start(self, indices: Iterable[int] | None = None) -> None:
        """Submit the first takes of these chunks (all by default) in one call, so they can share a batch."""
        todo = [i for i in (range(len(self.gens)) if indices is None else indices) if not self._started(i)]
        self._submit([(i, 1) for i in todo])

    def settle(self, index: int, prefetch: int | None = None) -> Take:
        """Chunk `index`'s kept take, judged and retried as the policy says. `prefetch`: a chunk whose
        first take is submitted as soon as this chunk's first take is back (streaming's look-ahead)."""
        try:
            self.start([index])
            while index not in self._chosen:
                retry = self._collect(index)
                if prefetch is not None and prefetch < len(self.gens):
                    self.start([prefetch])
                self._submit(retry)
            return self._chosen[index]
        except BaseException:
            self.cancel()
            raise

    def settle_all(self) -> list[Take]:
        """Every chunk's kept take, in order. Takes are judged as they come back; the retries of all the
        takes back by then go out in one submit call, so they can share a batch."""
        try:
            self.start()
            while self._pending:
                wait([future for _, future in self._pending.values()], return_when=FIRST_COMPLETED)
                retries: list[tuple[int, int]] = []
                while done := sorted(i for i, (_, future) in self._pending.items() if future.done()):
                    for index in done:  # judging takes a while: what came back meanwhile joins this round
                        retries += self._collect(index)
                self._submit(retries)
            return [self._chosen[i] for i in range(len(self.gens))]
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Drop every take still queued (the job is failing)."""
        for _, future in self._pending.values():
            future.cancel()

    def record(self, index: int) -> dict[str, Any]:
        """A settled chunk's `quality` in the result (and in its streamed partial)."""
        return self._chosen[index].record(len(self._takes[index]))

    def records(self) -> list[dict[str, Any]]:
        """Each settled chunk's `quality` record, in chunk order."""
        return [self.record(i) for i in sorted(self._chosen)]

    def summary(self) -> dict[str, Any]:
        """The job's `quality`: `passed` is null when off; a failed chunk does not fail the job."""
        chosen = [self._chosen[i] for i in sorted(self._chosen)]
        rates = [t.verdict.error_rate for t in chosen if t.verdict and t.verdict.error_rate is not None]
        judged = self.policy.mode != "off"
        return {
            "mode": self.policy.mode,
            "passed": all(t.accepted for t in chosen) if judged else None,
            "worst_error_rate": max(rates) if rates else None,
            "retried_chunks": sum(len(self._takes[t.index]) > 1 for t in chosen),
            "failed_chunks": [t.index for t in chosen if judged and not t.accepted],
        }

    # -- inside --------------------------------------------------------------------------------------

    def _started(self, index: int) -> bool:
        return index in self._pending or bool(self._takes[index]) or index in self._chosen

    def _submit(self, todo: list[tuple[int, int]]) -> None:
        if not todo:
            return
        futures = self._submit_fn([self.generation(i, a) for i, a in todo])
        for (i, a), future in zip(todo, futures, strict=True):
            self._pending[i] = (a, future)

    def _collect(self, index: int) -> list[tuple[int, int]]:
        """Take chunk `index`'s pending take (waiting for it), judge it, and keep it; or return the next
        attempt to submit as `[(index, attempt)]`."""
        attempt, future = self._pending[index]
        audio = future.result()  # the batcher's error (ModelError) propagates
        del self._pending[index]
        gen = self.generation(index, attempt)
        update: dict[str, Any] = {"stage": "synthesis", "chunk": index + 1, "chunks": len(self.gens)}
        if self.policy.mode == "off":
            take = Take(index, attempt, gen.seed, audio, None, None)
        else:
            t0 = time.perf_counter()
            verdict = self._judge(index, audio, gen.text)
            self.judge_seconds += time.perf_counter() - t0
            accepted = verdict.passed and (verdict.error_rate or 0.0) <= self.policy.max_error_rate
            take = Take(index, attempt, gen.seed, audio, verdict, accepted)
            update |= {"attempt": attempt, "passed": accepted}
            if not accepted:
                logger.info(
                    "chunk %d take %d (seed %d) failed: %s", index, attempt, gen.seed, ", ".join(verdict.reasons)
                )
        self._takes[index].append(take)
        self._progress(update)
        if take.accepted is not False or self.policy.mode != "retry" or attempt >= self.policy.max_attempts:
            self._chosen[index] = max(self._takes[index], key=_rank)
            return []
        return [(index, attempt + 1)]


def _rank(take: Take) -> tuple[bool, float, int]:
    """Passed takes first, then the best score, then the earliest attempt."""
    return (bool(take.accepted), take.verdict.score if take.verdict else 0.0, -take.attempt)
