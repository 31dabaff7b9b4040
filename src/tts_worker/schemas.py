"""The job boundary: pydantic models for each operation's input, and the one
place where the original API's aliases are mapped to canonical names.

`parse_request(raw, limits)` returns a validated request or raises
`InvalidInput` / `UnknownOperation` with one message naming every bad field
(the first ten of them), each as `<field path>: <problem>`.

Every string anywhere in the input must be valid Unicode, and the document small in shape
(`sanitize.input_problems`), so no request can make a result or an error that fails to
serialise, or hand pydantic millions of items. `text` and `ref_text` are cleaned
of control and format characters (`sanitize.clean_text`) before any limit is checked, and must
hold something to speak. Names (`voice`, `voice_name`, `cursor`) and `language` are matched whole:
no surrounding white space, no trailing newline. Error messages show user input only through
`errors.quote`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tts_worker.audio import AudioFormat
from tts_worker.errors import InvalidInput, UnknownOperation, quote
from tts_worker.normalize import Lexicon
from tts_worker.sanitize import check_size, input_problems, path_part, speakable_text
from tts_worker.settings import DEFAULT_MAX_ERROR_RATE, MAX_QUALITY_ATTEMPTS, QualityMode
from tts_worker.subtitles import SUBTITLE_FORMATS, SubtitleFormat, SubtitleOptions

# Canonical operation names, and what the original API (and common spellings) call them.
OPERATION_ALIASES: dict[str, str] = {
    "synthesize": "synthesize",
    "tts": "synthesize",
    "generate": "synthesize",
    "align": "align",
    "upload_voice": "upload_voice",
    "upload": "upload_voice",
    "list_voices": "list_voices",
    "delete_voice": "delete_voice",
    "delete": "delete_voice",
}

# Matched with fullmatch: `$` would let a trailing newline through.
_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_URL_PREFIXES = ("https://", "http://", "s3://")


MAX_URL_CHARS = 8192
MAX_KEY_CHARS = 1024  # S3's own limit for a key


@dataclass(frozen=True)
class Limits:
    """What this worker accepts beyond the schema itself."""

    max_text_chars: int
    max_text_bytes: int | None = None
    """Longest `text` in UTF-8 bytes (what F5-TTS's generated duration follows); None: 1.2 x `max_text_chars`."""
    languages: tuple[str, ...] | None = None
    """Languages with a baked aligner; word timings or subtitles in any other are refused. None: not checked."""

    @property
    def text_bytes(self) -> int:
        return self.max_text_bytes if self.max_text_bytes is not None else self.max_text_chars * 6 // 5


def voice_name(value: str) -> str:
    """A library voice name: `my-voice` or the original API's `my-voice.wav`; no paths, no traversal."""
    name = value[:-4] if value.lower().endswith(".wav") else value
    if not _VOICE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(an optional '.wav' suffix is ignored)"
        )
    return name


def _lower(value: Any) -> Any:
    return value.lower().strip() if isinstance(value, str) else value


VoiceName = Annotated[str, BeforeValidator(lambda v: voice_name(v) if isinstance(v, str) else v)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    operation: str


_LANGUAGE = re.compile(r"[a-z]{2,3}")


def _language(value: Any) -> Any:
    if isinstance(value, str):
        value = value.lower()
        if not _LANGUAGE.fullmatch(value):
            raise ValueError("should be a language code such as 'en' or 'de'")
    return value


def _ref_text(value: str) -> str:
    return speakable_text(value, "holds no letter or digit, so it can't be what the reference clip says")


Language = Annotated[str, BeforeValidator(_language)]
RefText = Annotated[str, AfterValidator(_ref_text), Field(max_length=1000)]
Url = Annotated[str, Field(max_length=MAX_URL_CHARS)]


class SubtitlesRequest(BaseModel):
    """Which subtitle files to write and how they look. Style fields left out take the defaults of
    `tts_worker.subtitles.SubtitleOptions` (documented in docs/API.md); that class checks the values."""

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
        _subtitle_options(style, name)
        return value

    @model_validator(mode="after")
    def _style(self) -> SubtitlesRequest:
        _subtitle_options(self.style(), None)  # rules that span fields (margin_v within the resolution)
        return self

    def style(self) -> dict[str, Any]:
        return self.model_dump(exclude={"formats"}, exclude_none=True)


_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")


class VideoRequest(BaseModel):
    """A rendered MP4 of the job's audio with its karaoke burnt in (`tts_worker.video`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    resolution: Literal["vertical", "landscape", "square"] | None = None  # None: the subtitles', else landscape
    background: str = "#000000"
    format: Literal["mp4"] = "mp4"

    @field_validator("background")
    @classmethod
    def _background(cls, value: str) -> str:
        value = value.strip()
        if not value or (value.startswith("#") and not _COLOUR.match(value)):
            raise ValueError("should be a colour written as #RRGGBB, or an image URL (https://, s3://) or base64")
        return value


def _subtitle_options(style: dict[str, Any], field: str | None) -> None:
    try:
        SubtitleOptions(**style)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message.removeprefix(f"{field} ") if field else message) from None


def _original_subtitle_options(data: Any) -> Any:
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
            raise ValueError(f"options.subtitle_format: should be one of {', '.join(SUBTITLE_FORMATS)}")
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


class _TimedRequest(Request):
    """A text to be spoken or aligned, with what to return about its timing."""

    text: str
    language: Language = "en"
    word_timings: bool = Field(True, validation_alias=AliasChoices("word_timings", "return_word_timings"))
    subtitles: SubtitlesRequest | None = None
    video: VideoRequest | None = None
    normalize: bool = True  # speak numbers, symbols and abbreviations as words (tts_worker.normalize)
    lexicon: Lexicon | None = None  # per-request pronunciations, applied before the normaliser

    @model_validator(mode="before")
    @classmethod
    def _options(cls, data: Any) -> Any:
        return _original_subtitle_options(data)

    @model_validator(mode="after")
    def _video_style(self) -> _TimedRequest:
        """The subtitle style must also hold at the video's resolution (margin_v within its height)."""
        if self.video is not None and self.video.resolution is not None and self.subtitles is not None:
            try:
                _subtitle_options({**self.subtitles.style(), "resolution": self.video.resolution}, None)
            except ValueError as exc:
                raise ValueError(f"video.resolution: at {self.video.resolution}, subtitles.{exc}") from None
        return self

    @field_validator("text")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        return _checked_text(value, info)

    @model_validator(mode="after")
    def _aligned_language(self, info: ValidationInfo) -> _TimedRequest:
        """Timings need the language's aligner: refused now, before anything is synthesised or fetched."""
        limits: Limits | None = (info.context or {}).get("limits")
        known = limits.languages if limits else None
        if known is not None and (self.word_timings or self.subtitles) and self.language not in known:
            raise ValueError(
                f"language: no alignment model for {quote(self.language)} in this worker (baked: "
                f"{', '.join(known) or 'none'}), so word_timings and subtitles can't be made (set word_timings "
                "to false and ask for no subtitles to get the audio alone)"
            )
        return self


class SynthesizeRequest(_TimedRequest):
    operation: Literal["synthesize"] = "synthesize"
    voice: VoiceName | None = Field(None, validation_alias=AliasChoices("voice", "local_voice"))
    voice_url: Url | None = None
    voice_base64: str | None = None
    ref_text: RefText | None = Field(None, validation_alias=AliasChoices("ref_text", "reference_text"))
    speed: float = Field(1.0, ge=0.5, le=2.0, allow_inf_nan=False)
    nfe_steps: int = Field(32, ge=1, le=128)
    cfg_strength: float = Field(2.0, ge=0.0, le=10.0, allow_inf_nan=False)
    sway_sampling_coef: float = Field(-1.0, ge=-1.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    remove_silence: bool = False
    output_format: Annotated[AudioFormat, BeforeValidator(_lower)] = "wav"
    stream: bool = False  # each chunk stored and yielded as it is ready (an endpoint deployed with STREAMING)
    quality: QualityRequest | None = None  # the quality guard; None = the worker's defaults

    @model_validator(mode="before")
    @classmethod
    def _voice_given_as_url(cls, data: Any) -> Any:
        """The original API's `local_voice` may hold a URL: route it to `voice_url`."""
        if isinstance(data, dict):
            for key in ("local_voice", "voice"):
                value = data.get(key)
                if isinstance(value, str) and value.strip().lower().startswith(_URL_PREFIXES):
                    data = {k: v for k, v in data.items() if k != key}
                    if "voice_url" in data:
                        raise ValueError(f"{key}: give the voice once, as a name, voice_url or voice_base64")
                    data["voice_url"] = value.strip()
        return data

    @model_validator(mode="after")
    def _one_voice(self) -> SynthesizeRequest:
        given = [k for k in ("voice", "voice_url", "voice_base64") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"{given[1]}: give the voice once, as a name, voice_url or voice_base64")
        if self.ref_text is not None and self.voice is not None:
            raise ValueError("ref_text: only with voice_url or voice_base64 (library voices keep their own text)")
        return self


class AlignRequest(_TimedRequest):
    """Word timings (and subtitles) for audio that exists already, with its text."""

    operation: Literal["align"] = "align"
    audio_url: Url | None = None
    audio_base64: str | None = None
    audio_key: str | None = Field(
        None, max_length=MAX_KEY_CHARS, description="A key in this worker's storage, e.g. a synthesis output"
    )
    quality: AlignQualityRequest | None = None  # {"mode": "check"}: judge the audio against its text

    @model_validator(mode="after")
    def _one_audio(self) -> AlignRequest:
        given = [k for k in ("audio_url", "audio_base64", "audio_key") if getattr(self, k) is not None]
        if len(given) != 1:
            field = given[1] if given else "audio_url"
            raise ValueError(f"{field}: give the audio exactly once: audio_url, audio_base64 or audio_key")
        return self


class UploadVoiceRequest(Request):
    operation: Literal["upload_voice"] = "upload_voice"
    voice_name: VoiceName = Field(validation_alias=AliasChoices("voice_name", "name"))
    voice_url: Url | None = Field(None, validation_alias=AliasChoices("voice_url", "voice_file_url"))
    voice_base64: str | None = Field(None, validation_alias=AliasChoices("voice_base64", "voice_file"))
    ref_text: RefText | None = Field(None, validation_alias=AliasChoices("ref_text", "reference_text"))
    language: Language | None = None
    replace: bool = False

    @model_validator(mode="after")
    def _one_audio(self) -> UploadVoiceRequest:
        if (self.voice_url is None) == (self.voice_base64 is None):
            field = "voice_base64" if self.voice_url is not None else "voice_url"
            raise ValueError(f"{field}: give the voice audio exactly once: voice_url (voice_file_url) or voice_base64")
        return self


class ListVoicesRequest(Request):
    operation: Literal["list_voices"] = "list_voices"
    limit: int = Field(50, ge=1, le=200)
    cursor: VoiceName | None = None


class DeleteVoiceRequest(Request):
    operation: Literal["delete_voice"] = "delete_voice"
    voice_name: VoiceName = Field(validation_alias=AliasChoices("voice_name", "name"))


def _checked_text(value: str, info: ValidationInfo) -> str:
    value = speakable_text(
        value, "holds nothing to speak: no letter or digit (only punctuation, symbols or invisible text)"
    )
    limits: Limits | None = (info.context or {}).get("limits")
    if limits:
        check_size(value, limits.max_text_chars, limits.text_bytes)
    return value


REQUESTS: dict[str, type[Request]] = {
    "synthesize": SynthesizeRequest,
    "align": AlignRequest,
    "upload_voice": UploadVoiceRequest,
    "list_voices": ListVoicesRequest,
    "delete_voice": DeleteVoiceRequest,
}


# Pydantic messages that name its own classes, in the words of the API.
_TYPE_MESSAGES = {
    "model_type": "should be an object",
    "model_attributes_type": "should be an object",
    "dataclass_type": "should be an object",
    "dict_type": "should be an object",
    "list_type": "should be a list",
    "string_type": "should be a valid string",
    "is_instance_of": "has the wrong type",
}
_MAX_ERRORS = 10


def _describe(err: Any) -> str:
    # Field names the user made up (unknown fields) are quoted and escaped, like any other input.
    loc = ".".join(path_part(p) for p in err["loc"])
    kind = err["type"]
    # Our own messages (value errors) quote input through errors.quote; pydantic's do not echo input.
    msg = _TYPE_MESSAGES.get(kind) or str(err["msg"]).removeprefix("Value error, ")
    if not loc:
        # A whole-model rule: the message names its own field(s).
        return msg if ":" in msg.split(" ")[0] else f"input: {msg}"
    if kind == "extra_forbidden":
        return f"{loc}: unknown field"
    if kind == "missing":
        return f"{loc}: is required"
    for prefix in ("Input should", "String should", "List should", "Value should"):
        if msg.startswith(prefix):
            msg = "should" + msg[len(prefix) :]
    return f"{loc}: {msg}"


def _operation(raw: dict[str, Any]) -> str:
    names = {key: raw.pop(key) for key in ("operation", "endpoint") if key in raw}
    for key, value in names.items():
        if not isinstance(value, str):
            raise InvalidInput(f"{key}: should be a string naming an operation")
    canonical = {OPERATION_ALIASES.get(v.strip().lower()) for v in names.values()}
    if len(canonical) > 1:
        raise InvalidInput("endpoint: operation and endpoint name different operations (give one)")
    if names and None in canonical:
        key, value = next(iter(names.items()))
        raise UnknownOperation(
            f"{key}: {quote(value, 40)} is not an operation (use one of {', '.join(sorted(REQUESTS))})"
        )
    return canonical.pop() if canonical else "synthesize"  # type: ignore[return-value]


def parse_request(raw: object, limits: Limits) -> Request:
    if not isinstance(raw, dict):
        raise InvalidInput("input: should be a JSON object")
    # Before anything reads the input (the models' own before-validators run ahead of any base-class
    # one, so this can't live on `Request`): every string and key of the whole document, nested ones too,
    # and its size.
    problems = input_problems(raw)
    if problems:
        raise InvalidInput("; ".join(problems))
    data = dict(raw)
    operation = _operation(data)
    try:
        return REQUESTS[operation].model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        problems = [_describe(e) for e in errors[:_MAX_ERRORS]]
        if len(errors) > _MAX_ERRORS:
            problems.append(f"input: {len(errors) - _MAX_ERRORS} more problems not shown")
        raise InvalidInput("; ".join(problems)) from None
