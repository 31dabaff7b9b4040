"""The pipeline: what one job does, stage by stage, given loaded models and storage.

`Worker.load(settings)` is the single loader (manifest -> models -> warm-up);
`Worker.run(request, job_id)` executes one validated request and returns the
result dict RunPod gets. Input validation and error shaping are the handler's.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tts_worker import audio, tts
from tts_worker.chunking import split_text
from tts_worker.errors import InvalidInput, ModelDirError
from tts_worker.manifest import load_verified
from tts_worker.schemas import Limits, Request, SynthesizeRequest
from tts_worker.settings import Settings
from tts_worker.storage import LocalStorage, Storage
from tts_worker.voices import VoiceLibrary

logger = logging.getLogger(__name__)

CROSS_FADE_SECONDS = 0.15


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


class Worker:
    def __init__(self, settings: Settings, engine: tts.F5Engine, storage: Storage) -> None:
        self.settings = settings
        self.engine = engine
        self.storage = storage
        self.voices = VoiceLibrary(storage)
        self.limits = Limits(max_text_chars=settings.max_text_chars)

    @classmethod
    def load(cls, settings: Settings) -> Worker:
        """Verify MODEL_DIR, load the models, warm them. Raises ModelDirError when MODEL_DIR can't be served."""
        manifest = load_verified(settings.model_dir)
        device = settings.resolved_device()
        t0 = time.perf_counter()
        try:
            engine = tts.F5Engine.load(settings.model_dir, manifest, device)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelDirError(
                f"MODEL_DIR {settings.model_dir}: the F5-TTS model failed to load ({exc.__class__.__name__}: "
                f"{str(exc)[:200]}); re-bake it"
            ) from exc
        if settings.warmup:
            engine.warmup()
        logger.info("models ready in %.1f s", time.perf_counter() - t0)
        return cls(settings, engine, LocalStorage(settings.storage_dir))

    def run(self, request: Request, job_id: str) -> dict[str, Any]:
        if isinstance(request, SynthesizeRequest):
            return self.synthesize(request, job_id)
        raise InvalidInput(f"operation: {request.operation!r} is not served by this worker")

    def synthesize(self, req: SynthesizeRequest, job_id: str) -> dict[str, Any]:
        watch = Stopwatch()
        with watch.stage("reference"):
            voice = self.voices.get(req.voice)
            samples, rate = audio.decode(voice.audio, field="voice")
            samples = audio.resample(samples, rate, tts.SAMPLE_RATE)
            ref = self.engine.prepare_reference(
                samples, voice.ref_text, max_seconds=self.settings.max_reference_seconds
            )
        seed = req.seed if req.seed is not None else secrets.randbelow(2**31)
        params = tts.SamplingParams(
            nfe_steps=req.nfe_steps,
            cfg_strength=req.cfg_strength,
            sway_sampling_coef=req.sway_sampling_coef,
            speed=req.speed,
        )
        chunks = split_text(req.text, self.engine.max_chunk_bytes(ref, req.speed))
        logger.info("synthesizing %d characters in %d chunks, seed %d", len(req.text), len(chunks), seed)

        waves = []
        for i, chunk in enumerate(chunks):
            out = self.engine.generate(ref, chunk.text, params, seed=(seed + i) % 2**32)
            watch.add("synthesis", out.sample_seconds)
            watch.add("vocoder", out.vocoder_seconds)
            waves.append(audio.shorten_pauses(out.wave, tts.SAMPLE_RATE) if req.remove_silence else out.wave)

        with watch.stage("postprocess"):
            wave, ranges = audio.crossfade_join(waves, int(CROSS_FADE_SECONDS * tts.SAMPLE_RATE))
        with watch.stage("encode"):
            data = audio.encode(wave, tts.SAMPLE_RATE, req.output_format)
        with watch.stage("storage"):
            key = f"output/{uuid.uuid4().hex}.{req.output_format}"
            stored = self.storage.put(key, data, audio.FORMATS[req.output_format].content_type)

        return {
            "status": "completed",
            "operation": "synthesize",
            "job_id": job_id,
            "audio_url": stored.url,
            "audio": {"key": stored.key, "url": stored.url, "size": stored.size, "content_type": stored.content_type},
            "storage": self.storage.name,
            "duration": round(len(wave) / tts.SAMPLE_RATE, 4),
            "sample_rate": tts.SAMPLE_RATE,
            "samples": len(wave),
            "format": req.output_format,
            "seed": seed,
            "text": req.text,
            "voice": voice.name,
            "chunks": [
                {
                    "index": i,
                    "text": c.text,
                    "char_start": c.start,
                    "char_end": c.end,
                    "start_sample": s,
                    "end_sample": e,
                }
                for i, (c, (s, e)) in enumerate(zip(chunks, ranges, strict=True))
            ],
            "model": {"name": self.engine.name, "tiny": self.engine.tiny},
            "processing_time": watch.report(),
        }
