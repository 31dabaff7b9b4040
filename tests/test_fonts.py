"""Which font file the line widths are measured with, and what happens without the one asked for.
(That the widths are what libass draws is measured on rendered frames in test_subtitle_frames.py.)"""

from __future__ import annotations

import logging
import shutil

import pytest

from tts_worker import fonts

SAMPLE = "Subtitles are easier to read when every line is short, and so are these."


@pytest.fixture(autouse=True)
def fresh_cache():
    fonts.resolve.cache_clear()
    yield
    fonts.resolve.cache_clear()


@pytest.fixture
def dejavu() -> fonts.Font:
    font = fonts.resolve(fonts.DEFAULT_FONT)
    if not font.exact:
        pytest.skip("DejaVu Sans is not installed (make system-deps)")
    return font


def test_the_default_font_is_found_with_libass_metrics(dejavu):
    assert dejavu.path is not None and dejavu.path.name == "DejaVuSans.ttf"
    # libass's scale: the OS/2 win ascent + descent (1901 + 483 units) is the ASS size.
    assert (dejavu.units_per_em, dejavu.height_units) == (2048, 2384)
    assert dejavu.width("", 64) == 0 and dejavu.width("ab", 64) == pytest.approx(2 * dejavu.width("ab", 32))


def test_another_installed_font_is_measured_with_its_own_file(dejavu):
    mono = fonts.resolve("DejaVu Sans Mono")  # in fonts-dejavu-core too
    assert mono.exact and mono.path is not None and mono.path != dejavu.path
    assert mono.width("iiii", 50) == pytest.approx(mono.width("mmmm", 50))
    assert dejavu.width("iiii", 50) < dejavu.width("mmmm", 50) / 2


def test_a_font_not_installed_is_measured_with_fontconfigs_substitute(dejavu, caplog):
    if shutil.which("fc-match") is None:
        pytest.skip("fc-match is not installed")
    with caplog.at_level(logging.WARNING, logger="tts_worker.fonts"):
        font = fonts.resolve("No Such Font Family")
    assert not font.exact and font.path is not None
    assert "'No Such Font Family' is not installed: measuring with" in caplog.text


def test_without_any_font_file_widths_are_a_conservative_estimate(dejavu, monkeypatch, caplog):
    monkeypatch.setattr(fonts.shutil, "which", lambda name: None)
    monkeypatch.setattr(fonts, "KNOWN_FONTS", {})
    fonts.resolve.cache_clear()  # `dejavu` found the file before
    with caplog.at_level(logging.WARNING, logger="tts_worker.fonts"):
        font = fonts.resolve(fonts.DEFAULT_FONT)
    assert font.path is None and "estimated" in caplog.text
    assert font.width("abc", 100) == pytest.approx(3 * fonts.ESTIMATE_PER_CHAR * 100)
    assert font.width(SAMPLE, 64) > dejavu.width(SAMPLE, 64)  # errs towards shorter lines


def test_characters_the_font_lacks_count_one_size_wide_and_marks_nothing(dejavu):
    assert dejavu.width("日本", 80) == pytest.approx(160)
    assert dejavu.width("e\u0301", 80) == pytest.approx(dejavu.width("e", 80))  # a combining accent
