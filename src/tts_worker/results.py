"""What jobs answer: one typed shape per operation (docs/API.md documents every field).

Results are plain dicts (RunPod posts them as JSON), typed as `TypedDict`s here so every place that
builds one is checked against the same shape. `stored(obj)` is the one way a stored file appears in
a result (with its content as `base64` when the job returns files inline); word timings appear as
`words.rounded` gives them. `processing_time` is the job's total in seconds, on every operation's
result (the handler adds it where an operation does not time stages), `processing_stages` the seconds
per stage (`job.Stopwatch`).
"""

from __future__ import annotations

import base64
from typing import Any, Literal, NotRequired, TypedDict

from tts_worker.storage import StoredObject
from tts_worker.words import WordTiming


class StoredFile(TypedDict):
    key: str
    url: str
    size: int
    content_type: str
    bucket: NotRequired[str]  # a named output in another bucket than the worker's (output_url)
    base64: NotRequired[str]  # the content, when the job returns its files inline


def stored(obj: StoredObject, data: bytes | None = None) -> StoredFile:
    """How a stored object appears in a result; with `data`, its content too (base64)."""
    out = StoredFile(key=obj.key, url=obj.url, size=obj.size, content_type=obj.content_type)
    if obj.bucket is not None:
        out["bucket"] = obj.bucket
    if data is not None:
        out["base64"] = base64.b64encode(data).decode("ascii")
    return out


class Subtitles(TypedDict):
    subtitles: dict[str, StoredFile]  # per requested format
    subtitles_url: str  # the original API's field: the first format asked for


class Video(TypedDict):
    video: StoredFile
    video_url: str


class ChunkInfo(TypedDict):
    index: int
    text: str  # the written text the chunk covers: text[char_start:char_end]
    spoken_text: str  # what the chunk's generation spoke
    char_start: int
    char_end: int
    start_sample: int
    end_sample: int
    batch_size: int
    quality: dict[str, Any]  # the quality guard's record of this chunk (retakes.Take.record)


class ModelInfo(TypedDict):
    name: str
    tiny: bool


class _Files(TypedDict):
    """The files an operation with a text may store besides its audio."""

    subtitles: NotRequired[dict[str, StoredFile]]
    subtitles_url: NotRequired[str]
    video: NotRequired[StoredFile]
    video_url: NotRequired[str]


class SynthesisResult(_Files):
    status: Literal["completed"]
    operation: Literal["synthesize"]
    job_id: str
    type: NotRequired[Literal["result"]]  # streaming jobs: the last item
    audio_url: str
    audio: StoredFile
    storage: str
    duration: float
    sample_rate: int
    samples: int
    format: str
    seed: int
    text: str
    spoken_text: str  # the whole text as spoken
    voice: str
    chunks: list[ChunkInfo]
    model: ModelInfo
    quality: dict[str, Any]  # the quality guard's summary (retakes.Retakes.summary)
    word_timings: NotRequired[list[WordTiming]]
    processing_time: float
    processing_stages: dict[str, float]


class StreamedChunk(TypedDict):
    """One chunk of a streaming job, as soon as it is stored."""

    type: Literal["chunk"]
    job_id: str
    index: int
    chunks: int
    text: str
    spoken_text: str
    char_start: int
    char_end: int
    audio_url: str
    audio: StoredFile
    start: float
    duration: float
    start_sample: int  # where this chunk's first sample lies in the whole result's audio
    samples: int
    sample_rate: int
    word_timings: NotRequired[list[WordTiming]]
    quality: NotRequired[dict[str, Any]]


class AlignResult(_Files):
    status: Literal["completed"]
    operation: Literal["align"]
    job_id: str
    storage: str
    duration: float
    text: str
    spoken_text: str
    quality: NotRequired[dict[str, object]]
    word_timings: NotRequired[list[WordTiming]]
    processing_time: float
    processing_stages: dict[str, float]


class UploadVoiceResult(TypedDict):
    status: str
    operation: Literal["upload_voice"]
    voice: dict[str, Any]
    warnings: list[str]  # what the upload changed about what was sent (a ref_text replaced after trimming)
    processing_time: NotRequired[float]  # set by the handler


class ListVoicesResult(TypedDict):
    status: Literal["success"]
    operation: Literal["list_voices"]
    voices: list[dict[str, Any]]
    count: int
    next_cursor: str | None
    processing_time: NotRequired[float]  # set by the handler


class DeleteVoiceResult(TypedDict):
    status: Literal["deleted"]
    operation: Literal["delete_voice"]
    voice_name: str
    processing_time: NotRequired[float]  # set by the handler


class DownloadResult(TypedDict):
    status: Literal["success"]
    operation: Literal["download"]
    key: str
    url: str  # fresh: presigned now (or the public URL), or the local path
    expires_in: int | None  # seconds the url stays valid; None: it does not expire
    size: int
    content_type: str
    storage: str
    base64: NotRequired[str]  # with `inline`
    processing_time: NotRequired[float]  # set by the handler


Result = SynthesisResult | AlignResult | UploadVoiceResult | ListVoicesResult | DeleteVoiceResult | DownloadResult
