"""What jobs answer: one typed shape per operation (docs/API.md documents every field).

Results are plain dicts (RunPod posts them as JSON), typed as `TypedDict`s here so every place that
builds one is checked against the same shape. `stored(obj)` is the one way a stored file appears in
a result; word timings appear as `words.rounded` gives them.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from tts_worker.storage import StoredObject
from tts_worker.words import WordTiming


class StoredFile(TypedDict):
    key: str
    url: str
    size: int
    content_type: str


def stored(obj: StoredObject) -> StoredFile:
    return StoredFile(key=obj.key, url=obj.url, size=obj.size, content_type=obj.content_type)


class ProcessingTime(TypedDict):
    total: float
    stages: dict[str, float]


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


class SynthesisResult(TypedDict):
    status: Literal["completed"]
    operation: Literal["synthesize"]
    job_id: str
    type: NotRequired[Literal["result"]]  # streaming jobs: the last item
    audio_url: str
    audio: StoredFile
    subtitles: NotRequired[dict[str, StoredFile]]
    subtitles_url: NotRequired[str]
    video: NotRequired[StoredFile]
    video_url: NotRequired[str]
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
    processing_time: ProcessingTime


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


class AlignResult(TypedDict):
    status: Literal["completed"]
    operation: Literal["align"]
    job_id: str
    subtitles: NotRequired[dict[str, StoredFile]]
    subtitles_url: NotRequired[str]
    video: NotRequired[StoredFile]
    video_url: NotRequired[str]
    storage: str
    duration: float
    text: str
    spoken_text: str
    quality: NotRequired[dict[str, object]]
    word_timings: NotRequired[list[WordTiming]]
    processing_time: ProcessingTime


class UploadVoiceResult(TypedDict):
    status: str
    operation: Literal["upload_voice"]
    voice: dict[str, Any]


class ListVoicesResult(TypedDict):
    status: Literal["success"]
    operation: Literal["list_voices"]
    voices: list[dict[str, Any]]
    count: int
    next_cursor: str | None


class DeleteVoiceResult(TypedDict):
    status: Literal["deleted"]
    operation: Literal["delete_voice"]
    voice_name: str


Result = SynthesisResult | AlignResult | UploadVoiceResult | ListVoicesResult | DeleteVoiceResult
