"""What a caller may choose about subtitles, checked: `SubtitleOptions`, one frozen object of plain scalars.

Each field's docstring is its contract (docs/API.md's subtitle table says the same). A bad value raises
`ValueError` naming the option (`"font_size must be a whole number from 1 to 500, got 0"`); the job
boundary (`options.SubtitlesRequest`) checks a request's style by building one, so the rules live
here alone. Fields left None take the resolution preset's value (`tts_worker.styles.PRESETS`, which
`RESOLUTIONS` lists with their canvas sizes). subtitles.py builds the documents from these options.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tts_worker.errors import quote
from tts_worker.fonts import DEFAULT_FONT
from tts_worker.styles import POSITIONS, PRESETS, Preset, Resolution

RESOLUTIONS = {name: (p.width, p.height) for name, p in PRESETS.items()}
KARAOKE_TAGS = ("k", "kf", "ko")
CUE_LEVELS = ("line", "word")

_COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


@dataclass(frozen=True)
class SubtitleOptions:
    """How subtitles look and how words are laid out. Every field is a plain scalar.

    Colours are "#RRGGBB". ASS mapping: `primary_colour` is the text before its word is
    spoken (ASS SecondaryColour), `highlight_colour` the text once spoken (ASS PrimaryColour);
    with `karaoke="ko"` each word's outline turns `highlight_colour` as it is spoken instead.
    Options left None take the resolution preset's value (`tts_worker.styles.PRESETS`).
    """

    font: str = DEFAULT_FONT
    """Font family name (ASS only), 1-100 characters, no commas or control characters; lines are measured with
    the file fontconfig finds for it."""
    font_size: int | None = None
    """ASS font size (the line pitch, in pixels of the preset resolution), 1-500; None: the preset's."""
    primary_colour: str = "#FFFFFF"
    """Text colour before a word is highlighted (ASS only)."""
    highlight_colour: str = "#FFD700"
    """Text colour of a word from its start time on (ASS only)."""
    outline_colour: str = "#000000"
    """Colour of the text outline (ASS only)."""
    outline: float | None = None
    """Outline width in pixels, 0-50 (ASS only); None: the preset's."""
    shadow: float | None = None
    """Shadow offset in pixels, 0-50 (ASS only); None: the preset's."""
    position: str = "bottom"
    """Where lines sit: "bottom", "middle" or "top", horizontally centred (ASS only)."""
    margin_v: int | None = None
    """Distance in pixels from the top/bottom edge (ASS only), 0 to the canvas height less the font size, so a
    line always fits on the canvas; None: the preset's safe inset there."""
    resolution: Resolution = "landscape"
    """"landscape" (1920x1080), "vertical" (1080x1920) or "square" (1080x1080): the ASS canvas."""
    karaoke: str = "k"
    """ASS karaoke: "k" (word switches colour), "kf" (colour sweeps over the word), "ko" (outline turns)."""
    max_chars_per_line: int | None = None
    """Most characters on a line (all formats), 1-1000, besides the measured width; None: the preset's."""
    max_words_per_line: int | None = None
    """Most words on a line (all formats), 1-1000; None: no limit."""
    max_lines: int = 2
    """Most lines shown at once (one ASS event or one line-level SRT/VTT cue), 1-10."""
    split_pause: float = 1.0
    """A silence between words at least this long (seconds, > 0) ends the lines on screen."""
    cue_level: str = "line"
    """SRT/VTT cues: "line" (the lines on screen, as in ASS) or "word" (one cue per word, its exact times)."""

    def __post_init__(self) -> None:
        for name in ("primary_colour", "highlight_colour", "outline_colour"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _COLOUR.fullmatch(value):
                raise ValueError(f"{name} must be a colour written as #RRGGBB, got {quote(value)}")
        # ASS style lines are comma-separated: a comma or line break in the name would break the file.
        font = self.font
        if not isinstance(font, str) or not font.strip() or len(font) > 100 or "," in font or not _plain(font):
            raise ValueError(
                f"font must be a font name of 1-100 characters without commas or control characters, got {quote(font)}"
            )
        _check_choice("position", self.position, tuple(POSITIONS))
        _check_choice("resolution", self.resolution, tuple(RESOLUTIONS))
        _check_choice("karaoke", self.karaoke, KARAOKE_TAGS)
        _check_choice("cue_level", self.cue_level, CUE_LEVELS)
        if self.font_size is not None:
            _check_int("font_size", self.font_size, 1, 500)
        _check_int("max_lines", self.max_lines, 1, 10)
        if self.max_chars_per_line is not None:
            _check_int("max_chars_per_line", self.max_chars_per_line, 1, 1000)
        if self.max_words_per_line is not None:
            _check_int("max_words_per_line", self.max_words_per_line, 1, 1000)
        if self.margin_v is not None:
            # One line of text must fit between the margin and the far edge of the canvas.
            height = RESOLUTIONS[self.resolution][1]
            size = PRESETS[self.resolution].font_size if self.font_size is None else self.font_size
            high = max(0, height - size)
            if not isinstance(self.margin_v, int) or isinstance(self.margin_v, bool) or not 0 <= self.margin_v <= high:
                raise ValueError(
                    f"margin_v must be a whole number from 0 to {high} (the {self.resolution} canvas is {height} "
                    f"pixels high, less font_size {size}), got {quote(self.margin_v)}"
                )
        if self.outline is not None:
            _check_number("outline", self.outline, 0, 50)
        if self.shadow is not None:
            _check_number("shadow", self.shadow, 0, 50)
        if not (_is_number(self.split_pause) and 0 < self.split_pause < math.inf):
            raise ValueError(f"split_pause must be a number of seconds greater than 0, got {quote(self.split_pause)}")

    @property
    def preset(self) -> Preset:
        return PRESETS[self.resolution]

    @property
    def size(self) -> int:
        """`font_size`, or the preset's."""
        return self.preset.font_size if self.font_size is None else self.font_size

    @property
    def outline_width(self) -> float:
        return self.preset.outline if self.outline is None else float(self.outline)

    @property
    def shadow_depth(self) -> float:
        return self.preset.shadow if self.shadow is None else float(self.shadow)

    @property
    def chars_per_line(self) -> int:
        """`max_chars_per_line`, or the preset's default."""
        return self.max_chars_per_line or self.preset.max_chars_per_line

    @property
    def vertical_margin(self) -> int:
        """`margin_v`, or the preset's safe inset on the edge the text sits at."""
        if self.margin_v is not None:
            return self.margin_v
        return self.preset.safe_top if self.position == "top" else self.preset.safe_bottom


def _plain(text: str) -> bool:
    """No control, format or line/paragraph separator character (spaces are fine)."""
    return text.replace(" ", "").isprintable()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {quote(value)}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {quote(value)}")


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high):
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {quote(value)}")
