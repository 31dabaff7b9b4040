"""Split text into chunks F5-TTS can speak in one generation, keeping where
each chunk sits in the input so later stages (alignment) can map back.

Chunks break at sentence ends first, then at clause punctuation, then between
words; a single word longer than the limit is cut. Limits are in UTF-8 bytes,
the unit F5-TTS uses to estimate duration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+|(?<=[，；：、])")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TextChunk:
    text: str
    start: int  # character offsets into the text that was split
    end: int


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def _pieces(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-empty [s, e) spans of text[start:end] between matches of `pattern`, stripped of white space."""
    spans, pos = [], start
    for m in pattern.finditer(text, start, end):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, end))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            out.append((s, e))
    return out


def _hard_split(text: str, start: int, end: int, max_bytes: int) -> list[tuple[int, int]]:
    out, s = [], start
    while s < end:
        e = s + 1
        while e < end and _nbytes(text[s : e + 1]) <= max_bytes:
            e += 1
        out.append((s, e))
        s = e
    return out


def _fit(text: str, start: int, end: int, max_bytes: int, level: int) -> list[tuple[int, int]]:
    """Spans no longer than max_bytes each, split at the coarsest level that works."""
    if _nbytes(text[start:end]) <= max_bytes:
        return [(start, end)]
    patterns = (_SENTENCE_END, _CLAUSE_END, _SPACE)
    if level >= len(patterns):
        return _hard_split(text, start, end, max_bytes)
    out = []
    for s, e in _pieces(text, start, end, patterns[level]):
        out += _fit(text, s, e, max_bytes, level + 1)
    return out


def split_text(text: str, max_bytes: int) -> list[TextChunk]:
    """Greedily pack sentence-level pieces into chunks of at most `max_bytes` UTF-8 bytes."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    spans = []
    for s, e in _pieces(text, 0, len(text), _SENTENCE_END):
        spans += _fit(text, s, e, max_bytes, 1)
    chunks: list[TextChunk] = []
    cur: tuple[int, int] | None = None
    for s, e in spans:
        if cur is not None and _nbytes(text[cur[0] : e]) <= max_bytes:
            cur = (cur[0], e)
            continue
        if cur is not None:
            chunks.append(TextChunk(text[cur[0] : cur[1]], *cur))
        cur = (s, e)
    if cur is not None:
        chunks.append(TextChunk(text[cur[0] : cur[1]], *cur))
    return chunks
