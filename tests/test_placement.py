"""Word placement across chunks (placement.py) with synthetic chunks and aligner answers: exact expected
times, no model. The chunks come from the real chunker, so a long word is cut where synthesis cuts it."""

from __future__ import annotations

import pytest

from tts_worker.chunking import split_text
from tts_worker.placement import Placed, chunk_spans, join, place, split_words

SR = 1000  # samples per second: sample ranges read as milliseconds

LONG = "https://example.com/" + "abcdefghij" * 28  # 300 characters, no space
TEXT = f"Please open {LONG} and read the page."


def chunks_of(text: str, max_bytes: int, seconds_per_char: float = 0.05) -> list[tuple[int, int, int, int]]:
    """The chunker's cut of `text` with sample ranges that tile the audio, each as long as its text."""
    out, pos = [], 0
    for c in split_text(text, max_bytes):
        n = round(len(c.text) * seconds_per_char * SR)
        out.append((c.start, c.end, pos, pos + n))
        pos += n
    return out


def contract(timings: list, text: str, duration: float) -> None:
    assert [t["word"] for t in timings] == text.split()
    previous_end = 0.0
    for t in timings:
        assert previous_end <= t["start"] <= t["end"] <= duration, t
        previous_end = t["end"]


def test_a_word_longer_than_a_chunk_is_cut_into_one_part_per_chunk():
    chunks = chunks_of(TEXT, 120)
    spans = chunk_spans(chunks, chunks[-1][3], SR, len(TEXT))
    words, parts = split_words(TEXT, spans, str.lower)

    long_parts = [p for p in parts if words[p.word].text == LONG]
    assert len(long_parts) == 3  # 300 characters at 120 bytes a chunk
    assert "".join(p.text for p in long_parts) == LONG
    assert [p.chunk for p in long_parts] == [1, 2, 3]
    assert [TEXT[spans[p.chunk].char_start : spans[p.chunk].char_end] for p in long_parts[:2]] == [
        p.text for p in long_parts[:2]
    ]  # the first parts fill their chunks; the last shares its chunk with the words after it
    others = [p for p in parts if words[p.word].text != LONG]
    assert len(others) == len(words) - 1 and all(p.text == words[p.word].text for p in others)
    assert [p.chunk for p in others] == [0, 0, 3, 3, 3, 3]


def test_a_cut_word_spans_all_the_audio_it_produced():
    chunks = chunks_of(TEXT, 120)
    duration = chunks[-1][3] / SR
    spans = chunk_spans(chunks, chunks[-1][3], SR, len(TEXT))
    words, parts = split_words(TEXT, spans, str.lower)
    # What the aligner answers inside each chunk: every part at a known place in its chunk.
    placed: list[Placed | None] = []
    for p in parts:
        span = spans[p.chunk]
        mine = [q for q in parts if q.chunk == p.chunk]
        k, n = mine.index(p), len(mine)
        width = (span.end - span.start) / n
        score = 0.2 * (p.chunk + 1) + 0.01 * k
        placed.append(Placed(span.start + k * width + 0.01, span.start + (k + 1) * width - 0.01, score))
    timings = join(words, parts, place(parts, placed, spans), duration)

    contract(timings, TEXT, duration)
    long = timings[2]
    assert long["word"] == LONG
    first, last = spans[1], spans[3]
    assert long["start"] == pytest.approx(first.start + 0.01, abs=1e-3)  # where its first part starts
    last_part = next(i for i, p in enumerate(parts) if p.word == 2 and p.chunk == 3)
    assert long["end"] == pytest.approx(placed[last_part].end, abs=1e-3)  # where its last part ends
    assert long["end"] > spans[2].end  # it covers the whole middle chunk and reaches into the last
    assert long["score"] == pytest.approx((0.4 + 0.6 + 0.8) / 3, abs=1e-3) and not long["interpolated"]
    for t in timings[3:]:  # the words after it: in their own chunk, after it
        assert last.start <= t["start"] <= t["end"] <= last.end
    for t in timings[:2]:
        assert spans[0].start <= t["start"] <= t["end"] <= spans[0].end


def test_unplaceable_parts_of_a_cut_word_are_interpolated_inside_their_chunks():
    """Digits the aligner cannot place: the middle chunk is wholly the word's, the last part stops at the
    next placed word."""
    long = "4" * 250
    text = f"Call {long} now please"
    chunks = chunks_of(text, 100)
    duration = chunks[-1][3] / SR
    spans = chunk_spans(chunks, chunks[-1][3], SR, len(text))
    words, parts = split_words(text, spans, lambda s: "".join(ch for ch in s.lower() if ch.isalpha()))
    assert [p.chunk for p in parts if p.word == 1] == [1, 2, 3]
    placed: list[Placed | None] = [None] * len(parts)
    placed[0] = Placed(spans[0].start + 0.05, spans[0].end - 0.05, 0.9)  # "Call"
    now = next(i for i, p in enumerate(parts) if words[p.word].text == "now")
    placed[now] = Placed(spans[3].start + 0.4, spans[3].start + 0.6, 0.8)
    placed[now + 1] = Placed(spans[3].start + 0.7, spans[3].end - 0.01, 0.7)
    timings = join(words, parts, place(parts, placed, spans), duration)

    contract(timings, text, duration)
    digits = timings[1]
    assert digits["interpolated"] and digits["score"] is None
    assert digits["start"] == pytest.approx(spans[1].start, abs=1e-3)
    assert digits["end"] == pytest.approx(spans[3].start + 0.4, abs=1e-3)  # up to "now"
    assert timings[2]["start"] == pytest.approx(spans[3].start + 0.4, abs=1e-3)


def test_words_outside_every_chunk_go_to_the_chunk_before_them():
    text = "alpha beta gamma"
    spans = chunk_spans([(0, 5, 0, 1000), (11, 16, 1000, 2000)], 2000, SR, len(text))
    _, parts = split_words(text, spans, str.lower)
    assert [(p.text, p.chunk) for p in parts] == [("alpha", 0), ("beta", 0), ("gamma", 1)]
    whole = chunk_spans([], 2000, SR, len(text))
    assert [p.chunk for p in split_words(text, whole, str.lower)[1]] == [0, 0, 0]
