"""Word timings: the one type alignment produces and subtitles consume.

One entry per word of the input text, in order, non-overlapping, inside
[0, duration] seconds. `word` keeps the spelling the user wrote (case,
punctuation, digits). `interpolated` is True when the aligner could not place
the word and its times were interpolated from its neighbours.

`rounded(words)` is how timings leave the worker (the result's `word_timings`,
the JSON and CSV files): times to the millisecond, scores to 3 decimals, an
unknown or non-finite score as None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict


class WordTiming(TypedDict):
    word: str
    start: float
    end: float
    score: float | None
    interpolated: bool


def rounded(words: Sequence[WordTiming]) -> list[WordTiming]:
    """Timings as the worker reports and stores them (float noise dropped; NaN would make invalid JSON)."""
    return [
        WordTiming(
            word=w["word"],
            start=round(w["start"], 3),
            end=round(w["end"], 3),
            score=round(w["score"], 3) if w["score"] is not None and math.isfinite(w["score"]) else None,
            interpolated=bool(w["interpolated"]),
        )
        for w in words
    ]
