"""Resolution presets: the canvas subtitles are drawn on, where text may go, and readable defaults.

Contract: `PRESETS[name]` is a frozen `Preset`, for each `Resolution` (the schema's literal, checked
against `PRESETS` at import, as audio formats are). Its `safe_*` insets (canvas pixels) bound the text:
the left and right ones are the ASS side margins, the bottom and top ones the default `margin_v` for
text at the bottom or top, and the edge on the other side that an event's lines must stay clear of.

Where the numbers come from (measured with DejaVu Sans, the font the worker ships, through libass):
- Line pitch in libass is exactly the ASS font size (the font's OS/2 win ascent + descent is scaled to
  it), and average English text advances 0.43 x font size per character, spaces included.
- `landscape` (1920x1080): 64 px lines are 5.9 % of the frame height, the usual size of film
  subtitles; 42 characters, the broadcast line limit, then take about 1160 px, 2/3 of the play width.
- `vertical` (1080x1920, shorts and reels): the platforms' buttons cover the right edge (about 15 %
  of the width) and their captions and progress bar the bottom (about 20 %), their tabs the top
  (about 10 %). 80 px makes 24 characters, the line limit, fill the 840 px left between the side
  insets (24 x 0.43 x 80 = 826 px); at the old 64 px such a line spanned 61 % of the frame width.
- `square` (1080x1080): 32 characters at 64 px take 880 of the 952 px between 5 % side insets.
- Outline 5.5 % of the font size and a 1.5-2 px shadow keep white text readable on a white frame
  (the tests render one and measure the outline pixels).

From options (`tts_worker.subtitle_options.SubtitleOptions`) this module also derives the ASS styles
(`ass_styles`) and the limits lines must fit in (`line_rules`): the width between the side insets
less twice the outline and the shadow, and as many lines (the line pitch is the font size) as fit
between `margin_v` and the safe inset on the other side. `margin_v` is where the ink ends: the ASS
margin adds the outline (and below, the shadow) to it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import pysubs2

from tts_worker import fonts
from tts_worker.layout import LineRules

if TYPE_CHECKING:
    from tts_worker.subtitle_options import SubtitleOptions


@dataclass(frozen=True)
class Preset:
    width: int
    height: int
    font_size: int
    outline: float
    shadow: float
    max_chars_per_line: int
    safe_left: int
    safe_right: int
    safe_top: int
    safe_bottom: int


Resolution = Literal["vertical", "landscape", "square"]
"""A preset's name: what the schema's resolution fields accept (`options.VideoRequest`), in the order
a refusal lists them."""

PRESETS: dict[Resolution, Preset] = {
    "landscape": Preset(1920, 1080, 64, 3.5, 1.5, 42, safe_left=96, safe_right=96, safe_top=54, safe_bottom=60),
    "vertical": Preset(1080, 1920, 80, 4.5, 2.0, 24, safe_left=60, safe_right=180, safe_top=200, safe_bottom=480),
    "square": Preset(1080, 1080, 64, 3.5, 1.5, 32, safe_left=64, safe_right=64, safe_top=64, safe_bottom=72),
}
assert set(PRESETS) == set(get_args(Resolution))  # one list of resolutions: a new preset is named in both

POSITIONS = {"bottom": pysubs2.Alignment.BOTTOM_CENTER, "middle": pysubs2.Alignment.MIDDLE_CENTER,
             "top": pysubs2.Alignment.TOP_CENTER}  # fmt: skip

SLACK = 2.0
"""Pixels of width kept free besides the outline and shadow (measurement agrees with libass within 1 px)."""


def line_rules(opts: SubtitleOptions, word_count: int) -> LineRules:
    """The play area of `opts` as line limits."""
    p = opts.preset
    font = fonts.resolve(opts.font)
    size = opts.size
    outline = max(opts.outline_width, ko_outline(opts))
    border = 2 * outline + opts.shadow_depth
    if opts.position == "middle":
        height = 2 * min(p.height / 2 - p.safe_top, p.height / 2 - p.safe_bottom) - border
    else:  # from the ASS margin (margin_v plus the overhang) to the safe inset on the other side, less the outline
        other = p.safe_bottom if opts.position == "top" else p.safe_top
        height = p.height - opts.vertical_margin - math.ceil(_overhang(opts)) - other - outline
    return LineRules(
        measure=lambda text: font.width(text, size),
        max_width=max(1.0, p.width - p.safe_left - p.safe_right - border - SLACK),
        max_chars=opts.chars_per_line,
        max_words=opts.max_words_per_line or max(1, word_count),
        max_lines=max(1, min(opts.max_lines, int(height // size))),
        split_pause=opts.split_pause,
    )


def _overhang(opts: SubtitleOptions) -> float:
    """How far ink reaches past the text box towards `margin_v`'s edge: the outline, and and below, the shadow."""
    if opts.position == "middle":
        return 0.0
    return max(opts.outline_width, ko_outline(opts)) + (opts.shadow_depth if opts.position == "bottom" else 0.0)


def colour(hex_rgb: str, alpha: int = 0) -> pysubs2.Color:
    return pysubs2.Color(int(hex_rgb[1:3], 16), int(hex_rgb[3:5], 16), int(hex_rgb[5:7], 16), alpha)


def ko_outline(opts: SubtitleOptions) -> float:
    """Width of `ko`'s highlight outline: the outline's, or 5 % of the font size when the outline is 0."""
    if opts.karaoke != "ko":
        return 0.0
    return opts.outline_width or round(opts.size * 0.05, 1)


def ass_styles(opts: SubtitleOptions) -> dict[str, pysubs2.SSAStyle]:
    """`Default` draws the karaoke. With `ko`, `Outline` (layer 0) draws the text with its outline and
    shadow throughout, and `Default` (layer 1) only what `\\ko` shows once a word is sung: the text and an
    outline in the highlight colour."""
    p = opts.preset
    style = pysubs2.SSAStyle(
        fontname=opts.font,
        fontsize=float(opts.size),
        primarycolor=colour(opts.highlight_colour),
        secondarycolor=colour(opts.primary_colour),
        outlinecolor=colour(opts.outline_colour),
        backcolor=pysubs2.Color(0, 0, 0, 0x80),
        outline=opts.outline_width,
        shadow=opts.shadow_depth,
        alignment=POSITIONS[opts.position],
        marginl=p.safe_left,
        marginr=p.safe_right,
        marginv=opts.vertical_margin + math.ceil(_overhang(opts)),
    )
    if opts.karaoke != "ko":
        return {"Default": style}
    text = colour(opts.primary_colour)
    return {
        "Outline": dataclasses.replace(style, primarycolor=text, secondarycolor=text),
        "Default": dataclasses.replace(
            style,
            primarycolor=text,
            secondarycolor=colour(opts.primary_colour, alpha=0xFF),  # nothing drawn before the word is sung
            outlinecolor=colour(opts.highlight_colour),
            outline=ko_outline(opts),
            shadow=0.0,
        ),
    }
