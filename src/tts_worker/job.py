"""One job in flight: its id, the stem its files share, its stopwatch, its progress and its writes.

`Job` is what every operation's stages receive instead of a list of loose values. Everything a job
stores goes through `job.store(...)`, which records the key in the job's `StagedWrites`: the worker
commits them when the job succeeds and deletes them when it fails (`pipeline.Worker`), so storage
never holds half a result.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tts_worker.results import StoredFile, stored
from tts_worker.storage import JobPrefix, StagedWrites, job_key, named_key, new_stem

Progress = Callable[[dict[str, Any]], None]
"""Receives progress updates of a running job (RunPod's `progress_update`)."""

Emit = Callable[[dict[str, Any]], None]
"""Receives a streaming job's partial results, each as soon as it is stored."""


def no_progress(update: dict[str, Any]) -> None:
    pass


@dataclass
class Stopwatch:
    """Seconds per stage, summed over repeats, plus the total since creation."""

    stages: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def report(self) -> tuple[float, dict[str, float]]:
        """(total seconds since creation, seconds per stage), rounded as results carry them."""
        return round(time.perf_counter() - self.started, 4), {k: round(v, 4) for k, v in self.stages.items()}


@dataclass(frozen=True)
class Output:
    """Where a job's files go. By default each is `<prefix><stem>.<ext>` (`storage.job_key`) in the worker's
    bucket; a request that names its output (`outputs.output_of`) gives the `base` every file shares
    (`storage.named_key`) and maybe another bucket."""

    base: str | None = None
    bucket: str | None = None  # None: the worker's own
    inline: bool = False  # every stored file also appears in the result as base64


@dataclass
class Job:
    id: str
    staged: StagedWrites
    progress: Progress = no_progress
    emit: Emit | None = None  # set when the handler streams partial results
    stem: str = field(default_factory=new_stem)
    watch: Stopwatch = field(default_factory=Stopwatch)
    output: Output = field(default_factory=Output)

    def store(
        self, prefix: JobPrefix, extension: str, data: bytes, content_type: str, *, part: str | None = None
    ) -> StoredFile:
        """Put one of the job's files where `output` says; the caller times it."""
        if self.output.base is None:
            key = job_key(prefix, self.stem, extension, part=part)
        else:
            key = named_key(self.output.base, extension, part=part)
        obj = self.staged.put(key, data, content_type, bucket=self.output.bucket)
        return stored(obj, data if self.output.inline else None)
