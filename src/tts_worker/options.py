"""The nested objects of a request: `subtitles`, `video` and `quality`, and the original API's
`options: {create_subtitles, subtitle_format}` that stands for `subtitles`.

Each style value of `subtitles` is checked by the subtitle builder's own rules
(`tts_worker.subtitle_options.SubtitleOptions`), so they live in one place.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tts_worker.sanitize import path_part
from tts_worker.settings import DEFAULT_MAX_ERROR_RATE, MAX_QUALITY_ATTEMPTS, QualityMode
from tts_worker.styles import Resolution
from tts_worker.subtitle_options import SubtitleOptions
from tts_worker.subtitles import SUBTITLE_FORMATS, SubtitleFormat


class SubtitlesRequest(BaseModel):
    """Which subtitle files to write and how they look. Style fields left out take the defaults of
    `tts_worker.subtitle_options.SubtitleOptions` (documented in docs/API.md); that class checks the values."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    formats: list[SubtitleFormat] = Field(["ass", "srt", "vtt"], min_length=1)
    font: str | None = None
    font_size: int | None = None
    primary_colour: str | None = None
    highlight_colour: str | None = None
    outline_colour: str | None = None
    outline: float | None = None
    shadow: float | None = None
    position: str | None = None
    resolution: str | None = None  # before margin_v and after font_size: margin_v's range depends on both
    margin_v: int | None = None
    karaoke: str | None = None
    max_chars_per_line: int | None = None
    max_words_per_line: int | None = None
    max_lines: int | None = None
    split_pause: float | None = None
    cue_level: str | None = None

    @field_validator("formats", mode="before")
    @classmethod
    def _formats(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            # Duplicates dropped; an item that is not a string is left for the type check to name.
            strings = list(dict.fromkeys(v.lower().strip() for v in value if isinstance(v, str)))
            value = strings + [v for v in value if not isinstance(v, str)]
        return value

    @field_validator("*")
    @classmethod
    def _style_field(cls, value: Any, info: ValidationInfo) -> Any:
        # Each style value is checked by the subtitle builder's own rules, so they live in one place.
        name = info.field_name or ""
        if name == "formats" or value is None:
            return value
        style = {name: value}
        if name == "margin_v":  # within the chosen canvas, less the font size
            if not {"resolution", "font_size"} <= set(info.data):
                return value  # one of them is invalid and reported; no second error from it
            style |= {k: info.data[k] for k in ("resolution", "font_size") if info.data[k] is not None}
        subtitle_options(style, name)
        return value

    @model_validator(mode="after")
    def _style(self) -> SubtitlesRequest:
        subtitle_options(self.style(), None)  # rules that span fields (margin_v within the resolution)
        return self

    def style(self) -> dict[str, Any]:
        return self.model_dump(exclude={"formats"}, exclude_none=True)


_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")


class VideoRequest(BaseModel):
    """A rendered MP4 of the job's audio with its karaoke burnt in (`tts_worker.video`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    resolution: Resolution | None = None  # None: the subtitles', else landscape
    background: str = "#000000"
    format: Literal["mp4"] = "mp4"

    @field_validator("background")
    @classmethod
    def _background(cls, value: str) -> str:
        value = value.strip()
        if not value or (value.startswith("#") and not _COLOUR.match(value)):
            raise ValueError("should be a colour written as #RRGGBB, or an image URL (https://, s3://) or base64")
        return value


def subtitle_options(style: dict[str, Any], field: str | None) -> None:
    try:
        SubtitleOptions(**style)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message.removeprefix(f"{field} ") if field else message) from None


def original_subtitle_options(data: Any) -> Any:
    """The original API's `options: {create_subtitles, subtitle_format}` -> `subtitles: {formats}`."""
    if not isinstance(data, dict) or "options" not in data:
        return data
    data = dict(data)
    options = data.pop("options")
    if "subtitles" in data:
        raise ValueError("options: give subtitles once, as subtitles or as the original API's options, not both")
    if not isinstance(options, dict):
        raise ValueError("options: should be an object")
    unknown = [key for key in options if key not in ("create_subtitles", "subtitle_format")]
    if unknown:
        raise ValueError(f"options.{path_part(unknown[0])}: unknown field")
    create = options.get("create_subtitles", False)
    if not isinstance(create, bool):
        raise ValueError("options.create_subtitles: should be a valid boolean")
    if create:
        fmt = options.get("subtitle_format", "ass")
        if not isinstance(fmt, str):
            raise ValueError("options.subtitle_format: should be a string")
        if fmt.lower().strip() not in SUBTITLE_FORMATS:
            # Worded as pydantic words the same rule for `subtitles.formats`.
            choices = ", ".join(repr(f) for f in SUBTITLE_FORMATS[:-1]) + f" or {SUBTITLE_FORMATS[-1]!r}"
            raise ValueError(f"options.subtitle_format: should be {choices}")
        data["subtitles"] = {"formats": [fmt]}
    return data


class QualityRequest(BaseModel):
    """A synthesize request's `quality`. Fields left out take the worker's settings (QUALITY_MODE,
    QUALITY_MAX_ATTEMPTS) and DEFAULT_MAX_ERROR_RATE."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    mode: QualityMode | None = None
    max_attempts: int | None = Field(None, ge=1, le=MAX_QUALITY_ATTEMPTS)
    max_error_rate: float = Field(DEFAULT_MAX_ERROR_RATE, ge=0.0, le=1.0, allow_inf_nan=False)


class AlignQualityRequest(BaseModel):
    """An align request's `quality`: existing audio can only be checked, not re-sampled."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    mode: Literal["off", "check"] = "check"
    max_error_rate: float = Field(DEFAULT_MAX_ERROR_RATE, ge=0.0, le=1.0, allow_inf_nan=False)
