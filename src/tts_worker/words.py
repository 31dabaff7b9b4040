"""Word timings: the one type alignment produces and subtitles consume.

One entry per word of the input text, in order, non-overlapping, inside
[0, duration] seconds. `word` keeps the spelling the user wrote (case,
punctuation, digits). `interpolated` is True when the aligner could not place
the word and its times were interpolated from its neighbours.
"""

from __future__ import annotations

from typing import TypedDict


class WordTiming(TypedDict):
    word: str
    start: float
    end: float
    score: float | None
    interpolated: bool
