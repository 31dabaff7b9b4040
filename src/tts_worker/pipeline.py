"""The worker: its components, loaded once, and the dispatcher that runs each job's operation.

`Worker.load(settings)` is the single loader (manifest -> storage -> engine -> aligner -> warm-up) and
the one place where settings become components; `Worker.run(request, job_id)` runs one validated
request with a fresh `Job` and returns the typed result RunPod gets. Input validation and error
shaping are the handler's; what each operation does is its module's:

    synthesize                               synthesis.Synthesizer
    align                                    operations.Aligning
    upload_voice, list_voices, delete_voice  operations.VoiceOperations
    download                                 downloads.Downloads

Every file a job stores goes through its `Job`'s `StagedWrites`, to the place `outputs.output_of` gives
it: if any later step fails (the result too large to return its files inline included), what the job
already wrote is deleted (when storage is down then, before the next job), so storage never holds
half a result.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from tts_worker import outputs
from tts_worker.alignment import Aligner
from tts_worker.batching import Batcher
from tts_worker.downloads import Downloads
from tts_worker.engine import Engine, load_engine
from tts_worker.errors import InvalidInput, ModelDirError
from tts_worker.fetch import Fetcher
from tts_worker.job import Emit, Job, Progress, no_progress
from tts_worker.manifest import load_verified
from tts_worker.normalize import Normalizer
from tts_worker.operations import Aligning, VoiceOperations
from tts_worker.quality import Policy
from tts_worker.readiness import load_in_background
from tts_worker.references import VoicePrompts
from tts_worker.results import Result
from tts_worker.schemas import (
    AlignRequest,
    DeleteVoiceRequest,
    DownloadRequest,
    Limits,
    ListVoicesRequest,
    Request,
    SynthesizeRequest,
    UploadVoiceRequest,
)
from tts_worker.settings import Settings
from tts_worker.storage import ObjectRef, StagedWrites, Storage, delete_refs, open_storage
from tts_worker.synthesis import Synthesizer
from tts_worker.voices import VoiceLibrary

logger = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        aligner: Aligner,
        storage: Storage,
        fetcher: Fetcher,
        normalizer: Normalizer | None = None,
    ) -> None:
        self.settings = settings
        # Without baked grammars (a model directory from before normalisation): lexicons only.
        self.normalizer = normalizer or Normalizer({})
        self.engine = engine
        self.aligner = aligner
        self.storage = storage
        self.fetcher = fetcher
        self.batcher = Batcher.from_settings(engine, settings)
        self.voices = VoiceLibrary.from_settings(storage, settings)
        self.prompts = VoicePrompts(engine, self.voices, fetcher, aligner, self.normalizer, settings)
        quality = Policy(settings.resolved_quality_mode(engine.device), settings.quality_max_attempts)
        self.synthesizer = Synthesizer(engine, self.batcher, aligner, self.prompts, self.normalizer, fetcher, quality)
        self.aligning = Aligning(aligner, self.normalizer, fetcher, storage, engine.sample_rate)
        self.voice_operations = VoiceOperations(self.voices, fetcher, aligner)
        self.downloads = Downloads(storage)
        self.limits = Limits(settings.max_text_chars, settings.max_text_bytes, tuple(aligner.languages))
        self.inline = outputs.inline_reason(settings, storage)  # why every job returns its files inline, if it does
        # What a failed job wrote but could not delete (storage was down): retried before every job.
        self._orphans: list[ObjectRef] = []
        self._orphans_lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings, on_failure: Callable[[BaseException], None] | None = None) -> Worker:
        """Verify MODEL_DIR, open storage, load and warm the TTS model: cheap checks first, so a bad
        configuration fails in seconds. The grammars, aligner and ASR load after the TTS model, in the
        background with `settings.background_load` (`on_failure` is called if that load fails; see
        readiness.py). Raises ModelDirError or StorageError."""
        t0 = time.perf_counter()
        manifest = load_verified(settings.model_dir)
        storage = open_storage(settings)
        storage.check()
        device = settings.resolved_device()
        t1 = time.perf_counter()
        try:
            engine = load_engine(settings.model_dir, manifest, device)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelDirError(
                f"MODEL_DIR {settings.model_dir}: the {manifest.tts.name} model failed to load "
                f"({exc.__class__.__name__}: {str(exc)[:200]}); re-bake it"
            ) from exc
        t2 = time.perf_counter()
        if settings.resolved_warmup(device):
            # A batch runs masked attention, other kernels than a single generation: ready them too.
            engine.warmup(batch_size=settings.resolved_batch_max_size(device))
        t3 = time.perf_counter()
        # Loaded after the warm-up: on a CPU a background load would take the warm-up's cores and the GIL.
        deferred = settings.background_load
        normalizer = None
        if manifest.components.normalize is not None:
            normalizer = Normalizer.from_manifest(settings.model_dir, manifest, deferred=deferred)
        else:
            logger.warning("MODEL_DIR has no normalisation grammars (baked before them): only lexicons apply")
        aligner = Aligner.load(settings.model_dir, manifest, device, deferred=deferred)
        if deferred:  # normalisation first: every synthesis needs it before sampling, timings only after
            steps = [(aligner.readiness, aligner.load_models)]
            if normalizer is not None:
                steps.insert(0, (normalizer.readiness, normalizer.load_grammars))
            load_in_background(steps, on_failure)
        t4 = time.perf_counter()
        logger.info(
            "start-up: manifest and storage %.2f s, %s (model code and weights) %.2f s, warm-up %.2f s, %s %.2f s",
            t1 - t0,
            engine.name,
            t2 - t1,
            t3 - t2,
            "background load started" if deferred else "grammars, aligner and ASR",
            t4 - t3,
        )
        logger.info("models ready in %.1f s%s", t4 - t0, " (the rest loads in the background)" if deferred else "")
        return cls(settings, engine, aligner, storage, Fetcher(settings, storage), normalizer)

    def run(self, request: Request, job_id: str, progress: Progress = no_progress, emit: Emit | None = None) -> Result:
        """Execute one request. `emit`, when the handler streams, receives partial results."""
        self._remove_orphans()
        with self._job(job_id, progress, emit) as job:
            job.output = outputs.output_of(request, self.storage, job.stem, self.inline)
            streamed = outputs.Tally()
            if job.output.inline and job.emit is not None:
                job.emit = streamed.counting(job.emit)
            result = self._dispatch(request, job)
            if job.output.inline:
                outputs.check_size(result, self.inline, streamed.bytes)
            return result

    def _dispatch(self, request: Request, job: Job) -> Result:
        match request:
            case SynthesizeRequest():
                return self.synthesizer.run(request, job)
            case AlignRequest():
                return self.aligning.run(request, job)
            case UploadVoiceRequest():
                return self.voice_operations.upload(request)
            case ListVoicesRequest():
                return self.voice_operations.list(request)
            case DeleteVoiceRequest():
                return self.voice_operations.delete(request)
            case DownloadRequest():
                return self.downloads.run(request)
        raise InvalidInput(f"operation: {request.operation!r} is not served by this worker")

    @contextlib.contextmanager
    def _job(self, job_id: str, progress: Progress, emit: Emit | None) -> Iterator[Job]:
        """A job whose writes all stay or all go: on any failure inside the block, what it wrote is deleted."""
        staged = StagedWrites(self.storage)
        try:
            yield Job(job_id, staged, progress, emit)
        except BaseException:
            left = staged.rollback()
            with self._orphans_lock:
                self._orphans += left
            raise
        staged.commit()

    def _remove_orphans(self) -> None:
        with self._orphans_lock:
            orphans, self._orphans = self._orphans, []
        if not orphans:
            return
        left = delete_refs(self.storage, orphans)
        if left:
            logger.warning("storage: still cannot remove %d objects of an earlier failed job", len(left))
            with self._orphans_lock:
                self._orphans += left
            return
        logger.info("storage: removed %d objects left by an earlier failed job", len(orphans))
