"""The timing stages every operation with a text shares: align the words, then build and store the
subtitle files the request asked for.

`align_words` runs only when the request wants `word_timings`, subtitles or a video. It aligns what
was spoken (the normalised text) and reports the written words (`normalize.written_timings`). `store_subtitles` builds
each requested format from the timings with `tts_worker.subtitles` and stores it through the job as
`timings/<stem>.<format>`.
"""

from __future__ import annotations

import numpy as np

from tts_worker import subtitles
from tts_worker.alignment import Aligner
from tts_worker.job import Job
from tts_worker.normalize import Normalized, written_timings
from tts_worker.options import SubtitlesRequest
from tts_worker.results import StoredFile, Subtitles
from tts_worker.schemas import AlignRequest, SynthesizeRequest
from tts_worker.words import WordTiming

Span = tuple[int, int, int, int]
"""(char_start, char_end, start_sample, end_sample) of one chunk: where its spoken text and audio lie."""


def align_words(
    aligner: Aligner,
    job: Job,
    req: SynthesizeRequest | AlignRequest,
    norm: Normalized,
    audio: tuple[np.ndarray, int],
    spans: list[Span],
) -> list[WordTiming] | None:
    """One timing per written word of `req.text`: `norm.spoken` aligned in the (wave, sample rate) `audio`,
    each chunk inside its span (the whole audio when none), then mapped back to the written words."""
    if not (req.word_timings or req.subtitles or req.video):
        return None
    job.progress({"stage": "alignment"})
    with job.watch.stage("alignment"):
        return spoken_to_written(norm, aligner.align(*audio, norm.spoken, spans, language=req.language))


def spoken_to_written(norm: Normalized, spoken: list[WordTiming]) -> list[WordTiming]:
    """Timings of `norm.spoken`'s words as timings of the written words; unchanged when nothing was
    normalised (so `normalize: false` reports exactly what the aligner gave)."""
    if norm.spoken == norm.written:
        return spoken
    return written_timings(norm, spoken)


def store_subtitles(
    job: Job, spec: SubtitlesRequest | None, words: list[WordTiming] | None, duration: float
) -> Subtitles | None:
    if spec is None or words is None:
        return None
    options = subtitles.SubtitleOptions(**spec.style())
    files: dict[str, StoredFile] = {}
    for fmt in spec.formats:
        with job.watch.stage("subtitles"):
            data, content_type = subtitles.build(fmt, words, options, duration)
        with job.watch.stage("storage"):
            files[fmt] = job.store("timings/", fmt, data, content_type)
    return Subtitles(subtitles=files, subtitles_url=files[spec.formats[0]]["url"])
