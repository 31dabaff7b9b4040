"""Words into lines and on-screen events, by measured width.

Contract: `layout(words, texts, rules) -> list[Event]`. `texts[i]` is word i as shown (one run of
text, maybe empty). Every word is in exactly one line of one event, in order. Each line's measured
width (`rules.measure`, pixels at the style's font size) is at most `rules.max_width`, its length at
most `max_chars` characters and `max_words` words; an event has at most `max_lines` lines.

Rules, in order:
- A word ending a sentence ends its line; a pause of `split_pause` seconds or more ends the event.
- Lines fill greedily: a word starts a new line only when it would break one of the limits above.
- A word that is wider than `max_width` on its own gets a line of its own and is drawn smaller, at
  the largest size that fits (`Event.sizes`; the ASS writer sets it with `\\fs`). It is never cut, so
  it reads as written, and SRT/VTT cues keep it whole. A word over `max_chars` characters but narrow
  enough also gets a line of its own, at full size.
- An event stays on screen until the next one starts when the pause between them is shorter than
  `split_pause`, so text does not flicker off between lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tts_worker.words import WordTiming

# A word ends a sentence when it ends in one of these, ignoring closing quotes and brackets.
SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’»)\]」』]*$")
MIN_SCALE = 0.01
"""Smallest factor a too-wide word is drawn at (a 5000-character word at 500 px still has a size)."""


@dataclass(frozen=True)
class LineRules:
    measure: Callable[[str], float]
    """Width in pixels of a line's text at the style's font size."""
    max_width: float
    max_chars: int
    max_words: int
    max_lines: int
    split_pause: float


@dataclass(frozen=True)
class Event:
    """Lines shown together: `lines` are lists of word indices; `end` is when the event leaves the screen."""

    lines: tuple[tuple[int, ...], ...]
    start: float
    end: float
    scales: dict[int, float] = field(default_factory=dict)
    """Words drawn smaller to fit the width: word index -> factor of the font size (< 1)."""


def layout(words: Sequence[WordTiming], texts: Sequence[str], rules: LineRules) -> list[Event]:
    groups = _group(words, texts, rules)
    scales = {}
    for group in groups:
        for line in group:
            if len(line) == 1 and texts[line[0]]:
                width = rules.measure(texts[line[0]])
                if width > rules.max_width:
                    scales[line[0]] = max(MIN_SCALE, math.floor(rules.max_width / width * 1000) / 1000)
    events = []
    for n, group in enumerate(groups):
        first, last = group[0][0], group[-1][-1]
        end = words[last]["end"]
        if n + 1 < len(groups):
            next_start = words[groups[n + 1][0][0]]["start"]
            if next_start - end < rules.split_pause:
                end = next_start
        own = {i: scales[i] for line in group for i in line if i in scales}
        events.append(Event(tuple(group), words[first]["start"], max(end, words[first]["start"]), own))
    return events


def _group(words: Sequence[WordTiming], texts: Sequence[str], rules: LineRules) -> list[list[tuple[int, ...]]]:
    """Events as lists of lines (tuples of word indices)."""
    groups: list[list[tuple[int, ...]]] = []
    lines: list[tuple[int, ...]] = []
    line: list[int] = []
    shown = ""  # the line's visible text

    def close_line() -> None:
        nonlocal line, shown, lines
        if line:
            lines.append(tuple(line))
            line, shown = [], ""
        if len(lines) >= rules.max_lines:
            groups.append(lines)
            lines = []

    def close_event() -> None:
        nonlocal lines
        close_line()
        if lines:
            groups.append(lines)
            lines = []

    for i, text in enumerate(texts):
        if i and words[i]["start"] - words[i - 1]["end"] >= rules.split_pause:
            close_event()
        candidate = f"{shown} {text}" if shown and text else shown or text
        if line and (
            len(candidate) > rules.max_chars
            or len(line) >= rules.max_words
            or (text and rules.measure(candidate) > rules.max_width)
        ):
            close_line()
            candidate = text
        line.append(i)
        shown = candidate
        if text and rules.measure(text) > rules.max_width:
            close_line()  # too wide alone: a line of its own, drawn smaller
        elif SENTENCE_END.search(text):
            close_line()
    close_event()
    return groups
