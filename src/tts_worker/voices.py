"""The voice library: reference clips and their transcripts, kept in storage.

    voices/<name>.wav    the reference audio: mono 24 kHz PCM-16, at most 12 s
    voices/<name>.json   sidecar: {"name", "ref_text", "language", "duration", "sample_rate",
                         "sha256" (of the .wav), "created" (ISO 8601 UTC), "trimmed_from"}
    voices/<name>.txt    transcript in the original API's layout (read when there is no sidecar)

`default` (no voice given) is the English clip that ships with f5_tts; the name is reserved.

Operations (`VoiceLibrary`): `get(name)`, `upload(...)`, `list(limit, cursor)`,
`info(name)`, `delete(name)`, `cache_key(name)`.

`upload` validates and converts the clip (mono, 24 kHz) and trims it to at most
12 s at the last pause before 12 s (a hard cut with a short fade when there is
no pause). A trimmed clip no longer matches a transcript given for the whole
clip, so it is transcribed again with `transcribe` when one is given, else
refused. The sidecar is the commit marker: a replaced voice's sidecar/.txt is
removed first, the audio is written, then the sidecar; if the sidecar cannot be
written the audio is deleted. A failed upload therefore never leaves a voice
that looks usable with the wrong text.

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

This module imports no torch (the import command runs without the models).

Seed import: a directory in the original API's layout (`Voices/<name>.wav` +
`<name>.txt`) goes into the configured storage with

    python -m tts_worker.voices import Voices/ [--replace] [--language en]

(`import_seed()` in code). Storage comes from the environment as for the
worker (`S3_BUCKET`... or `STORAGE_DIR`). Clips longer than 12 s need a
transcriber, which the command has not: they are reported and skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import sys
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tts_worker import audio
from tts_worker.errors import InvalidAudio, InvalidInput, StorageError, VoiceNotFound, WorkerError
from tts_worker.schemas import voice_name
from tts_worker.storage import Storage

if TYPE_CHECKING:
    from tts_worker.settings import Settings

# Named for the module also when run as `python -m tts_worker.voices`, so the package's log level applies.
logger = logging.getLogger("tts_worker.voices")

DEFAULT_VOICE = "default"
PREFIX = "voices/"
MAX_REFERENCE_SECONDS = 12.0
MAX_REF_TEXT_CHARS = 1000
SIDECAR_VERSION = 1
SAMPLE_RATE = 24_000  # library clips are stored as mono PCM-16 at this rate
DEFAULT_VOICE_TEXT = "Some call me nature, others call me mother nature."
NAME_LOCKS = 64  # striped per-name locks of one library

Transcriber = Callable[[np.ndarray, int], str]
"""(mono float32 samples at 24 kHz, sample rate) -> transcript."""


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VoicePage:
    voices: list[VoiceInfo]
    next_cursor: str | None  # pass back as `cursor` for the next page; None on the last page


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # file name -> error message


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

        samples, rate = audio.decode(audio_bytes, field=field, max_seconds=self.max_input_seconds)
        seconds = len(samples) / rate
        if seconds < self.min_seconds:
            raise InvalidAudio(f"{field}: the clip is {seconds:.2f} s long; at least {self.min_seconds:g} s is needed")
        if seconds > self.max_input_seconds:
            raise InvalidAudio(f"{field}: the clip is {seconds:.1f} s long; the limit is {self.max_input_seconds:g} s")
        samples = audio.resample(samples, rate, SAMPLE_RATE)
        if float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < 1e-5:
            raise InvalidAudio(f"{field}: the clip is silent")
        clip = audio.trim_at_pause(samples, SAMPLE_RATE, self.max_seconds)
        trimmed = len(clip) < len(samples)
        kept = len(clip) / SAMPLE_RATE

        if trimmed and text and transcribe is None:
            raise InvalidInput(
                f"ref_text: the clip was trimmed from {seconds:.1f} s to {kept:.1f} s at a pause (at most "
                f"{self.max_seconds:g} s is used for cloning), so ref_text no longer matches the audio; "
                f"upload a clip of at most {self.max_seconds:g} s with its text"
            )
        if trimmed or not text:
            if transcribe is None:
                raise InvalidInput("ref_text: is required: no speech recognition model is available to transcribe")
            text = " ".join(transcribe(clip, SAMPLE_RATE).split())
            if not text:
                raise InvalidAudio(f"{field}: no speech was recognised in the clip; send its ref_text")
            logger.info("voices: transcribed %s (%d characters)", name, len(text))

        wav = audio.encode(clip, SAMPLE_RATE, "wav")
        info = VoiceInfo(
            name=name,
            ref_text=text,
            language=language,
            duration=round(kept, 3),
            sample_rate=SAMPLE_RATE,
            sha256=hashlib.sha256(wav).hexdigest(),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            trimmed_from=round(seconds, 3) if trimmed else None,
        )
        with self._lock(name):
            self._write(info, wav, replace)
        logger.info("voices: stored %s (%.1f s%s)", name, kept, ", trimmed" if trimmed else "")
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
            self._storage.put(sidecar_key(name), sidecar.encode("utf-8"), "application/json")
        except BaseException:
            try:  # the audio is this upload's own (created or replaced by it): deleting it frees the name
                self._storage.delete(audio_key(name))
            except StorageError:
                logger.error("voices: %s has audio but no sidecar; it is not usable until uploaded again", name)
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
        return VoicePage(voices, page[-1] if len(names) > limit else None)

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


def import_seed(
    library: VoiceLibrary,
    directory: Path,
    *,
    replace: bool = False,
    language: str | None = None,
    transcribe: Transcriber | None = None,
) -> ImportReport:
    """Upload every `<name>.wav` (+ `<name>.txt`) in `directory`; one voice's failure doesn't stop the rest."""
    if not directory.is_dir():
        raise InvalidInput(f"directory: {directory} is not a directory")
    report = ImportReport()
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() == ".wav" and p.is_file()):
        text_path = path.with_suffix(".txt")
        text = text_path.read_text(encoding="utf-8").strip() if text_path.is_file() else None
        try:
            library.upload(path.stem, path.read_bytes(), text, language, replace=replace, transcribe=transcribe)
        except WorkerError as exc:
            report.failed[path.name] = exc.message
            logger.warning("voices: %s not imported: %s", path.name, exc.message)
        else:
            report.imported.append(path.stem)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tts_worker.voices import DIR`: exit 0 when every voice was imported, 1 otherwise."""
    from tts_worker import log
    from tts_worker.settings import Settings
    from tts_worker.storage import open_storage

    parser = argparse.ArgumentParser(prog="python -m tts_worker.voices", description="Manage the voice library.")
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="import a seed directory of <name>.wav + <name>.txt")
    imp.add_argument("directory", type=Path)
    imp.add_argument("--replace", action="store_true", help="overwrite voices that already exist")
    imp.add_argument("--language", default=None, help="language recorded for every imported voice")
    args = parser.parse_args(argv)

    settings = Settings()
    log.configure(settings.log_level)
    library = VoiceLibrary.from_settings(open_storage(settings), settings)
    try:
        report = import_seed(library, args.directory, replace=args.replace, language=args.language)
    except WorkerError as exc:
        logger.error("voices: %s", exc.message)
        return 1
    logger.info("voices: imported %d: %s", len(report.imported), ", ".join(report.imported) or "-")
    if report.failed:  # each one was logged with its reason by import_seed
        logger.error("voices: %d not imported: %s", len(report.failed), ", ".join(report.failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
