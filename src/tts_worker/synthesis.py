"""The synthesize operation, stage by stage, around one `Synthesis` object per request.

Stages, in order (each a method of `Synthesizer`; `Synthesis` carries what they produce):

    1. voice      the prepared voice prompt (`references.VoicePrompts`), timed as `reference`
    2. normalise  the text as it is spoken ("$3.50" -> "three dollars fifty cents"), mapped back to
                  the written words (`normalize.Normalizer`; `normalize: false` speaks it as written)
    3. plan       the spoken text split into chunks the engine can speak in one generation each
                  (`normalize.split_spoken` within `Engine.max_chunk_bytes`; each chunk keeps its
                  written range), one seeded `Generation` per chunk: seed + chunk index
    4. generate   every chunk through the `Batcher` (all at once, or, streaming, one after another so
                  the first is out soonest), judged and re-sampled by the quality guard
                  (`retakes.Retakes` with `quality.AsrJudge`, as the request's `quality` says); each
                  kept take is post-processed and (streaming) stored and emitted as a partial result
    5. join       chunks joined with a cross-fade; each chunk's sample range recorded
    6. timings    the spoken words aligned inside each chunk's range and reported as the written
                  words, subtitles built (`timings`)
    7. store      audio encoded and stored, the video rendered when asked (`video`), the result assembled
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

import numpy as np

from tts_worker import audio, video
from tts_worker.alignment import Aligner
from tts_worker.batching import Batcher
from tts_worker.chunking import split_text
from tts_worker.comparison import Comparison
from tts_worker.engine import ChunkAudio, Engine, Generation, Reference, SamplingParams
from tts_worker.errors import InvalidInput
from tts_worker.fetch import Fetcher
from tts_worker.job import Job
from tts_worker.normalize import Normalized, Normalizer, SpokenChunk, split_spoken
from tts_worker.quality import AsrJudge, Policy, reference_rate
from tts_worker.references import VoicePrompts
from tts_worker.results import ChunkInfo, StreamedChunk, SynthesisResult
from tts_worker.retakes import Retakes, Submit
from tts_worker.schemas import SynthesizeRequest
from tts_worker.timings import align_words, spoken_to_written, store_subtitles
from tts_worker.words import WordTiming, rounded

logger = logging.getLogger(__name__)

CROSS_FADE_SECONDS = 0.15  # two chunks overlap by this much when joined


@dataclass
class Synthesis:
    """One synthesize request in flight: what the stages have produced so far."""

    req: SynthesizeRequest
    job: Job
    seed: int
    voice: str = ""  # label of the voice for the result
    ref: Reference | None = None
    norm: Normalized | None = None  # the text as spoken, mapped to the written words
    chunks: list[SpokenChunk] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)
    waves: list[np.ndarray] = field(default_factory=list)  # post-processed, one per chunk
    batch_sizes: list[int] = field(default_factory=list)
    end: int = 0  # samples of the joined audio so far
    retakes: Retakes | None = None  # the quality guard's takes of every chunk

    @property
    def streaming(self) -> bool:
        return self.req.stream and self.job.emit is not None


class Synthesizer:
    def __init__(
        self,
        engine: Engine,
        batcher: Batcher,
        aligner: Aligner,
        prompts: VoicePrompts,
        normalizer: Normalizer,
        fetcher: Fetcher,
        quality: Policy,
    ) -> None:
        self.quality = quality  # the guard's defaults (QUALITY_MODE, QUALITY_MAX_ATTEMPTS)
        self.engine = engine
        self.batcher = batcher
        self.aligner = aligner
        self.prompts = prompts
        self.normalizer = normalizer
        self.fetcher = fetcher  # for a video's background image
        self.cross_fade = int(CROSS_FADE_SECONDS * engine.sample_rate)

    def run(self, req: SynthesizeRequest, job: Job) -> SynthesisResult:
        """Speak `req.text`. Streaming, each chunk is stored and passed to `job.emit` as soon as it is
        ready; the return value is the whole result either way."""
        if req.stream and job.emit is None:
            raise InvalidInput("stream: this endpoint does not stream; deploy it with STREAMING=true")
        syn = Synthesis(req, job, seed=req.seed if req.seed is not None else secrets.randbelow(2**31))
        with self.batcher.incoming() as incoming:  # announced before the voice is ready: batches wait for it
            with job.watch.stage("reference"):
                syn.ref, syn.voice = self.prompts.for_request(req)
            self._plan(syn)
            syn.retakes = self._retakes(syn, incoming.submit)
            syn.retakes.start([0] if req.stream else None)
        self._generate(syn, syn.retakes)
        return self._finish(syn)

    # -- 2-3. normalise, plan -------------------------------------------------------------------------

    def _plan(self, syn: Synthesis) -> None:
        req, ref = syn.req, syn.ref
        assert ref is not None
        params = SamplingParams(
            nfe_steps=req.nfe_steps,
            cfg_strength=req.cfg_strength,
            sway_sampling_coef=req.sway_sampling_coef,
            speed=req.speed,
        )
        budget = self.engine.max_chunk_bytes(ref, req.speed)
        if req.normalize:
            with syn.job.watch.stage("normalize"):
                syn.norm = self.normalizer.normalize(req.text, req.language, req.lexicon)
            syn.chunks = split_spoken(syn.norm, budget)
        else:  # spoken as written: exactly the chunks (and so the audio) of a worker without normalisation
            syn.norm = Normalized.identity(req.text)
            syn.chunks = [SpokenChunk(c.text, c.start, c.end, c.start, c.end) for c in split_text(req.text, budget)]
        syn.generations = [Generation(ref, c.text, params, (syn.seed + i) % 2**32) for i, c in enumerate(syn.chunks)]
        logger.info("synthesizing %d characters in %d chunks, seed %d", len(req.text), len(syn.chunks), syn.seed)

    # -- 4. generate --------------------------------------------------------------------------------

    def _retakes(self, syn: Synthesis, submit: Submit) -> Retakes:
        req, ref = syn.req, syn.ref
        assert ref is not None
        policy = Policy.of(req.quality, self.quality.mode, self.quality.max_attempts)
        judge = AsrJudge(
            self.aligner,
            language=req.language,
            max_error_rate=policy.max_error_rate,
            compare=Comparison(req.language, self.normalizer, req.lexicon),
            chars_per_second=reference_rate(ref),
            speed=req.speed,
            sample_rate=self.engine.sample_rate,
        )
        return Retakes(syn.generations, submit, judge, policy, syn.job.progress)

    def _generate(self, syn: Synthesis, retakes: Retakes) -> None:
        """Each chunk's kept take, in order (streaming: judged and emitted one by one while the next samples).
        The retakes report each take as progress; on a failure, their queued takes are cancelled."""
        watch = syn.job.watch
        vocoder = streaming = 0.0
        waited = time.perf_counter()
        with retakes:
            takes = None if syn.req.stream else retakes.settle_all()
            for i in range(len(syn.chunks)):
                out = retakes.settle(i, prefetch=i + 1).audio if takes is None else takes[i].audio
                vocoder += out.vocoder_seconds
                self._add_chunk(syn, out)
                if syn.streaming:
                    t0 = time.perf_counter()
                    self._stream_chunk(syn, i)
                    streaming += time.perf_counter() - t0
        watch.add("vocoder", vocoder)
        # Sampling as this job saw it: from submission to its last chunk, queueing for the model included.
        watch.add("synthesis", time.perf_counter() - waited - vocoder - streaming - retakes.judge_seconds)
        if retakes.judge_seconds:
            watch.add("quality", retakes.judge_seconds)
        if streaming:
            watch.add("streaming", streaming)

    def _add_chunk(self, syn: Synthesis, out: ChunkAudio) -> None:
        wave = audio.shorten_pauses(out.wave, self.engine.sample_rate) if syn.req.remove_silence else out.wave
        overlap = audio.crossfade_overlap(len(syn.waves[-1]), len(wave), self.cross_fade) if syn.waves else 0
        syn.end += len(wave) - overlap
        syn.waves.append(wave)
        syn.batch_sizes.append(out.batch_size)

    def _stream_chunk(self, syn: Synthesis, index: int) -> None:
        """Chunk `index` as a partial result: its own audio file, where it starts in the whole, and (when
        asked) its words, aligned on the chunk alone and placed on the whole's timeline."""
        req, wave, chunk, rate = syn.req, syn.waves[index], syn.chunks[index], self.engine.sample_rate
        start = syn.end - len(wave)
        data = audio.encode(wave, rate, req.output_format)
        stored = syn.job.store(
            "output/", req.output_format, data, audio.FORMATS[req.output_format].content_type, part=f"chunk-{index:03d}"
        )
        partial = StreamedChunk(
            type="chunk",
            job_id=syn.job.id,
            index=index,
            chunks=len(syn.chunks),
            text=req.text[chunk.start : chunk.end],
            spoken_text=chunk.text,
            char_start=chunk.start,
            char_end=chunk.end,
            audio_url=stored["url"],
            audio=stored,
            start=round(start / rate, 4),
            duration=round(len(wave) / rate, 4),
            start_sample=start,
            samples=len(wave),
            sample_rate=rate,
        )
        if req.word_timings or req.subtitles:
            assert syn.norm is not None
            words = self._chunk_words(syn.norm.part(chunk.start, chunk.end), chunk, wave, req.language)
            offset = start / rate
            partial["word_timings"] = rounded(
                [WordTiming(**{**w, "start": w["start"] + offset, "end": w["end"] + offset}) for w in words]
            )
        assert syn.retakes is not None
        partial["quality"] = syn.retakes.record(index)
        assert syn.job.emit is not None
        syn.job.emit(dict(partial))

    def _chunk_words(self, part: Normalized, chunk: SpokenChunk, wave: np.ndarray, language: str) -> list[WordTiming]:
        """A streamed chunk's written words, aligned on its audio alone. A written word longer than a chunk
        (cut across chunks) has no written form inside one: the chunk's spoken words are reported then."""
        if part.spoken != chunk.text:
            return self.aligner.align(wave, self.engine.sample_rate, chunk.text, [], language=language)
        return spoken_to_written(
            part, self.aligner.align(wave, self.engine.sample_rate, part.spoken, [], language=language)
        )

    # -- 5-7. join, timings, store --------------------------------------------------------------------

    def _finish(self, syn: Synthesis) -> SynthesisResult:
        req, job, rate, retakes = syn.req, syn.job, self.engine.sample_rate, syn.retakes
        assert retakes is not None
        with job.watch.stage("postprocess"):
            wave, ranges = audio.crossfade_join(syn.waves, self.cross_fade)
        spans = [(c.spoken_start, c.spoken_end, s, e) for c, (s, e) in zip(syn.chunks, ranges, strict=True)]
        assert syn.norm is not None
        words = align_words(self.aligner, job, req, syn.norm, (wave, rate), spans)
        with job.watch.stage("encode"):
            data = audio.encode(wave, rate, req.output_format)
        job.progress({"stage": "storage"})
        with job.watch.stage("storage"):
            stored = job.store("output/", req.output_format, data, audio.FORMATS[req.output_format].content_type)
        subs = store_subtitles(job, req.subtitles, words, len(wave) / rate)
        rendered = video.store(job, req, words, wave, rate, self.fetcher)
        result = SynthesisResult(
            status="completed",
            operation="synthesize",
            job_id=job.id,
            audio_url=stored["url"],
            audio=stored,
            storage=job.staged.storage.name,
            duration=round(len(wave) / rate, 4),
            sample_rate=rate,
            samples=len(wave),
            format=req.output_format,
            seed=syn.seed,
            text=req.text,
            spoken_text=syn.norm.spoken,
            voice=syn.voice,
            chunks=[
                ChunkInfo(
                    index=i,
                    text=req.text[c.start : c.end],
                    spoken_text=c.text,
                    char_start=c.start,
                    char_end=c.end,
                    start_sample=s,
                    end_sample=e,
                    batch_size=n,
                    quality=q,
                )
                for i, (c, (s, e), n, q) in enumerate(
                    zip(syn.chunks, ranges, syn.batch_sizes, retakes.records(), strict=True)
                )
            ],
            quality=retakes.summary(),
            model={"name": self.engine.name, "tiny": self.engine.tiny},
            processing_time=0.0,
            processing_stages={},
        )
        if req.stream:
            result["type"] = "result"
        if subs is not None:
            result |= subs
        if rendered is not None:
            result |= rendered
        if words is not None:
            result["word_timings"] = rounded(words)
        # last: the total includes everything above
        result["processing_time"], result["processing_stages"] = job.watch.report()
        return result
