"""The pipeline: what each operation does, stage by stage, given loaded models and storage.

`Worker.load(settings)` is the single loader (manifest -> F5-TTS -> aligner ->
storage -> warm-up); `Worker.run(request, job_id)` executes one validated
request and returns the result dict RunPod gets. Input validation and error
shaping are the handler's.

Every file a job stores goes through one `StagedWrites`: if any later step
fails, what the job already wrote is deleted, so storage never holds half a
result.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tts_worker import audio, subtitles, tts
from tts_worker.alignment import Aligner
from tts_worker.batching import Batcher
from tts_worker.chunking import TextChunk, split_text
from tts_worker.errors import InvalidInput, ModelDirError, StorageError, quote
from tts_worker.fetch import Fetcher
from tts_worker.manifest import load_verified
from tts_worker.schemas import (
    AlignRequest,
    DeleteVoiceRequest,
    Limits,
    ListVoicesRequest,
    Request,
    SubtitlesRequest,
    SynthesizeRequest,
    UploadVoiceRequest,
)
from tts_worker.settings import Settings
from tts_worker.storage import StagedWrites, Storage, StoredObject, check_key, open_storage
from tts_worker.voices import DEFAULT_VOICE, ReferenceCache, VoiceLibrary, reference_key
from tts_worker.words import WordTiming

logger = logging.getLogger(__name__)

CROSS_FADE = int(0.15 * tts.SAMPLE_RATE)  # samples two chunks overlap by when joined

Progress = Callable[[dict[str, Any]], None]
"""Receives progress updates of a running job (RunPod's `progress_update`)."""


Emit = Callable[[dict[str, Any]], None]
"""Receives a streaming job's partial results, each as soon as it is stored."""


def _no_progress(update: dict[str, Any]) -> None:
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

    def report(self) -> dict[str, Any]:
        return {
            "total": round(time.perf_counter() - self.started, 4),
            "stages": {k: round(v, 4) for k, v in self.stages.items()},
        }


def _stored(obj: StoredObject) -> dict[str, Any]:
    return {"key": obj.key, "url": obj.url, "size": obj.size, "content_type": obj.content_type}


def _rounded(words: list[WordTiming]) -> list[dict[str, Any]]:
    """Timings as the result shows them: milliseconds, as in the stored JSON/CSV files."""
    return [
        {
            "word": w["word"],
            "start": round(w["start"], 3),
            "end": round(w["end"], 3),
            "score": None if w["score"] is None or np.isnan(w["score"]) else round(w["score"], 3),
            "interpolated": w["interpolated"],
        }
        for w in words
    ]


class Worker:
    def __init__(
        self, settings: Settings, engine: tts.F5Engine, aligner: Aligner, storage: Storage, fetcher: Fetcher
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.aligner = aligner
        self.storage = storage
        self.fetcher = fetcher
        self.batcher = Batcher(
            engine, max_size=settings.resolved_batch_max_size(engine.device), wait_seconds=settings.batch_wait_ms / 1000
        )
        self.voices = VoiceLibrary(
            storage,
            max_seconds=settings.max_reference_seconds,
            min_seconds=settings.min_audio_seconds,
            max_input_seconds=settings.max_audio_seconds,
        )
        self.references: ReferenceCache[tts.Reference] = ReferenceCache(settings.reference_cache_entries)
        self.limits = Limits(settings.max_text_chars, settings.max_text_bytes, tuple(aligner.languages))
        # Keys a failed job wrote but could not delete (storage was down): retried before every job.
        self._orphans: list[str] = []
        self._orphans_lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings) -> Worker:
        """Verify MODEL_DIR, open storage, load and warm the models: cheap checks first, so a bad
        configuration fails in seconds. Raises ModelDirError or StorageError."""
        manifest = load_verified(settings.model_dir)
        storage = open_storage(settings)
        storage.check()
        device = settings.resolved_device()
        t0 = time.perf_counter()
        try:
            engine = tts.F5Engine.load(settings.model_dir, manifest, device)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelDirError(
                f"MODEL_DIR {settings.model_dir}: the F5-TTS model failed to load ({exc.__class__.__name__}: "
                f"{str(exc)[:200]}); re-bake it"
            ) from exc
        aligner = Aligner.load(settings.model_dir, manifest, device)
        if settings.warmup:
            # A batch runs masked attention, other kernels than a single generation: ready them too.
            engine.warmup(batch_size=settings.resolved_batch_max_size(device))
        logger.info("models ready in %.1f s", time.perf_counter() - t0)
        return cls(settings, engine, aligner, storage, Fetcher(settings, storage))

    def run(
        self, request: Request, job_id: str, progress: Progress = _no_progress, emit: Emit | None = None
    ) -> dict[str, Any]:
        """Execute one request. `emit`, when the handler streams, receives partial results."""
        self._remove_orphans()
        match request:
            case SynthesizeRequest():
                return self.synthesize(request, job_id, progress, emit)
            case AlignRequest():
                return self.align(request, job_id, progress)
            case UploadVoiceRequest():
                return self.upload_voice(request)
            case ListVoicesRequest():
                return self.list_voices(request)
            case DeleteVoiceRequest():
                return self.delete_voice(request)
        raise InvalidInput(f"operation: {request.operation!r} is not served by this worker")

    @contextlib.contextmanager
    def _staged(self) -> Iterator[StagedWrites]:
        """Writes that all stay or all go: on any failure inside the block, what was written is deleted."""
        staged = StagedWrites(self.storage)
        try:
            yield staged
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
        try:
            self.storage.delete_many(orphans)
        except StorageError:
            logger.warning("storage: still cannot remove %d objects of an earlier failed job", len(orphans))
            with self._orphans_lock:
                self._orphans += orphans
            return
        logger.info("storage: removed %d objects left by an earlier failed job", len(orphans))

    # -- synthesize -----------------------------------------------------------------------------------

    def synthesize(
        self, req: SynthesizeRequest, job_id: str, progress: Progress = _no_progress, emit: Emit | None = None
    ) -> dict[str, Any]:
        """Speak `req.text`. With `req.stream`, each chunk is stored and passed to `emit` as soon as it is
        ready (a partial result); the return value is the whole result either way."""
        if req.stream and emit is None:
            raise InvalidInput("stream: this endpoint does not stream; deploy it with STREAMING=true")
        watch = Stopwatch()
        stem = uuid.uuid4().hex
        with self._staged() as staged:  # a failed job's streamed chunks go too
            waves, chunks, batch_sizes, seed, voice = self._speak(req, job_id, stem, watch, progress, staged, emit)
            return self._finish(req, job_id, stem, watch, progress, staged, waves, chunks, batch_sizes, seed, voice)

    def _speak(
        self,
        req: SynthesizeRequest,
        job_id: str,
        stem: str,
        watch: Stopwatch,
        progress: Progress,
        staged: StagedWrites,
        emit: Emit | None,
    ) -> tuple[list[np.ndarray], list[TextChunk], list[int], int, str]:
        """Generate every chunk through the batcher: all at once, or (streaming) one after another so the
        first is out soonest."""
        with self.batcher.incoming() as incoming:
            with watch.stage("reference"):
                ref, voice = self._reference(req)
            seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
            params = tts.SamplingParams(
                nfe_steps=req.nfe_steps,
                cfg_strength=req.cfg_strength,
                sway_sampling_coef=req.sway_sampling_coef,
                speed=req.speed,
            )
            chunks = split_text(req.text, self.engine.max_chunk_bytes(ref, req.speed))
            logger.info("synthesizing %d characters in %d chunks, seed %d", len(req.text), len(chunks), seed)
            gens = [tts.Generation(ref, c.text, params, (seed + i) % 2**32) for i, c in enumerate(chunks)]
            pending = incoming.submit(gens[:1] if req.stream else gens)

        waves: list[np.ndarray] = []
        batch_sizes: list[int] = []
        vocoder = streaming = 0.0
        end = 0  # samples of the joined audio so far
        waited = time.perf_counter()
        try:
            for i in range(len(chunks)):
                out = pending[i].result()
                if len(pending) == i + 1 < len(chunks):  # streaming: the next chunk samples while this one is stored
                    pending += self.batcher.submit([gens[i + 1]])
                vocoder += out.vocoder_seconds
                batch_sizes.append(out.batch_size)
                wave = audio.shorten_pauses(out.wave, tts.SAMPLE_RATE) if req.remove_silence else out.wave
                overlap = audio.crossfade_overlap(len(waves[-1]), len(wave), CROSS_FADE) if waves else 0
                end += len(wave) - overlap
                waves.append(wave)
                progress({"stage": "synthesis", "chunk": i + 1, "chunks": len(chunks)})
                if emit is not None and req.stream:
                    t0 = time.perf_counter()
                    emit(
                        self._stream_chunk(req, job_id, stem, i, len(chunks), chunks[i], wave, end - len(wave), staged)
                    )
                    streaming += time.perf_counter() - t0
        except BaseException:
            for future in pending:  # the job is failing: drop its chunks still queued
                future.cancel()
            raise
        watch.add("vocoder", vocoder)
        # Sampling as this job saw it: from submission to its last chunk, queueing for the model included.
        watch.add("synthesis", time.perf_counter() - waited - vocoder - streaming)
        if streaming:
            watch.add("streaming", streaming)
        return waves, chunks, batch_sizes, seed, voice

    def _stream_chunk(
        self,
        req: SynthesizeRequest,
        job_id: str,
        stem: str,
        index: int,
        count: int,
        chunk: TextChunk,
        wave: np.ndarray,
        start: int,
        staged: StagedWrites,
    ) -> dict[str, Any]:
        """One chunk as a partial result: its own audio file, where it starts in the whole, and (when asked)
        its words, aligned on the chunk alone and placed on the whole's timeline."""
        data = audio.encode(wave, tts.SAMPLE_RATE, req.output_format)
        key = f"output/{stem}/chunk-{index:03d}.{req.output_format}"
        stored = staged.put(key, data, audio.FORMATS[req.output_format].content_type)
        partial: dict[str, Any] = {
            "type": "chunk",
            "job_id": job_id,
            "index": index,
            "chunks": count,
            "text": chunk.text,
            "char_start": chunk.start,
            "char_end": chunk.end,
            "audio_url": stored.url,
            "audio": _stored(stored),
            "start": round(start / tts.SAMPLE_RATE, 4),
            "duration": round(len(wave) / tts.SAMPLE_RATE, 4),
            "start_sample": start,  # where this chunk's first sample lies in the whole result's audio
            "samples": len(wave),
            "sample_rate": tts.SAMPLE_RATE,
        }
        if req.word_timings or req.subtitles:
            words = self.aligner.align(wave, tts.SAMPLE_RATE, chunk.text, [], language=req.language)
            offset = start / tts.SAMPLE_RATE
            shifted = [WordTiming(**{**w, "start": w["start"] + offset, "end": w["end"] + offset}) for w in words]
            partial["word_timings"] = _rounded(shifted)
        return partial

    def _finish(
        self,
        req: SynthesizeRequest,
        job_id: str,
        stem: str,
        watch: Stopwatch,
        progress: Progress,
        staged: StagedWrites,
        waves: list[np.ndarray],
        chunks: list[TextChunk],
        batch_sizes: list[int],
        seed: int,
        voice: str,
    ) -> dict[str, Any]:
        """Join the chunks, time the words, encode and store: the whole result."""
        with watch.stage("postprocess"):
            wave, ranges = audio.crossfade_join(waves, CROSS_FADE)
        spans = [(c.start, c.end, s, e) for c, (s, e) in zip(chunks, ranges, strict=True)]
        words = self._timings(req, wave, spans, watch, progress)
        with watch.stage("encode"):
            data = audio.encode(wave, tts.SAMPLE_RATE, req.output_format)

        result: dict[str, Any] = {"status": "completed", "operation": "synthesize", "job_id": job_id}
        if req.stream:
            result["type"] = "result"
        progress({"stage": "storage"})
        with watch.stage("storage"):
            key = f"output/{stem}.{req.output_format}"
            stored = staged.put(key, data, audio.FORMATS[req.output_format].content_type)
        result |= {"audio_url": stored.url, "audio": _stored(stored)}
        result |= self._store_subtitles(req.subtitles, words, len(wave) / tts.SAMPLE_RATE, stem, staged, watch)

        result |= {
            "storage": self.storage.name,
            "duration": round(len(wave) / tts.SAMPLE_RATE, 4),
            "sample_rate": tts.SAMPLE_RATE,
            "samples": len(wave),
            "format": req.output_format,
            "seed": seed,
            "text": req.text,
            "voice": voice,
            "chunks": [
                {
                    "index": i,
                    "text": c.text,
                    "char_start": c.start,
                    "char_end": c.end,
                    "start_sample": s,
                    "end_sample": e,
                    "batch_size": n,
                }
                for i, (c, (s, e), n) in enumerate(zip(chunks, ranges, batch_sizes, strict=True))
            ],
            "model": {"name": self.engine.name, "tiny": self.engine.tiny},
        }
        if words is not None:
            result["word_timings"] = _rounded(words)
        result["processing_time"] = watch.report()
        return result

    def _reference(self, req: SynthesizeRequest) -> tuple[tts.Reference, str]:
        """The prepared voice prompt and a label for the result; prepared references are cached by content."""
        remote = req.voice_url or req.voice_base64
        if remote is not None:
            where = "voice_url" if req.voice_url else "voice_base64"
            fetched = self.fetcher.fetch_audio(remote, field=where)
            text = req.ref_text or self._transcribe(fetched.samples, fetched.sample_rate, req.language)
            ref = self.references.get_or_create(
                reference_key(fetched.sha256, text),
                lambda: self._prepare(fetched.samples, fetched.sample_rate, text, where),
            )
            return ref, where

        name = req.voice or DEFAULT_VOICE
        key = "default-voice" if name == DEFAULT_VOICE else self.voices.cache_key(name)
        cached = self.references.get(key) if key else None
        if cached is not None:
            return cached, name
        voice = self.voices.get(name)
        samples, rate = audio.decode(voice.audio, field="voice")
        ref = self._prepare(samples, rate, voice.ref_text, "voice")
        if key:
            self.references.put(key, ref)
        return ref, name

    def _prepare(self, samples: np.ndarray, rate: int, text: str, where: str) -> tts.Reference:
        samples = audio.resample(samples, rate, tts.SAMPLE_RATE)
        return self.engine.prepare_reference(
            samples, text, max_seconds=self.settings.max_reference_seconds, field=where
        )

    def _transcribe(self, samples: np.ndarray, rate: int, language: str | None) -> str:
        text = self.aligner.transcribe(samples, rate, language)
        if not text.strip():
            raise InvalidInput("ref_text: no speech was recognised in the reference audio; send its ref_text")
        return text

    # -- timings and subtitles ------------------------------------------------------------------------

    def _timings(
        self,
        req: SynthesizeRequest | AlignRequest,
        wave: np.ndarray,
        spans: list[tuple[int, int, int, int]],
        watch: Stopwatch,
        progress: Progress,
    ) -> list[WordTiming] | None:
        if not (req.word_timings or req.subtitles):
            return None
        progress({"stage": "alignment"})
        with watch.stage("alignment"):
            return self.aligner.align(wave, tts.SAMPLE_RATE, req.text, spans, language=req.language)

    def _store_subtitles(
        self,
        spec: SubtitlesRequest | None,
        words: list[WordTiming] | None,
        duration: float,
        stem: str,
        staged: StagedWrites,
        watch: Stopwatch,
    ) -> dict[str, Any]:
        if spec is None or words is None:
            return {}
        options = subtitles.SubtitleOptions(**spec.style())
        files = {}
        for fmt in spec.formats:
            with watch.stage("subtitles"):
                data, content_type = subtitles.build(fmt, words, options, duration)
            with watch.stage("storage"):
                files[fmt] = _stored(staged.put(f"timings/{stem}.{fmt}", data, content_type))
        # `subtitles_url`: the original API's field, the first format asked for.
        return {"subtitles": files, "subtitles_url": files[spec.formats[0]]["url"]}

    # -- align ----------------------------------------------------------------------------------------

    def align(self, req: AlignRequest, job_id: str, progress: Progress = _no_progress) -> dict[str, Any]:
        watch = Stopwatch()
        with watch.stage("fetch"):
            if req.audio_key is not None:
                wave, rate = self._stored_audio(req.audio_key)
            else:
                where = "audio_url" if req.audio_url else "audio_base64"
                fetched = self.fetcher.fetch_audio(req.audio_url or req.audio_base64 or "", field=where)
                wave, rate = fetched.samples, fetched.sample_rate
            wave = audio.resample(wave, rate, tts.SAMPLE_RATE)
        words = self._timings(req, wave, [], watch, progress)
        duration = len(wave) / tts.SAMPLE_RATE
        result: dict[str, Any] = {"status": "completed", "operation": "align", "job_id": job_id}
        with self._staged() as staged:
            result |= self._store_subtitles(req.subtitles, words, duration, uuid.uuid4().hex, staged, watch)
        result |= {"storage": self.storage.name, "duration": round(duration, 4), "text": req.text}
        if words is not None:
            result["word_timings"] = _rounded(words)
        result["processing_time"] = watch.report()
        return result

    def _stored_audio(self, key: str) -> tuple[np.ndarray, int]:
        try:
            check_key(key)
        except ValueError:
            raise InvalidInput("audio_key: not a valid storage key (like output/<id>.wav)") from None
        data = self.storage.get(key)
        if data is None:
            raise InvalidInput(f"audio_key: no object {quote(key)} in storage")
        return audio.decode(data, field="audio_key")

    # -- the voice library ----------------------------------------------------------------------------

    def upload_voice(self, req: UploadVoiceRequest) -> dict[str, Any]:
        where = "voice_url" if req.voice_url else "voice_base64"
        data = self.fetcher.fetch_bytes(req.voice_url or req.voice_base64 or "", field=where)
        language = req.language

        def transcribe(samples: np.ndarray, rate: int) -> str:
            return self.aligner.transcribe(samples, rate, language)

        info = self.voices.upload(
            req.voice_name,
            data,
            req.ref_text,
            language,
            replace=req.replace,
            transcribe=transcribe if self.aligner.has_asr else None,
            field=where,
        )
        return {
            "status": f"Voice '{info.name}.wav' and reference text uploaded successfully.",
            "operation": "upload_voice",
            "voice": info.as_dict(),
        }

    def list_voices(self, req: ListVoicesRequest) -> dict[str, Any]:
        page = self.voices.list(req.limit, req.cursor)
        return {
            "status": "success",
            "operation": "list_voices",
            "voices": [
                {**v.as_dict(), "voice_file": f"{v.name}.wav", "text_file": f"{v.name}.txt"} for v in page.voices
            ],
            "count": len(page.voices),
            "next_cursor": page.next_cursor,
        }

    def delete_voice(self, req: DeleteVoiceRequest) -> dict[str, Any]:
        self.voices.delete(req.voice_name)
        return {"status": "deleted", "operation": "delete_voice", "voice_name": req.voice_name}
