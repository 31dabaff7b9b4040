"""What a voice upload's clip becomes before the library stores it, and the text it is stored with.

`prepare_clip(audio_bytes, text, transcribe, ...)` decodes the clip (`audio.decode`, refused from the
header past `max_input_seconds`), refuses one shorter than `min_seconds` or silent, converts it to mono
`SAMPLE_RATE` and trims it to at most `max_seconds` at the last pause before that (a hard cut with a
short fade when there is no pause: `audio.trim_at_pause`).

A trimmed clip no longer matches a text given for the whole clip, so it is transcribed again with
`transcribe` (`Clip.replaced` keeps the given text), or refused when there is no `transcribe`; a clip
sent without a text is transcribed too. The text must be plausible for the clip's length
(`engine.check_reference_text`, the rule synthesis applies), so the library never holds a voice that
synthesis would refuse. Errors name `field` (the request field the clip came in) or `ref_text`.
Imports no torch: `transcribe` is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tts_worker import audio
from tts_worker.engine import check_reference_text
from tts_worker.errors import InvalidAudio, InvalidInput

SAMPLE_RATE = 24_000  # library clips are stored as mono PCM-16 at this rate

Transcriber = Callable[[np.ndarray, int], str]
"""(mono float32 samples at 24 kHz, sample rate) -> transcript."""


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray  # mono float32 at SAMPLE_RATE, trimmed
    text: str  # what the voice is stored with
    source: str  # "given" with the upload, or "transcribed"
    seconds: float  # the uploaded clip's duration
    trimmed: bool
    replaced: str | None  # a given text that trimming made stale, replaced by a transcript

    @property
    def kept(self) -> float:
        """Seconds of the clip the library keeps."""
        return len(self.samples) / SAMPLE_RATE


def prepare_clip(
    audio_bytes: bytes,
    text: str,
    transcribe: Transcriber | None,
    *,
    field: str,
    min_seconds: float,
    max_seconds: float,
    max_input_seconds: float,
) -> Clip:
    """The clip as the library stores it and its text; see the module docstring for the rules. `text` is
    the given text with its white space collapsed ("" when none was given)."""
    samples, rate = audio.decode(audio_bytes, field=field, max_seconds=max_input_seconds)
    seconds = len(samples) / rate
    if seconds < min_seconds:
        raise InvalidAudio(f"{field}: the clip is {seconds:.2f} s long; at least {min_seconds:g} s is needed")
    if seconds > max_input_seconds:
        raise InvalidAudio(f"{field}: the clip is {seconds:.1f} s long; the limit is {max_input_seconds:g} s")
    samples = audio.resample(samples, rate, SAMPLE_RATE)
    if float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < 1e-5:
        raise InvalidAudio(f"{field}: the clip is silent")
    clip = audio.trim_at_pause(samples, SAMPLE_RATE, max_seconds)
    trimmed = len(clip) < len(samples)
    kept = len(clip) / SAMPLE_RATE

    if trimmed and text and transcribe is None:
        raise InvalidInput(
            f"ref_text: the clip was trimmed from {seconds:.1f} s to {kept:.1f} s at a pause (at most "
            f"{max_seconds:g} s is used for cloning), so ref_text no longer matches the audio; "
            f"upload a clip of at most {max_seconds:g} s with its text"
        )
    replaced = text if trimmed and text else None
    source = "given"
    if trimmed or not text:
        if transcribe is None:
            raise InvalidInput("ref_text: is required: no speech recognition model is available to transcribe")
        text = " ".join(transcribe(clip, SAMPLE_RATE).split())
        if not text:
            raise InvalidAudio(f"{field}: no speech was recognised in the clip; send its ref_text")
        source = "transcribed"
        try:
            check_reference_text(text, kept, field=field)
        except InvalidInput:
            raise InvalidAudio(
                f"{field}: the speech recognition heard {len(text)} characters in {kept:.1f} s, which cannot "
                "be what the clip says (too little or too much speech recognised); send its ref_text"
            ) from None
    else:
        check_reference_text(text, kept, field="ref_text")  # what synthesis would refuse, refused now
    return Clip(clip, text, source, seconds, trimmed, replaced)
