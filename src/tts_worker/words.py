"""Word timings: the one type alignment produces and subtitles consume.

One entry per word of the input text, in order, non-overlapping, inside
[0, duration] seconds. `word` keeps the spelling the user wrote (case,
punctuation, digits). `interpolated` is True when the aligner could not place
the word and its times were interpolated from its neighbours.

`rounded(words)` is the one rounding of timings, as alignment makes them (`placement.join`) and as
they leave the worker (the result's `word_timings`, the JSON and CSV files): times to the
millisecond, scores to 3 decimals, an unknown or non-finite score as None.

`spoken` is present when what was spoken for the word differs from how it is written ("$3.50" ->
"three dollars fifty cents"); the times then span all of it (`tts_worker.normalize.written_timings`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict, cast


class WordTiming(TypedDict):
    word: str
    start: float
    end: float
    score: float | None
    interpolated: bool
    spoken: NotRequired[str]


def rounded(words: Sequence[WordTiming]) -> list[WordTiming]:
    """Timings as the worker reports and stores them (float noise dropped; NaN would make invalid JSON)."""
    out = []
    for w in words:
        entry: dict[str, Any] = {"word": w["word"]}
        if "spoken" in w:
            entry["spoken"] = w["spoken"]
        entry |= {
            "start": round(w["start"], 3),
            "end": round(w["end"], 3),
            "score": round(w["score"], 3) if w["score"] is not None and math.isfinite(w["score"]) else None,
            "interpolated": bool(w["interpolated"]),
        }
        out.append(cast(WordTiming, entry))
    return out
