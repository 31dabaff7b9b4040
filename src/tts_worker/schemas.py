"""The job boundary: pydantic models for each operation's input, with the original API's
field aliases (`parsing.parse_request` turns a job's raw input into one of them).

Every string anywhere in the input must be valid Unicode, and the document small in shape
(`sanitize.input_problems`), so no request can make a result or an error that fails to
serialise, or hand pydantic millions of items. `text` and `ref_text` are cleaned
of control and format characters (`sanitize.clean_text`) before any limit is checked, and must
hold something to speak. Names (`voice`, `voice_name`, `cursor`) and `language` are matched whole:
no surrounding white space, no trailing newline. Error messages show user input only through
`errors.quote`.

The nested objects (`subtitles`, `video`, `quality`, the original `options`) are
in `tts_worker.options`; the rules of a place a request names for its output
(`output_key`, `output_prefix`, `output_url`) in `tts_worker.outputs`.

Errors name the field as the user sent it. The request remembers which alias
each field came in as (`Request.sent_names`: canonical name -> sent name), and
`parsing.name_fields(message, names)` rewrites the field a message starts with.
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
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tts_worker.audio import FORMATS, AudioFormat
from tts_worker.errors import quote
from tts_worker.options import (
    AlignQualityRequest,
    QualityRequest,
    SubtitlesRequest,
    VideoRequest,
    original_subtitle_options,
    subtitle_options,
)
from tts_worker.outputs import output_key_rule, output_prefix_rule, output_url_rule
from tts_worker.sanitize import Lexicon, check_size, speakable_text

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
    _sent_names: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def sent_names(self) -> dict[str, str]:
        """Canonical field name (or dotted path) -> the name the user sent it as, where they differ."""
        return self._sent_names

    def sent_name(self, field: str) -> str:
        return self._sent_names.get(field, field)

    @classmethod
    def names_in(cls, raw: dict[str, Any]) -> dict[str, str]:
        """Which alias each field of `raw` came in as (the fields' `AliasChoices`); models add their own."""
        names: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                sent = next((c for c in alias.choices if isinstance(c, str) and c in raw), name)
                if sent != name:
                    names[name] = sent
        return names


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


class _TimedRequest(Request):
    """A text to be spoken or aligned, with what to return about its timing."""

    text: str
    language: Language = "en"
    word_timings: bool = Field(True, validation_alias=AliasChoices("word_timings", "return_word_timings"))
    subtitles: SubtitlesRequest | None = None
    video: VideoRequest | None = None
    normalize: bool = True  # speak numbers, symbols and abbreviations as words (tts_worker.normalize)
    lexicon: Lexicon | None = None  # per-request pronunciations, applied before the normaliser
    return_base64: bool = False  # every stored file also in the result, as base64

    @classmethod
    def names_in(cls, raw: dict[str, Any]) -> dict[str, str]:
        names = super().names_in(raw)
        if "options" in raw and "subtitles" not in raw:
            names |= {"subtitles": "options", "subtitles.formats.0": "options.subtitle_format"}
        return names

    @model_validator(mode="before")
    @classmethod
    def _options(cls, data: Any) -> Any:
        return original_subtitle_options(data)

    @model_validator(mode="after")
    def _video_style(self) -> _TimedRequest:
        """The subtitle style must also hold at the video's resolution (margin_v within its height)."""
        if self.video is not None and self.video.resolution is not None and self.subtitles is not None:
            try:
                subtitle_options({**self.subtitles.style(), "resolution": self.video.resolution}, None)
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
    voice_url: Url | None = Field(None, validation_alias=AliasChoices("voice_url", "voice_reference_url"))
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
    # Where the audio goes instead of output/<id>.<format>; its subtitles and video go next to it.
    output_key: Annotated[str | None, BeforeValidator(output_key_rule)] = None
    output_prefix: Annotated[str | None, BeforeValidator(output_prefix_rule)] = None
    output_url: Annotated[str | None, BeforeValidator(output_url_rule)] = Field(
        None,
        validation_alias=AliasChoices("output_url", "audio_url"),  # the original API's audio_url
    )

    @classmethod
    def names_in(cls, raw: dict[str, Any]) -> dict[str, str]:
        names = super().names_in(raw)
        for key in ("local_voice", "voice"):
            value = raw.get(key)
            if isinstance(value, str) and value.strip().lower().startswith(_URL_PREFIXES):
                names["voice_url"] = key
        return names

    @model_validator(mode="before")
    @classmethod
    def _format_of_named_output(cls, data: Any) -> Any:
        """A named output's extension is the output format when `output_format` is not given."""
        if isinstance(data, dict) and "output_format" not in data:
            for key in ("output_key", "output_url", "audio_url"):
                value = data.get(key)
                ext = value.strip().rpartition(".")[2].lower() if isinstance(value, str) else ""
                if ext in FORMATS:
                    data = {**data, "output_format": ext}
                    break
        return data

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
        named = [k for k in ("output_url", "output_key", "output_prefix") if getattr(self, k) is not None]
        if len(named) > 1:
            raise ValueError(f"{named[1]}: give the output's place once: output_url, output_key or output_prefix")
        key = self.output_key or self.output_url
        if key is not None and key.rpartition(".")[2].lower() != self.output_format:
            raise ValueError(
                f"{named[0]}: ends in .{key.rpartition('.')[2]}, but output_format is {self.output_format}; "
                "leave output_format out or make them agree"
            )
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


class DownloadRequest(Request):
    """A stored file again: a fresh URL for it, or its content."""

    operation: Literal["download"] = "download"
    key: str | None = None  # like output/<id>.wav
    url: str | None = None  # a URL this worker returned earlier (an expired presigned one too)
    inline: bool = False  # answer the content as base64

    @model_validator(mode="after")
    def _one(self) -> DownloadRequest:
        if (self.key is None) == (self.url is None):
            raise ValueError("give the file exactly once: key or url")
        return self


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
    "download": DownloadRequest,
}
