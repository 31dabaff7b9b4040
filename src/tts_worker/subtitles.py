"""Subtitle documents from word timings: ASS karaoke, SRT, VTT, and the timings as JSON and CSV.

Contract
- Input: `WordTiming`s (see `tts_worker.words`), one per word of the input text, in order,
  non-overlapping, inside [0, duration] seconds. A violation raises `ValueError`: it is a bug
  upstream, not a user error. Options come as one `SubtitleOptions` (subtitle_options.py); bad
  options raise `ValueError` naming the option.
- Output: `build(fmt, words, options, duration) -> (bytes, content_type)`, UTF-8, for each
  of `SUBTITLE_FORMATS`. ASS, SRT and VTT are written by pysubs2 only; no timestamp is
  formatted here. JSON (a list of objects) and CSV (`word,start,end,score,interpolated`) hold
  one row per word, times rounded to the millisecond and scores to 3 decimals.

Layout (`tts_worker.layout`): lines break by the width libass will draw them at, measured with
the font file libass will use (`tts_worker.fonts`), inside the preset's play area
(`tts_worker.styles`: the canvas minus the side margins, outline and shadow), and by
`max_chars_per_line` / `max_words_per_line`. Up to `max_lines` lines make one on-screen event, fewer
when that many would not fit between `margin_v` and the opposite safe edge. The ASS says
`WrapStyle: 2`, so libass never re-wraps a line; the `\\N` breaks are ours.

Outline: every word keeps an outline in every karaoke mode. With `ko`, whose ASS tag hides the
outline until a word is sung, each event is written twice: layer 0 (style `Outline`) draws the
text with its outline and shadow throughout, layer 1 (style `Default`) the `\\ko` karaoke, whose
outline is the highlight colour: a word's outline turns the highlight colour as it is spoken.

ASS karaoke: times are whole centiseconds (the ASS tick). Every boundary (event start,
each word's start and end, event end) is rounded once, and durations are differences of
rounded boundaries, so rounding never accumulates: each event's `\\k` durations sum exactly to
its duration, and each word's highlight starts at its rounded start time (within 5 ms).
Pauses between words are empty syllables (`{\\k20}`).

Escaping: in ASS text libass reads `{...}` as override tags and `\\N`, `\\n`, `\\h`, `\\{`, `\\}`
as escapes. Braces are written as libass's `\\{` and `\\}`; every backslash from the user's text is
followed by U+2060 WORD JOINER (zero width, not rendered), so it can never start an escape
or join with a following tag. SRT and VTT get the same word joiner after backslashes (pysubs2
would otherwise turn `\\N` into a line break or drop a cue it takes for a drawing); SRT also gets
one after `{` and `<` (see below) and VTT gets `&`, `<` and `>` as character references.

No structure from text: a word reaches a file only through `_clean` (control and format
characters removed, as at the job boundary: `sanitize.clean_text`; then white space of every
kind collapsed to single spaces), so a cue's text never holds a line break of its own, a blank
line or a NUL. In SRT and VTT every text line is then neutralised (`_neutral_line`) against the
readers that guess structure from text: `-->` gets a word joiner inside (`--\u2060>`), so no
line is a timing line; a `:` before a digit gets one after it, so `00:00:01,000` is no timestamp
even to pysubs2, which takes any line with two timestamps for a timing line; a line of digits
only gets one at its end, so no line is a cue number (pysubs2 drops a cue's last line of digits
as the next cue's number); a line starting with `NOTE`, `STYLE`, `REGION` or `WEBVTT` starts
with one, so no line opens a VTT block. SRT also gets one after `<` and `{`: ffmpeg (and many
players) read `<i>`, `<font ...>` and `{\\an8}` in SRT as markup and hide the text. What shows
is what was written: the word joiner has no width and no glyph.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Literal, get_args

import pysubs2

from tts_worker.errors import quote
from tts_worker.layout import Event, layout
from tts_worker.sanitize import clean_text
from tts_worker.styles import ass_styles, line_rules
from tts_worker.subtitle_options import RESOLUTIONS, SubtitleOptions
from tts_worker.words import WordTiming, rounded

logger = logging.getLogger(__name__)

SubtitleFormat = Literal["ass", "srt", "vtt", "json", "csv"]
SUBTITLE_FORMATS: tuple[SubtitleFormat, ...] = get_args(SubtitleFormat)

CONTENT_TYPES: dict[SubtitleFormat, str] = {
    "ass": "text/x-ssa; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}

# Tolerance for float noise when checking the input contract (seconds).
_EPS = 1e-6

_WJ = "\u2060"  # WORD JOINER: zero width, no glyph; breaks a token without changing what shows
_ASS_ESCAPES = str.maketrans({"\\": "\\\u2060", "{": "\\{", "}": "\\}"})
_SRT_ESCAPES = str.maketrans({"\\": "\\\u2060", "<": "<\u2060", "{": "{\u2060"})
_VTT_ESCAPES = str.maketrans({"\\": "\\\u2060", "&": "&amp;", "<": "&lt;", ">": "&gt;"})


# --- input -----------------------------------------------------------------------------------------


def _check_words(words: Sequence[WordTiming], duration: float | None) -> None:
    """Enforce the `WordTiming` contract; times that break it would make broken subtitles."""
    previous_end = 0.0
    for i, w in enumerate(words):
        start, end = w["start"], w["end"]
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"word {i} ({quote(w['word'])}) has a non-finite time: {start}..{end}")
        if start < -_EPS:
            raise ValueError(f"word {i} ({quote(w['word'])}) starts before the audio, at {start:.3f} s")
        if start < previous_end - _EPS or end < start - _EPS:
            raise ValueError(
                f"word {i} ({quote(w['word'])}) at {start:.3f}..{end:.3f} s is out of order or overlaps "
                f"the previous word ending at {previous_end:.3f} s"
            )
        if duration is not None and end > duration + _EPS:
            raise ValueError(f"word {i} ({quote(w['word'])}) ends at {end:.3f} s, after the audio ({duration:.3f} s)")
        previous_end = max(previous_end, end)


def _clean(word: str) -> str:
    """One word as one run of text: no control or format characters, no line breaks, no runs of white space."""
    return " ".join(clean_text(word).split())


_BLOCK_START = re.compile(r"NOTE|STYLE|REGION|WEBVTT", re.IGNORECASE)  # any line starting so
_COLON_DIGIT = re.compile(r":(?=\d)")
_DIGITS = re.compile(r"\d+")


def _neutral_line(line: str) -> str:
    """A line of SRT/VTT text that no reader can take for structure (see the module docstring)."""
    line = _COLON_DIGIT.sub(":" + _WJ, line.replace("-->", "--" + _WJ + ">"))
    if _DIGITS.fullmatch(line):
        line += _WJ
    if _BLOCK_START.match(line):
        line = _WJ + line
    return line


# --- ASS -------------------------------------------------------------------------------------------


def _cs(seconds: float) -> int:
    """Seconds to whole centiseconds, rounding halves up (not to even) so equal inputs agree."""
    return max(0, math.floor(seconds * 100 + 0.5))


def _karaoke_text(
    event: Event, words: Sequence[WordTiming], texts: Sequence[str], tag: str, size: int
) -> tuple[str, int, int]:
    """The event's ASS text and its start/end in centiseconds; the \\k durations sum to end - start.
    A word drawn smaller (`event.scales`) is set in `\\fs` and followed by the style's size again."""
    start = _cs(event.start)
    cursor = start
    parts: list[str] = []
    for n, line in enumerate(event.lines):
        if n:
            parts.append(r"\N")
        line_text = False
        for i in line:
            if line_text and texts[i]:
                parts.append(" ")
            line_text = line_text or bool(texts[i])
            word_start = max(_cs(words[i]["start"]), cursor)
            word_end = max(_cs(words[i]["end"]), word_start)
            if word_start > cursor:
                parts.append(f"{{\\{tag}{word_start - cursor}}}")  # the pause before this word
            scaled = f"\\fs{max(1.0, size * event.scales[i]):.1f}" if i in event.scales else ""
            parts.append(f"{{\\{tag}{word_end - word_start}{scaled}}}{texts[i].translate(_ASS_ESCAPES)}")
            if scaled:
                parts.append(f"{{\\fs{size}}}")
            cursor = word_end
    end = max(_cs(event.end), cursor)
    if end > cursor:
        parts.append(f"{{\\{tag}{end - cursor}}}")  # held on screen until the next event
    return "".join(parts), start, end


def _to_ass(words: Sequence[WordTiming], texts: Sequence[str], events: list[Event], opts: SubtitleOptions) -> str:
    subs = pysubs2.SSAFile()
    width, height = RESOLUTIONS[opts.resolution]
    # WrapStyle 2: libass never wraps; the layout's \N breaks are the only ones.
    subs.info.update(
        {"PlayResX": str(width), "PlayResY": str(height), "ScaledBorderAndShadow": "yes", "WrapStyle": "2"}
    )
    subs.styles = ass_styles(opts)
    layered = opts.karaoke == "ko"
    for event in events:
        text, start, end = _karaoke_text(event, words, texts, opts.karaoke, opts.size)
        if layered:  # the same text and layout without the tag that hides the outline
            base, _, _ = _karaoke_text(event, words, texts, "k", opts.size)
            subs.events.append(pysubs2.SSAEvent(start=start * 10, end=end * 10, text=base, style="Outline"))
        subs.events.append(
            pysubs2.SSAEvent(start=start * 10, end=end * 10, text=text, style="Default", layer=int(layered))
        )
    return subs.to_string("ass")


# --- SRT / VTT -------------------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return max(0, math.floor(seconds * 1000 + 0.5))


def _to_srt_vtt(
    fmt: str, words: Sequence[WordTiming], texts: Sequence[str], events: list[Event], opts: SubtitleOptions
) -> str:
    escapes = _VTT_ESCAPES if fmt == "vtt" else _SRT_ESCAPES
    if opts.cue_level == "word":
        cues = [(w["start"], w["end"], [text]) for w, text in zip(words, texts, strict=True)]
    else:
        cues = [(e.start, e.end, [" ".join(texts[i] for i in line if texts[i]) for line in e.lines]) for e in events]
    subs = pysubs2.SSAFile()
    for start, end, lines in cues:
        lines = [_neutral_line(line).translate(escapes) for line in lines if line]
        if lines:  # a cue without text would end the file early for SRT/VTT readers
            subs.events.append(pysubs2.SSAEvent(start=_ms(start), end=_ms(end), text=r"\N".join(lines)))
    # keep_ssa_tags: pass the text through as is (pysubs2 would otherwise drop anything in braces).
    return subs.to_string(fmt, apply_styles=False, keep_ssa_tags=True)


# --- JSON / CSV ------------------------------------------------------------------------------------


def _to_json(words: Sequence[WordTiming]) -> str:
    return json.dumps(rounded(words), ensure_ascii=False, indent=1) + "\n"


def _to_csv(words: Sequence[WordTiming]) -> str:
    out = io.StringIO()
    spoken = ["spoken"] if any("spoken" in w for w in words) else []  # a column only when a text was normalised
    fields = ["word", *spoken, "start", "end", "score", "interpolated"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rounded(words):
        # None -> empty cell (DictWriter's default); booleans as in the JSON.
        writer.writerow({**row, "interpolated": "true" if row["interpolated"] else "false"})
    return out.getvalue()


# --- entry point -----------------------------------------------------------------------------------


def build(
    fmt: SubtitleFormat,
    words: Sequence[WordTiming],
    options: SubtitleOptions | None = None,
    duration: float | None = None,
) -> tuple[bytes, str]:
    """One document of format `fmt` (one of `SUBTITLE_FORMATS`) from `words`: (UTF-8 bytes, content type).

    `duration` is the audio's length in seconds; when given, words must end inside it.
    """
    if fmt not in SUBTITLE_FORMATS:
        raise ValueError(f"subtitle format must be one of {', '.join(SUBTITLE_FORMATS)}, got {fmt!r}")
    opts = options or SubtitleOptions()
    _check_words(words, duration)
    if fmt == "json":
        text = _to_json(words)
    elif fmt == "csv":
        text = _to_csv(words)
    else:
        texts = [_clean(w["word"]) for w in words]
        events = layout(words, texts, line_rules(opts, len(words)))
        text = _to_ass(words, texts, events, opts) if fmt == "ass" else _to_srt_vtt(fmt, words, texts, events, opts)
        logger.debug("built %s: %d words in %d events", fmt, len(words), len(events))
    return text.encode("utf-8"), CONTENT_TYPES[fmt]
