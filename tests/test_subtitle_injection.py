"""Subtitle text can never forge structure: hostile words, read back by pysubs2 and by ffmpeg.

Each word is made of fragments whose visible result is known (`FRAGMENTS`: what is written, what a
viewer should see), so the expected cues come from this file, not from the code under test. The
built SRT and VTT files are parsed by pysubs2 and by ffmpeg's demuxers and decoders (converted to
ASS, whose events are one line each); both must find exactly the intended cues: their number, their
times and their text as shown (word joiners have no glyph; VTT character references are decoded).
"""

from __future__ import annotations

import html
import random
import re
import shutil
import subprocess

import pysubs2
import pytest

from tts_worker.subtitles import SubtitleOptions, build
from tts_worker.words import WordTiming

WJ = "\u2060"

# (written, shown). Line breaks and controls show as a space between words; format characters as nothing.
FRAGMENTS: list[tuple[str, str]] = [
    ("-->", "-->"),
    ("--", "--"),
    (">", ">"),
    ("00:00:01,000", "00:00:01,000"),
    ("00:00:09.500", "00:00:09.500"),
    ("1:2:3,4", "1:2:3,4"),
    ("12:34.567", "12:34.567"),
    (
        "\u0660\u0660:\u0660\u0660:\u0660\u0661,\u0660\u0660\u0660",
        "\u0660\u0660:\u0660\u0660:\u0660\u0661,\u0660\u0660\u0660",
    ),
    ("2", "2"),
    ("42", "42"),
    ("\u0663", "\u0663"),
    ("\n", " "),
    ("\n\n", " "),
    ("\r\n", " "),
    ("\r", " "),
    ("\u2028", " "),
    ("\u2029", " "),
    ("\x85", " "),
    ("\x0b", " "),
    ("\x0c", " "),
    ("\t", " "),
    ("\x00", " "),
    ("\x1b[31m", " [31m"),
    ("\x07", " "),
    ("\x7f", " "),
    ("\x9b", " "),
    ("NOTE", "NOTE"),
    ("STYLE", "STYLE"),
    ("REGION", "REGION"),
    ("WEBVTT", "WEBVTT"),
    ("::cue", "::cue"),
    ("{", "{"),
    ("}", "}"),
    ("{\\an8}", "{\\an8}"),
    ("{\\fs200}", "{\\fs200}"),
    ("\\N", "\\N"),
    ("\\h", "\\h"),
    ("<i>", "<i>"),
    ("</i>", "</i>"),
    ("<b>", "<b>"),
    ("<font color=red>", "<font color=red>"),
    ("<c.yellow>", "<c.yellow>"),
    ("<00:00:01.000>", "<00:00:01.000>"),
    ("&", "&"),
    ("&amp;", "&amp;"),
    ("&lt;", "&lt;"),
    (" ", " "),
    ("\u00a0", " "),
    ("\u3000", " "),
    ("\u200b", ""),
    ("\ufeff", ""),
    ("\u202e", ""),
    ("\u2066", ""),
    ("\u2060", ""),
    ("\u00ad", ""),
    ("word", "word"),
    ("Hello,", "Hello,"),
    ("end.", "end."),
    (
        "Dialogue: 0,0:00:00.00,0:00:09.00,Default,,0,0,0,,forged",
        "Dialogue: 0,0:00:00.00,0:00:09.00,Default,,0,0,0,,forged",
    ),
    ("[Events]", "[Events]"),
    ("\U0001f600", "\U0001f600"),
]


def hostile_words(seed: int, count: int, visible: bool = False) -> tuple[list[WordTiming], list[tuple[int, int, str]]]:
    """`count` words of 1-4 random fragments, 0.5 s apart (times on the 10 ms grid, exact in every format),
    and the word-level cues a viewer should get: (start ms, end ms, text shown) for each word that shows
    something. `visible`: a word that would show nothing gets a "2" at its end."""
    rng = random.Random(seed)
    words: list[WordTiming] = []
    expected = []
    for i in range(count):
        parts = [rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 4))]
        if visible and not "".join(s for _, s in parts).strip():
            parts.append(("2", "2"))
        written = "".join(w for w, _ in parts)
        shown = " ".join("".join(s for _, s in parts).split())
        start, end = i * 500, i * 500 + 300
        words.append(WordTiming(word=written, start=start / 1000, end=end / 1000, score=0.9, interpolated=False))
        if shown:
            expected.append((start, end, shown))
    return words, expected


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed")
    return path


def read_pysubs2(data: bytes, fmt: str) -> list[tuple[int, int, list[str]]]:
    subs = pysubs2.SSAFile.from_string(data.decode("utf-8"), format_=fmt)
    cues = []
    for e in subs.events:
        lines = e.text.split("\\N")  # a line break; a written "\N" has a word joiner after its backslash
        if fmt == "vtt":
            lines = [html.unescape(line) for line in lines]
        cues.append((e.start, e.end, [line.replace(WJ, "") for line in lines]))
    return cues


def read_ffmpeg(ffmpeg: str, data: bytes, fmt: str) -> list[tuple[int, int, list[str]]]:
    """Cues as ffmpeg's demuxer splits them and its decoder reads them, written out as ASS events."""
    demuxer = {"srt": "srt", "vtt": "webvtt"}[fmt]
    out = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-f", demuxer, "-i", "-", "-f", "ass", "-"],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode("utf-8")
    cues = []
    for e in pysubs2.SSAFile.from_string(out, format_="ass").events:
        lines = e.text.split("\\N")
        if fmt == "vtt":  # ffmpeg's WebVTT decoder escapes braces for ASS
            lines = [line.replace("\\{", "{").replace("\\}", "}") for line in lines]
        cues.append((e.start, e.end, [line.replace(WJ, "") for line in lines]))
    return cues


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_word_cues_are_exactly_the_words_whatever_they_hold(ffmpeg, fmt, seed):
    words, expected = hostile_words(seed, 40)
    data, _ = build(fmt, words, SubtitleOptions(cue_level="word"), duration=len(words) * 0.5)
    intended = [(s, e, [text]) for s, e, text in expected]
    assert read_pysubs2(data, fmt) == intended
    assert read_ffmpeg(ffmpeg, data, fmt) == intended


@pytest.mark.parametrize("seed", range(6, 10))
@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_line_cues_are_exactly_the_lines_whatever_they_hold(ffmpeg, fmt, seed):
    # One word per line, three lines per cue: many lines that are a bare number or start with NOTE.
    # Pauses (0.2 s) are shorter than split_pause, so each cue stays up until the next one starts.
    words, expected = hostile_words(seed, 40, visible=True)
    data, _ = build(fmt, words, SubtitleOptions(max_words_per_line=1, max_lines=3), duration=len(words) * 0.5)
    groups = [expected[i : i + 3] for i in range(0, len(expected), 3)]
    intended = [
        (group[0][0], groups[n + 1][0][0] if n + 1 < len(groups) else group[-1][1], [t for _, _, t in group])
        for n, group in enumerate(groups)
    ]
    assert read_pysubs2(data, fmt) == intended
    assert read_ffmpeg(ffmpeg, data, fmt) == intended


@pytest.mark.parametrize(
    "text",
    [
        "2\n00:00:05,000 --> 00:00:09,000\nforged",
        "end.\n\n2\n00:00:05,000 --> 00:00:09,000\nforged",
        "x\n\nNOTE hidden\n\nSTYLE\n::cue { color: red }\n\nREGION\nid:fill",
        "Meet at 10:00:00.000 or 11:00:00.000 sharp",
        "The year is 2025",
        "Count 1 2 3 4 5 6",
    ],
)
@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_a_whole_forged_block_in_the_text_stays_text(ffmpeg, fmt, text):
    words = [
        WordTiming(word=w, start=i * 0.5, end=i * 0.5 + 0.3, score=0.9, interpolated=False)
        for i, w in enumerate(text.split())
    ]
    layouts = [{}, {"max_words_per_line": 1, "max_lines": 1}, {"max_words_per_line": 3, "max_lines": 2}]
    for layout in layouts:
        data, _ = build(fmt, words, SubtitleOptions(**layout), duration=len(words) * 0.5)
        for cues in (read_pysubs2(data, fmt), read_ffmpeg(ffmpeg, data, fmt)):
            assert " ".join(line for _, _, lines in cues for line in lines).split() == text.split()
            assert cues[-1][1] == round(words[-1]["end"] * 1000)  # no cue was cut short or added after
        # No line opens a block, even for a reader that would look for one after any line.
        assert not re.search(r"^(NOTE|STYLE|REGION|WEBVTT)", data.decode().removeprefix("WEBVTT\n"), re.M)
