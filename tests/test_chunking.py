"""Text chunking: every chunk fits the limit, maps back to the input, and breaks at the most natural place."""

import pytest

from tts_worker.chunking import split_text


def nbytes(s):
    return len(s.encode("utf-8"))


TEXT = (
    "The quick brown fox jumps over the lazy dog. Then it runs away, far away; nobody sees it again! "
    "Did it come back? 你好。世界！ Numbers like 3.14 and 2,000 stay whole.\nA new paragraph starts here."
)


@pytest.mark.parametrize("limit", [20, 45, 80, 1000])
def test_chunks_fit_and_map_back_to_input(limit):
    chunks = split_text(TEXT, limit)
    assert all(nbytes(c.text) <= limit for c in chunks)
    assert all(TEXT[c.start : c.end] == c.text for c in chunks)
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    # Nothing but white space is lost between chunks.
    covered = "".join(c.text for c in chunks)
    assert covered.replace(" ", "").replace("\n", "") == TEXT.replace(" ", "").replace("\n", "")


def test_short_text_is_one_chunk():
    [chunk] = split_text("  Hello world.  ", 100)
    assert (chunk.text, chunk.start, chunk.end) == ("Hello world.", 2, 14)


def test_breaks_at_sentence_ends_before_clauses():
    chunks = split_text("First sentence here. Second one, with a clause, is here.", 40)
    assert chunks[0].text == "First sentence here."


def test_long_sentence_breaks_at_clause_then_words():
    chunks = split_text("alpha beta gamma, delta epsilon zeta eta theta iota kappa", 20)
    assert chunks[0].text == "alpha beta gamma,"
    assert all(nbytes(c.text) <= 20 for c in chunks)
    assert " ".join(c.text for c in chunks) == "alpha beta gamma, delta epsilon zeta eta theta iota kappa"


def test_decimal_numbers_are_not_split():
    chunks = split_text("Pi is 3.14 roughly. Yes.", 20)
    assert any("3.14" in c.text for c in chunks)


def test_word_longer_than_limit_is_cut():
    chunks = split_text("a" * 50, 20)
    assert [len(c.text) for c in chunks] == [20, 20, 10]


def test_multibyte_limits_count_bytes():
    chunks = split_text("你好世界" * 10, 12)
    assert all(nbytes(c.text) <= 12 for c in chunks) and "".join(c.text for c in chunks) == "你好世界" * 10
