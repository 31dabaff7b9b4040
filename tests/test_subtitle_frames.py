"""Subtitles as a viewer sees them: the stored ASS rendered by ffmpeg's libass, measured on the pixels.

Where the text lands (inside the preset's safe area), how many rows it makes (horizontal projection
of the fill colour), whether unsung words keep an outline on a white frame in every karaoke mode,
and whether the highlight colour is on the word being spoken, and only up to it.
"""

from __future__ import annotations

import shutil

import numpy as np
import pysubs2
import pytest

from frames import bbox, colour_mask, ink, render, runs
from tts_worker import fonts
from tts_worker.styles import PRESETS
from tts_worker.subtitles import SubtitleOptions, build
from tts_worker.words import WordTiming

RED, BLUE, GOLD, BLACK = (255, 0, 0), (0, 0, 255), (255, 215, 0), (0, 0, 0)
PARAGRAPH = (
    "Subtitles are easier to read when every line is short. They break at sentence ends! "
    "And a word like internationalization must fit too."
)
TEXT = PARAGRAPH.split()


def words_from(spans: list[tuple[str, float, float]]) -> list[WordTiming]:
    return [WordTiming(word=w, start=s, end=e, score=0.9, interpolated=False) for w, s, e in spans]


WORDS = words_from([(w, n * 0.3, n * 0.3 + 0.25) for n, w in enumerate(TEXT)])


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed")
    if not fonts.resolve(fonts.DEFAULT_FONT).exact:
        pytest.skip("DejaVu Sans is not installed (make system-deps)")
    return path


def parse(data: bytes) -> pysubs2.SSAFile:
    return pysubs2.SSAFile.from_string(data.decode("utf-8"), format_="ass")


# --- layout --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "font_size", "max_lines"),
    [("vertical", None, 2), ("vertical", 130, 2), ("square", 130, 3), ("landscape", None, 2), ("landscape", 400, 3)],
)
def test_every_event_fits_its_lines_inside_the_safe_area(ffmpeg, tmp_path, resolution, font_size, max_lines):
    # Fill red, outline blue: the rows are counted on the fill alone, the safe area checked on all ink.
    opts = SubtitleOptions(
        resolution=resolution,
        font_size=font_size,
        max_lines=max_lines,
        primary_colour="#FF0000",
        highlight_colour="#FF0000",
        outline_colour="#0000FF",
    )
    data, _ = build("ass", WORDS, opts)
    events = parse(data).events
    preset = PRESETS[resolution]
    frames = render(ffmpeg, tmp_path, data, (preset.width, preset.height), [(e.start + e.end) / 2000 for e in events])
    for event, frame in zip(events, frames, strict=True):
        box = bbox(ink(frame))
        assert box is not None, f"nothing drawn for {event.plaintext!r}"
        left, top, right, bottom = box
        where = f"{event.plaintext!r} at {box} in {preset.width}x{preset.height}"
        assert preset.safe_left <= left and right < preset.width - preset.safe_right, where
        assert preset.safe_top <= top and bottom < preset.height - opts.vertical_margin, where
        # Rows of fill: a gap of 12 % of the font size separates lines (an i's dot is 7.5 % above its stem).
        rows = runs(colour_mask(frame, RED, 150).any(axis=1), min_gap=int(0.12 * opts.size))
        written = event.text.count(r"\N") + 1
        assert len(rows) == written <= max_lines, f"{len(rows)} rows drawn for {written} lines: {where}"
    assert [w for e in events for w in e.plaintext.split()] == TEXT


def test_a_word_too_wide_for_a_line_is_drawn_whole_and_smaller(ffmpeg, tmp_path):
    opts = SubtitleOptions(resolution="vertical", font_size=130)
    data, _ = build("ass", WORDS, opts)
    (event,) = [e for e in parse(data).events if "internationalization" in e.text]
    preset = PRESETS["vertical"]
    play = preset.width - preset.safe_left - preset.safe_right
    assert fonts.resolve(opts.font).width("internationalization", 130) > play  # 1085 px at 130 px
    assert "internationalization" in event.plaintext.split("\n")  # whole, on a line of its own
    (frame,) = render(ffmpeg, tmp_path, data, (preset.width, preset.height), [(event.start + event.end) / 2000])
    mask = ink(frame)
    widths = []
    for a, b in runs(mask.any(axis=1), min_gap=int(0.12 * 130)):
        left, _, right, _ = bbox(mask[a : b + 1])  # type: ignore[misc]
        widths.append(right - left + 1)
    assert 0.9 * play <= max(widths) <= play, (widths, play)  # drawn as large as fits, and no larger


@pytest.mark.parametrize("text", ["internationalization", "AV To WAVE", "Hello, world! 2025", "naïve Ünïcode"])
@pytest.mark.parametrize("size", [40, 130])
def test_measured_widths_are_what_libass_draws(ffmpeg, tmp_path, text, size):
    # Ink of "l" + text + "l" less the ink of "ll" is the advance of text: bearings cancel out.
    def drawn(s: str) -> int:
        words = words_from([(s, 0.0, 1.0)])
        opts = SubtitleOptions(font_size=size, outline=0, shadow=0, max_chars_per_line=1000)
        (frame,) = render(ffmpeg, tmp_path, build("ass", words, opts)[0], (1920, 1080), [0.5])
        left, _, right, _ = bbox(ink(frame))  # type: ignore[misc]
        return right - left + 1

    measured = fonts.resolve(fonts.DEFAULT_FONT).width(text, size)
    assert abs(drawn(f"l{text}l") - drawn("ll") - measured) <= 3, measured  # each ink edge within a pixel


# --- karaoke: outline and highlight --------------------------------------------------------------

KARAOKE = words_from([("Seven", 0.2, 0.7), ("bright", 0.8, 1.3), ("lanterns", 1.4, 1.9)])
MIDS = [0.45, 1.05, 1.65]


@pytest.mark.parametrize("tag", ["k", "kf", "ko"])
def test_every_word_keeps_an_outline_and_the_highlight_follows_the_voice(ffmpeg, tmp_path, tag):
    # Default colours: white text, black outline, gold highlight; on a white frame only the outline
    # makes a word not yet sung readable.
    data, _ = build("ass", KARAOKE, SubtitleOptions(karaoke=tag))
    frames = render(ffmpeg, tmp_path, data, (1920, 1080), MIDS)
    # The three words' columns, from the frame where all of them are drawn.
    spans = runs(ink(frames[-1]).any(axis=0), min_gap=6)
    assert len(spans) == 3, spans

    def count(frame: np.ndarray, rgb: tuple[int, int, int], word: int) -> int:
        a, b = spans[word]
        return int(colour_mask(frame[:, a : b + 1], rgb).sum())

    for i, frame in enumerate(frames):
        for later in range(i + 1, 3):
            assert count(frame, BLACK, later) > 200, f"{tag}: word {later} has no outline at {MIDS[i]} s"
            assert count(frame, GOLD, later) == 0, f"{tag}: word {later} highlighted before it is spoken"
        assert count(frame, GOLD, i) > 50, f"{tag}: word {i} not highlighted mid-word at {MIDS[i]} s"


def test_without_its_outline_layer_ko_would_hide_unsung_words(ffmpeg, tmp_path):
    # The measurement above can fail: libass's own \\ko draws nothing of a white word not yet sung.
    subs = parse(build("ass", KARAOKE, SubtitleOptions(karaoke="ko"))[0])
    subs.events = [e for e in subs.events if e.style == "Default"]
    first, last = render(ffmpeg, tmp_path, subs.to_string("ass").encode(), (1920, 1080), [MIDS[0], MIDS[-1]])
    spans = runs(ink(last).any(axis=0), min_gap=6)
    assert len(spans) == 3, spans
    for a, b in spans[1:]:
        assert not ink(first)[:, a : b + 1].any()
