"""The voice library: reference clips and their transcripts, kept in storage.

    voices/<name>.wav    the reference audio: mono 24 kHz PCM-16, at most 12 s
    voices/<name>.txt    its transcript, the original API's layout (read when there is no sidecar)
    voices/<name>.json   sidecar: {"name", "ref_text", "language", "duration", "sample_rate",
                         "sha256" (of the .wav), "created" (ISO 8601 UTC), "trimmed_from",
                         "ref_text_source" ("given" or "transcribed"), "replaced_ref_text"}

A bucket in the original layout (.wav + .txt, no sidecar) is a library as it is: such voices are
listed and used, and nothing rewrites their files; a sidecar is only written by an upload or the
import command.

`default` (no voice given) is the English clip that ships with f5_tts; the name is reserved.

Operations (`VoiceLibrary`): `get(name)`, `upload(...)`, `list(limit, cursor)`,
`info(name)`, `delete(name)`, `cache_key(name)`.

`upload` makes the clip and its text what the library stores with `voice_clip.prepare_clip`: mono
24 kHz, trimmed to at most 12 s at a pause, a text made stale by the trim (kept in the sidecar as
`replaced_ref_text`, and `VoiceInfo.warnings` says so) or missing transcribed with `transcribe`, and
nothing synthesis would refuse.

Write order: a replaced voice's sidecar and .txt are removed first, then the
audio is written, then the .txt (from here on the pair is a voice in the
original layout, with the right text), then the sidecar, which completes it;
if a write fails, what this upload wrote is deleted. A failed upload therefore
never leaves a voice that looks usable with the wrong text.

Concurrent uploads of one name: with `replace` false exactly one succeeds; the
others are refused naming `voice_name`. Within a library (one worker) the
existence check and the writes of a name run under one of `NAME_LOCKS` striped
locks (a fixed table: nothing grows per name), which also serialises replacing
uploads and deletes of that name. Between workers, the new voice's audio is
created with `Storage.put_if_absent` (S3 `If-None-Match: *`): the audio is the
claim, so the loser writes nothing, and a failed upload releases the name by
deleting the audio it created. Replacing uploads of one name in two workers at
once are not ordered; should their writes interleave, the stored sidecar's
sha256 no longer matches the audio, and `get` refuses the voice
(`voice_not_found`, upload it again) rather than pair audio with another
upload's text.

For library voices `cache_key(name)` computes the prepared-reference cache key
(`reference_key`) from the sidecar alone, so a warm job skips the
audio download and the decode/resample/normalise step.

This module imports no torch. `python -m tts_worker.voices import DIR` (in
`tts_worker.voice_import`) brings a directory in the original layout into the library.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sys
import threading
import zlib
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from tts_worker import audio
from tts_worker.errors import InvalidInput, StorageError, VoiceNotFound
from tts_worker.schemas import voice_name
from tts_worker.storage import Storage
from tts_worker.voice_clip import SAMPLE_RATE, Transcriber, prepare_clip

if TYPE_CHECKING:
    from tts_worker.settings import Settings

# Named for the module also when run as `python -m tts_worker.voices`, so the package's log level applies.
logger = logging.getLogger("tts_worker.voices")

DEFAULT_VOICE = "default"
PREFIX = "voices/"
MAX_REFERENCE_SECONDS = 12.0
MAX_REF_TEXT_CHARS = 1000
SIDECAR_VERSION = 1
DEFAULT_VOICE_TEXT = "Some call me nature, others call me mother nature."
NAME_LOCKS = 64  # striped per-name locks of one library


def default_voice() -> tuple[bytes, str]:
    """The English reference clip that ships with f5_tts, and its transcript (a data file; no code imported)."""
    clip = files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")
    return clip.read_bytes(), DEFAULT_VOICE_TEXT


@dataclass(frozen=True)
class Voice:
    name: str
    audio: bytes
    ref_text: str


@dataclass(frozen=True)
class VoiceInfo:
    """A library voice's metadata (what list/upload answer). Fields are None for a seed-layout voice
    that has only a .txt transcript."""

    name: str
    ref_text: str
    language: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    sha256: str | None = None
    created: str | None = None
    trimmed_from: float | None = None  # the uploaded clip's duration, when it was trimmed
    ref_text_source: str | None = None  # "given" with the upload, or "transcribed"
    replaced_ref_text: str | None = None  # a given text that trimming made stale, replaced by a transcript

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warnings(self) -> list[str]:
        """What the upload changed about what was sent."""
        if self.replaced_ref_text is None:
            return []
        return [
            f"ref_text: the clip was trimmed from {self.trimmed_from:g} s to {self.duration:g} s at a pause, so "
            "the ref_text sent no longer matched it; the voice uses a transcript of the kept part instead "
            "(the sent text is kept as replaced_ref_text)"
        ]


@dataclass(frozen=True)
class VoicePage:
    voices: list[VoiceInfo]
    next_cursor: str | None  # pass back as `cursor` for the next page; None on the last page
    text_files: frozenset[str] = frozenset()  # names of the listed voices that have a voices/<name>.txt


def audio_key(name: str) -> str:
    return f"{PREFIX}{name}.wav"


def sidecar_key(name: str) -> str:
    return f"{PREFIX}{name}.json"


def text_key(name: str) -> str:
    return f"{PREFIX}{name}.txt"


def checked_name(name: object, field: str = "voice_name") -> str:
    """A valid library name (the job boundary's rule, `schemas.voice_name`), or InvalidInput naming `field`."""
    if not isinstance(name, str):
        raise InvalidInput(f"{field}: should be a string")
    try:
        checked = voice_name(name)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}") from None
    if checked.lower() == DEFAULT_VOICE:
        raise InvalidInput(f"{field}: {DEFAULT_VOICE!r} is the built-in voice's name and cannot be uploaded")
    return checked


def reference_key(audio_sha256: str, ref_text: str) -> str:
    """Cache key of a prepared reference: the audio's content hash and the text it is prepared with."""
    text = hashlib.sha256(" ".join(ref_text.split()).encode("utf-8")).hexdigest()
    return f"ref:{audio_sha256}:{text[:32]}"


class VoiceLibrary:
    def __init__(
        self,
        storage: Storage,
        *,
        max_seconds: float = MAX_REFERENCE_SECONDS,
        min_seconds: float = 1.0,
        max_input_seconds: float = 300.0,
    ) -> None:
        self._storage = storage
        self.max_seconds = max_seconds
        self.min_seconds = min_seconds
        self.max_input_seconds = max_input_seconds
        self._locks = [threading.Lock() for _ in range(NAME_LOCKS)]

    def _lock(self, name: str) -> threading.Lock:
        return self._locks[zlib.crc32(name.encode("utf-8")) % NAME_LOCKS]

    @classmethod
    def from_settings(cls, storage: Storage, settings: Settings) -> VoiceLibrary:
        return cls(
            storage,
            max_seconds=settings.max_reference_seconds,
            min_seconds=settings.min_audio_seconds,
            max_input_seconds=settings.max_audio_seconds,
        )

    def get(self, name: str | None) -> Voice:
        if name is None or name == DEFAULT_VOICE:
            audio, text = default_voice()
            return Voice(DEFAULT_VOICE, audio, text)
        for _ in range(2):  # a read racing a replace can see the old audio and the new sidecar: read again
            stored = self._storage.get(audio_key(name))
            if stored is None:
                raise VoiceNotFound(f"voice: no voice named {name!r} in the library (upload it with upload_voice)")
            text, sha256 = self._ref_text(name)
            if sha256 is None or sha256 == hashlib.sha256(stored).hexdigest():
                return Voice(name, stored, text)
        logger.warning("voices: the audio of %s does not match its sidecar's sha256", name)
        raise VoiceNotFound(
            f"voice: the stored audio and text of {name!r} come from different uploads (two uploads of it "
            "overlapped); upload it again"
        )

    def _ref_text(self, name: str) -> tuple[str, str | None]:
        """The voice's transcript and the sha256 its sidecar records for the audio (None without one)."""
        sidecar = self._storage.get(sidecar_key(name))
        sha256 = None
        if sidecar is not None:
            try:
                meta = json.loads(sidecar)
                text, sha256 = str(meta.get("ref_text") or ""), meta.get("sha256")
            except (ValueError, AttributeError):
                text = ""
        else:
            raw = self._storage.get(text_key(name))
            text = raw.decode("utf-8", errors="replace") if raw is not None else ""
        if not text.strip():
            raise VoiceNotFound(f"voice: {name!r} has no reference text in the library; upload it again with its text")
        return text.strip(), sha256 if isinstance(sha256, str) else None

    # -- metadata -------------------------------------------------------------------------------------

    def info(self, name: str) -> VoiceInfo | None:
        """Metadata of a stored voice (sidecar, else the seed layout's .txt), None when there is none."""
        raw = self._storage.get(sidecar_key(name))
        if raw is not None:
            try:
                meta = json.loads(raw)
                return VoiceInfo(
                    name=name,
                    ref_text=str(meta["ref_text"]),
                    language=meta.get("language"),
                    duration=meta.get("duration"),
                    sample_rate=meta.get("sample_rate"),
                    sha256=meta.get("sha256"),
                    created=meta.get("created"),
                    trimmed_from=meta.get("trimmed_from"),
                    ref_text_source=meta.get("ref_text_source"),
                    replaced_ref_text=meta.get("replaced_ref_text"),
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                logger.warning("voices: the sidecar of %s is unreadable", name)
                return None
        text = self._storage.get(text_key(name))
        if text is None:
            return None
        return VoiceInfo(name=name, ref_text=text.decode("utf-8", errors="replace").strip())

    def cache_key(self, name: str | None) -> str | None:
        """`reference_key` of a library voice from its sidecar alone (no audio download), or None."""
        source = self.cache_source(name)
        return reference_key(*source) if source else None

    def cache_source(self, name: str | None) -> tuple[str, str] | None:
        """A library voice's audio sha256 and transcript from its sidecar alone (no audio download): what
        identifies its prepared reference. None for the built-in voice and for voices without a sidecar."""
        if name is None or name == DEFAULT_VOICE:
            return None
        meta = self.info(name)
        if meta is None or not meta.sha256 or not meta.ref_text:
            return None
        return meta.sha256, meta.ref_text

    def _exists(self, name: str) -> bool:
        return any(self._storage.exists(k) for k in (sidecar_key(name), audio_key(name), text_key(name)))

    # -- upload ---------------------------------------------------------------------------------------

    def upload(
        self,
        name: str,
        audio_bytes: bytes,
        ref_text: str | None,
        language: str | None = None,
        *,
        replace: bool = False,
        transcribe: Transcriber | None = None,
        field: str = "voice_file",
    ) -> VoiceInfo:
        """Validate, convert and store a voice; see the module docstring for the rules. Audio errors
        name `field`, the request field the clip came in."""
        name = checked_name(name)
        text = " ".join(ref_text.split()) if ref_text else ""
        if len(text) > MAX_REF_TEXT_CHARS:
            raise InvalidInput(f"ref_text: is {len(text)} characters long; the limit is {MAX_REF_TEXT_CHARS}")
        if not replace and self._exists(name):  # early, before the clip is decoded and transcribed
            raise _taken(name)

        clip = prepare_clip(
            audio_bytes,
            text,
            transcribe,
            field=field,
            min_seconds=self.min_seconds,
            max_seconds=self.max_seconds,
            max_input_seconds=self.max_input_seconds,
        )
        if clip.source == "transcribed":
            logger.info("voices: transcribed %s (%d characters)", name, len(clip.text))
        wav = audio.encode(clip.samples, SAMPLE_RATE, "wav")
        info = VoiceInfo(
            name=name,
            ref_text=clip.text,
            language=language,
            duration=round(clip.kept, 3),
            sample_rate=SAMPLE_RATE,
            sha256=hashlib.sha256(wav).hexdigest(),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            trimmed_from=round(clip.seconds, 3) if clip.trimmed else None,
            ref_text_source=clip.source,
            replaced_ref_text=clip.replaced,
        )
        with self._lock(name):
            self._write(info, wav, replace)
        logger.info("voices: stored %s (%.1f s%s)", name, clip.kept, ", trimmed" if clip.trimmed else "")
        return info

    def _write(self, info: VoiceInfo, wav: bytes, replace: bool) -> None:
        """Store the audio, then the sidecar. Without `replace`, the audio is created only if the name
        is free (checked again under the name's lock; `put_if_absent` settles a race between workers)."""
        name = info.name
        if replace:
            # Unpublish the old voice first: old text must never pair with new audio.
            self._storage.delete_many([sidecar_key(name), text_key(name)])
            self._storage.put(audio_key(name), wav, "audio/wav")
        elif self._exists(name) or self._storage.put_if_absent(audio_key(name), wav, "audio/wav") is None:
            raise _taken(name)
        sidecar = json.dumps({"version": SIDECAR_VERSION, **info.as_dict()}, ensure_ascii=False, indent=1)
        try:
            # The .txt keeps the bucket readable by the original API's tools; with it the voice is whole in
            # the original layout, and the sidecar (last) adds the metadata.
            self._storage.put(text_key(name), (info.ref_text + "\n").encode("utf-8"), "text/plain; charset=utf-8")
            self._storage.put(sidecar_key(name), sidecar.encode("utf-8"), "application/json")
        except BaseException:
            try:  # the audio (and .txt) are this upload's own (created or replaced by it): deleting frees the name
                self._storage.delete_many([text_key(name), audio_key(name)])
            except StorageError:
                logger.error("voices: %s was written only in part; it is not usable until uploaded again", name)
            raise

    # -- list and delete ------------------------------------------------------------------------------

    def list(self, limit: int = 50, cursor: str | None = None) -> VoicePage:
        """Voices sorted by name, `limit` per page, after `cursor` (the previous page's `next_cursor`)."""
        if not 1 <= limit <= 200:
            raise InvalidInput("limit: should be between 1 and 200")
        if cursor is not None:
            cursor = checked_name(cursor, field="cursor")
        files: dict[str, set[str]] = {}
        for obj in self._storage.list(PREFIX):
            rest = obj.key[len(PREFIX) :]
            stem, dot, ext = rest.rpartition(".")
            if dot and "/" not in rest and ext in ("wav", "json", "txt"):
                files.setdefault(stem, set()).add(ext)
        # Usable = audio plus its text: a half-written upload (audio only) is not listed.
        names = sorted(n for n, exts in files.items() if "wav" in exts and exts & {"json", "txt"})
        if cursor is not None:
            names = [n for n in names if n > cursor]
        page = names[:limit]
        voices = [info for n in page if (info := self.info(n)) is not None]
        texts = frozenset(n for n in page if "txt" in files[n])
        return VoicePage(voices, page[-1] if len(names) > limit else None, texts)

    def delete(self, name: str) -> None:
        name = checked_name(name)
        with self._lock(name):
            if not self._exists(name):
                raise VoiceNotFound(f"voice_name: no voice named {name!r} in the library")
            # The sidecar/.txt first: once gone the voice is unusable, whatever happens next.
            for key in (sidecar_key(name), text_key(name), audio_key(name)):
                self._storage.delete(key)
        logger.info("voices: deleted %s", name)


def _taken(name: str) -> InvalidInput:
    return InvalidInput(f"voice_name: a voice named {name!r} already exists; set replace to true to overwrite it")


if __name__ == "__main__":  # python -m tts_worker.voices import DIR
    from tts_worker.voice_import import main

    sys.exit(main())
