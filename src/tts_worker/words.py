"""Word timings: the one type alignment produces and subtitles consume.

One entry per word of the input text, in order, non-overlapping, inside
[0, duration] seconds. `word` keeps the spelling the user wrote (case,
punctuation, digits). `interpolated` is True when the aligner could not place
the word and its times were interpolated from its neighbours. `spoken` is present when what was
spoken for the word differs from how it is written ("$3.50" -> "three dollars fifty cents"); the
times then span all of it (`tts_worker.normalize.written_timings`).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class WordTiming(TypedDict):
    word: str
    start: float
    end: float
    score: float | None
    interpolated: bool
    spoken: NotRequired[str]
