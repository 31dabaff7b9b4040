"""The operations besides synthesize: `align` (timings and subtitles for audio that exists) and the
voice library's `upload_voice`, `list_voices` and `delete_voice`.

Each takes its validated request (and a `Job` where it stores files) and returns its typed result;
the components come from the worker that built the operation.
"""

from __future__ import annotations

import numpy as np

from tts_worker import audio, video
from tts_worker.alignment import Aligner
from tts_worker.comparison import Comparison
from tts_worker.errors import InvalidInput, quote
from tts_worker.fetch import Fetcher
from tts_worker.job import Job
from tts_worker.normalize import Normalized, Normalizer
from tts_worker.quality import AsrJudge, check_audio
from tts_worker.results import AlignResult, DeleteVoiceResult, ListVoicesResult, UploadVoiceResult
from tts_worker.schemas import AlignRequest, DeleteVoiceRequest, ListVoicesRequest, UploadVoiceRequest
from tts_worker.storage import Storage, check_key
from tts_worker.timings import align_words, store_subtitles
from tts_worker.voices import VoiceLibrary
from tts_worker.words import rounded


class Aligning:
    """The `align` operation."""

    def __init__(
        self, aligner: Aligner, normalizer: Normalizer, fetcher: Fetcher, storage: Storage, sample_rate: int
    ) -> None:
        self.aligner = aligner
        self.normalizer = normalizer  # the text as it was spoken, for the aligner
        self.fetcher = fetcher
        self.storage = storage
        self.sample_rate = sample_rate  # what the audio is resampled to (the engine's: the same as synthesis)

    def run(self, req: AlignRequest, job: Job) -> AlignResult:
        with job.watch.stage("fetch"):
            wave, rate = self._audio(req)
            wave = audio.resample(wave, rate, self.sample_rate)
        if req.normalize:
            norm = self.normalizer.normalize(req.text, req.language, req.lexicon)
        else:
            norm = Normalized.identity(req.text)
        words = align_words(self.aligner, job, req, norm, (wave, self.sample_rate), [])
        duration = len(wave) / self.sample_rate
        checked = None
        if req.quality is not None and req.quality.mode == "check":
            job.progress({"stage": "quality"})
            with job.watch.stage("quality"):
                judge = AsrJudge(
                    self.aligner,
                    language=req.language,
                    max_error_rate=req.quality.max_error_rate,
                    compare=Comparison(req.language, self.normalizer, req.lexicon),
                )
                checked = check_audio(judge, wave, self.sample_rate, norm.spoken)
        subs = store_subtitles(job, req.subtitles, words, duration)
        rendered = video.store(job, req, words, wave, self.sample_rate, self.fetcher)
        result = AlignResult(
            status="completed",
            operation="align",
            job_id=job.id,
            storage=self.storage.name,
            duration=round(duration, 4),
            text=req.text,
            spoken_text=norm.spoken,
            processing_time=0.0,
            processing_stages={},
        )
        if subs is not None:
            result |= subs
        if rendered is not None:
            result |= rendered
        if checked is not None:
            result["quality"] = checked
        if words is not None:
            result["word_timings"] = rounded(words)
        result["processing_time"], result["processing_stages"] = job.watch.report()
        return result

    def _audio(self, req: AlignRequest) -> tuple[np.ndarray, int]:
        if req.audio_key is not None:
            return self._stored_audio(req.audio_key)
        where = "audio_url" if req.audio_url else "audio_base64"
        fetched = self.fetcher.fetch_audio(req.audio_url or req.audio_base64 or "", field=where)
        return fetched.samples, fetched.sample_rate

    def _stored_audio(self, key: str) -> tuple[np.ndarray, int]:
        try:
            check_key(key)
        except ValueError:
            raise InvalidInput("audio_key: not a valid storage key (like output/<id>.wav)") from None
        data = self.storage.get(key)
        if data is None:
            raise InvalidInput(f"audio_key: no object {quote(key)} in storage")
        return audio.decode(data, field="audio_key")


class VoiceOperations:
    """`upload_voice`, `list_voices` and `delete_voice` on the worker's library."""

    def __init__(self, voices: VoiceLibrary, fetcher: Fetcher, aligner: Aligner) -> None:
        self.voices = voices
        self.fetcher = fetcher
        self.aligner = aligner

    def upload(self, req: UploadVoiceRequest) -> UploadVoiceResult:
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
        return UploadVoiceResult(
            status=f"Voice '{info.name}.wav' and reference text uploaded successfully.",
            operation="upload_voice",
            voice=info.as_dict(),
            warnings=info.warnings(),
        )

    def list(self, req: ListVoicesRequest) -> ListVoicesResult:
        page = self.voices.list(req.limit, req.cursor)
        return ListVoicesResult(
            status="success",
            operation="list_voices",
            voices=[
                {
                    **v.as_dict(),
                    "voice_file": f"{v.name}.wav",
                    # the original layout's transcript, when there is one (earlier versions wrote none)
                    "text_file": f"{v.name}.txt" if v.name in page.text_files else None,
                }
                for v in page.voices
            ],
            count=len(page.voices),
            next_cursor=page.next_cursor,
        )

    def delete(self, req: DeleteVoiceRequest) -> DeleteVoiceResult:
        self.voices.delete(req.voice_name)
        return DeleteVoiceResult(status="deleted", operation="delete_voice", voice_name=req.voice_name)
