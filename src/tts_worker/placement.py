"""Where each word of a text lands on the audio's timeline, given the chunks the synthesis recorded.

Pure bookkeeping, no model: `Aligner.align` (alignment.py) has the aligner time words inside
each chunk's samples, and this module turns that into the `WordTiming` contract (words.py).

- `chunk_spans(chunks, n_samples, rate, n_chars)`: the synthesis's `(char_start, char_end,
  start_sample, end_sample)` records as `Chunk`s, sorted and clipped to the audio.
- `split_words(text, spans, clean)`: every whitespace-separated word, cut into one `Part` per
  chunk whose characters it covers. chunking.py cuts a word longer than a chunk (a URL, a run with
  no space) across several chunks, so each part is timed in the chunk that speaks it. A word
  outside every chunk's characters is one part in the last chunk starting before it.
- `place(parts, placed, spans)`: the aligner's times clamped into each part's chunk and after the
  previous part; parts it could not place interpolated by length between their neighbours in the
  chunk (`interpolated=True`).
- `join(words, parts, times, duration)`: one `WordTiming` per word, from its first part's start to
  its last part's end: a word cut across chunks spans all the audio it produced, and the words
  after it follow it inside their own chunks. Rounded as `words.rounded` rounds, within `duration`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from tts_worker.words import WordTiming, rounded

MIN_INTERPOLATED_SECONDS = 0.04  # room an interpolated part takes from its neighbours when there is no gap
# Longest an interpolated part lasts when only one neighbour bounds it (digits are spoken long: "1999").
MAX_INTERPOLATED_SECONDS_PER_CHAR = 0.25

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    char_start: int  # characters [char_start, char_end) of the text
    char_end: int
    first: int  # samples [first, last) at the caller's rate
    last: int
    start: float  # the same in seconds
    end: float


@dataclass(frozen=True)
class Word:
    text: str  # as the user wrote it
    char_start: int


@dataclass(frozen=True)
class Part:
    """The characters of one word that one chunk speaks (the whole word, unless it was cut)."""

    word: int  # index into the words
    chunk: int  # index into the spans
    text: str
    clean: str  # what the aligner sees: its known characters only; "" when it knows none


@dataclass
class Placed:
    start: float
    end: float
    score: float | None
    interpolated: bool = False


def chunk_spans(chunks: list[tuple[int, int, int, int]], n_samples: int, sample_rate: int, n_chars: int) -> list[Chunk]:
    """The chunks in text order, sample ranges clipped to the audio; none means one chunk of everything."""
    if not chunks:
        return [Chunk(0, n_chars, 0, n_samples, 0.0, n_samples / sample_rate)]
    spans = []
    for char_start, char_end, start_sample, end_sample in sorted(chunks):
        a = min(max(int(start_sample), 0), n_samples)
        b = min(max(int(end_sample), a), n_samples)
        spans.append(Chunk(int(char_start), int(char_end), a, b, a / sample_rate, b / sample_rate))
    return spans


def split_words(text: str, spans: list[Chunk], clean: Callable[[str], str]) -> tuple[list[Word], list[Part]]:
    """The words of `text` and their parts, in text order (so in chunk order too)."""
    starts = [s.char_start for s in spans]
    words: list[Word] = []
    parts: list[Part] = []
    for i, m in enumerate(_WORD.finditer(text)):
        a, b = m.span()
        words.append(Word(m.group(), a))
        first = max(bisect.bisect_right(starts, a) - 1, 0)
        inside = [k for k in range(first, bisect.bisect_left(starts, b)) if spans[k].char_end > a]
        if not inside:
            parts.append(Part(i, first, m.group(), clean(m.group())))
        for k in inside:
            piece = text[max(a, spans[k].char_start) : min(b, spans[k].char_end)]
            parts.append(Part(i, k, piece, clean(piece)))
    return words, parts


def place(parts: list[Part], placed: list[Placed | None], spans: list[Chunk]) -> list[Placed]:
    """Clamp placed parts into their chunk and after their predecessor; interpolate the rest by length."""
    n = len(parts)
    times: list[Placed] = []
    last_end = 0.0
    i = 0
    while i < n:
        chunk = parts[i].chunk
        span = spans[chunk]
        lo = max(span.start, last_end)
        hi = max(span.end, lo)
        p = placed[i]
        if p is not None:
            start = min(max(p.start, lo), hi)
            end = min(max(p.end, start), hi)
            times.append(Placed(start, end, p.score))
            last_end = end
            i += 1
            continue
        # a run of unplaced parts inside one chunk, up to the next placed part of that chunk
        j = i
        while j < n and placed[j] is None and parts[j].chunk == chunk:
            j += 1
        has_left = i > 0 and parts[i - 1].chunk == chunk
        nxt = placed[j] if j < n and parts[j].chunk == chunk else None
        right = min(max(nxt.start, lo), hi) if nxt is not None else hi
        weights = [len(p.text) for p in parts[i:j]]
        need = MIN_INTERPOLATED_SECONDS * len(weights)
        if right - lo < need and has_left:
            prev = times[-1]  # no gap: take room from the previous part's end, at most its second half
            new_lo = max(prev.start + (prev.end - prev.start) / 2, right - need)
            if new_lo < lo:
                prev.end = lo = new_lo
        if right - lo < need and nxt is not None:
            # still none: take it from the next part's start, at most its first half
            right = max(right, min(max(nxt.start, lo) + max(nxt.end - nxt.start, 0.0) / 2, lo + need, hi))
            placed[j] = Placed(right, max(nxt.end, right), nxt.score)
        cap = MAX_INTERPOLATED_SECONDS_PER_CHAR * sum(weights)
        if right - lo > cap and has_left != (nxt is not None):
            # bounded on one side only: stay next to that neighbour instead of spreading over a pause
            lo, right = (lo, lo + cap) if has_left else (right - cap, right)
        total = float(sum(weights))
        t = lo
        for w in weights:
            end = t + (right - lo) * w / total
            times.append(Placed(t, end, None, interpolated=True))
            t = end
        last_end = right
        i = j
    return times


def join(words: list[Word], parts: list[Part], times: list[Placed], duration: float) -> list[WordTiming]:
    """One timing per word, spanning its parts. A cut word's score is its timed parts' mean, and it is
    `interpolated` when any part was."""
    grouped: list[list[Placed]] = [[] for _ in words]
    for part, t in zip(parts, times, strict=True):
        grouped[part.word].append(t)
    out = []
    for word, ts in zip(words, grouped, strict=True):
        scores = [t.score for t in ts if t.score is not None]
        out.append(
            WordTiming(
                word=word.text,
                start=ts[0].start,
                end=ts[-1].end,
                score=sum(scores) / len(scores) if scores else None,
                interpolated=any(t.interpolated for t in ts),
            )
        )
    timings = rounded(out)
    for w in timings:  # clamped after rounding: a time rounded up must not pass the end of the audio
        w["start"], w["end"] = min(w["start"], duration), min(w["end"], duration)
    return timings
