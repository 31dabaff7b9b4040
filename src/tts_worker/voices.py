"""The voice library: reference clips and their transcripts, kept in storage.

    voices/<name>.wav    the reference audio
    voices/<name>.json   sidecar: {"ref_text": ..., ...}
    voices/<name>.txt    transcript in the original API's layout (read when there is no sidecar)

`default` (no voice given) is the English clip that ships with f5_tts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tts_worker import tts
from tts_worker.errors import VoiceNotFound
from tts_worker.storage import Storage

DEFAULT_VOICE = "default"
PREFIX = "voices/"


@dataclass(frozen=True)
class Voice:
    name: str
    audio: bytes
    ref_text: str


def audio_key(name: str) -> str:
    return f"{PREFIX}{name}.wav"


class VoiceLibrary:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def get(self, name: str | None) -> Voice:
        if name is None or name == DEFAULT_VOICE:
            audio, text = tts.default_voice()
            return Voice(DEFAULT_VOICE, audio, text)
        stored = self._storage.get(audio_key(name))
        if stored is None:
            raise VoiceNotFound(f"voice: no voice named {name!r} in the library (upload it with upload_voice)")
        return Voice(name, stored, self._ref_text(name))

    def _ref_text(self, name: str) -> str:
        sidecar = self._storage.get(f"{PREFIX}{name}.json")
        if sidecar is not None:
            try:
                text = json.loads(sidecar).get("ref_text", "")
            except (ValueError, AttributeError):
                text = ""
        else:
            raw = self._storage.get(f"{PREFIX}{name}.txt")
            text = raw.decode("utf-8", errors="replace") if raw is not None else ""
        if not text.strip():
            raise VoiceNotFound(f"voice: {name!r} has no reference text in the library; upload it again with its text")
        return text.strip()
