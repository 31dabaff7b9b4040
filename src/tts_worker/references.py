"""The voice prompt of a synthesis job: which clip and transcript, fetched, prepared and cached.

`VoicePrompts.for_request(req)` resolves `voice` (a library name, or the built-in voice),
`voice_url` or `voice_base64` into the engine's prepared `Reference` and a label for the result.
Without `ref_text`, an `s3://` clip's transcript is the `<stem>.txt` next to it when there is one (the
original layout); any other fetched clip is transcribed with the baked ASR model.

`ReferenceCache` is a per-worker LRU of prepared references bounded by entry count
(`REFERENCE_CACHE_ENTRIES`, default 16; a prepared 12 s reference is about 1.2 MB of float32 on the
model's device, so the default holds about 20 MB). Keys come from `voices.reference_key(audio
sha256, ref_text)`; a library voice's key comes from its sidecar, so a warm job skips the download
(a voice in the original layout, without a sidecar, is downloaded and hashed, and skips the preparation).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from tts_worker import audio
from tts_worker.errors import InvalidInput
from tts_worker.voices import DEFAULT_VOICE, DEFAULT_VOICE_TEXT, VoiceLibrary, reference_key

if TYPE_CHECKING:
    from tts_worker.alignment import Aligner
    from tts_worker.engine import Engine, Reference
    from tts_worker.fetch import Fetcher
    from tts_worker.normalize import Normalizer
    from tts_worker.schemas import SynthesizeRequest
    from tts_worker.settings import Settings

T = TypeVar("T")
LONG_CLIP_HINT = (
    "only that much is used for cloning: upload a longer clip with upload_voice to have it trimmed at a pause"
)


class ReferenceCache(Generic[T]):
    """Least-recently-used prepared references, at most `max_entries` (0 disables). Thread-safe."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> T | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: T) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def get_or_create(self, key: str, create: Callable[[], T]) -> T:
        """The cached value, or `create()` stored under `key` (not under the lock: creation may be slow)."""
        value = self.get(key)
        if value is None:
            value = create()
            self.put(key, value)
        return value


class VoicePrompts:
    """Prepared voice prompts for requests, cached by content; one per worker, safe to share.

    A transcript is normalised as the request's text is (`normalize`, `language`, `lexicon`): F5-TTS maps
    the prompt's characters to its audio, and Whisper writes "1999" where the speaker said the words. The
    cache key is the clip's content and the transcript as prepared."""

    def __init__(
        self,
        engine: Engine,
        voices: VoiceLibrary,
        fetcher: Fetcher,
        aligner: Aligner,
        normalizer: Normalizer,
        settings: Settings,
    ) -> None:
        self.engine = engine
        self.voices = voices
        self.fetcher = fetcher
        self.aligner = aligner
        self.normalizer = normalizer
        self.max_seconds = settings.max_reference_seconds
        self.max_input_seconds = settings.max_audio_seconds
        self.cache: ReferenceCache[Reference] = ReferenceCache(settings.reference_cache_entries)

    def for_request(self, req: SynthesizeRequest) -> tuple[Reference, str]:
        """The prepared voice prompt and a label for the result (`voice_url`, `voice_base64` or the name)."""
        remote = req.voice_url or req.voice_base64
        if remote is not None:
            where = "voice_url" if req.voice_url else "voice_base64"
            # Only MAX_REFERENCE_SECONDS is used for cloning: a longer clip is refused while it is decoded.
            fetched = self.fetcher.fetch_audio(remote, field=where, max_seconds=self.max_seconds, hint=LONG_CLIP_HINT)
            text, text_field = req.ref_text, "ref_text"
            if text is None and req.voice_url is not None:
                text, text_field = self.fetcher.s3_transcript(req.voice_url, field=where), where
            if text is None:
                text, text_field = self._transcribe(fetched.samples, fetched.sample_rate, req.language), where
            spoken = self._spoken(text, req)
            ref = self.cache.get_or_create(
                reference_key(fetched.sha256, spoken),
                lambda: self._prepare(fetched.samples, fetched.sample_rate, spoken, where, text_field),
            )
            return ref, where

        name = req.voice or DEFAULT_VOICE
        if name == DEFAULT_VOICE:
            key: str | None = reference_key("default-voice", self._spoken(DEFAULT_VOICE_TEXT, req))
        else:
            source = self.voices.cache_source(name)
            key = reference_key(source[0], self._spoken(source[1], req)) if source else None
        cached = self.cache.get(key) if key else None
        if cached is not None:
            return cached, name
        voice = self.voices.get(name)
        spoken = self._spoken(voice.ref_text, req)
        if key is None:  # a voice in the original layout has no sidecar: key it by what was just read
            key = reference_key(hashlib.sha256(voice.audio).hexdigest(), spoken)
            cached = self.cache.get(key)
            if cached is not None:
                return cached, name
        samples, rate = audio.decode(voice.audio, field="voice", max_seconds=self.max_input_seconds)
        ref = self._prepare(samples, rate, spoken, "voice", "voice")
        self.cache.put(key, ref)
        return ref, name

    def _spoken(self, text: str, req: SynthesizeRequest) -> str:
        return self.normalizer.spoken_text(text, req.language, req.lexicon) if req.normalize else text

    def _prepare(self, samples: np.ndarray, rate: int, text: str, where: str, text_field: str) -> Reference:
        samples = audio.resample(samples, rate, self.engine.sample_rate)
        return self.engine.prepare_reference(
            samples, text, max_seconds=self.max_seconds, field=where, text_field=text_field
        )

    def _transcribe(self, samples: np.ndarray, rate: int, language: str | None) -> str:
        text = self.aligner.transcribe(samples, rate, language)
        if not text.strip():
            raise InvalidInput("ref_text: no speech was recognised in the reference audio; send its ref_text")
        return text
