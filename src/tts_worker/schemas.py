"""The job boundary: pydantic models for each operation's input, and the one
place where the original API's aliases are mapped to canonical names.

`parse_request(raw, limits)` returns a validated request or raises
`InvalidInput` / `UnknownOperation` with one message naming every bad field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from tts_worker.errors import InvalidInput, UnknownOperation

# Canonical operation names, and what the original API (and common spellings) call them.
OPERATION_ALIASES: dict[str, str] = {
    "synthesize": "synthesize",
    "tts": "synthesize",
    "generate": "synthesize",
}

_VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")


@dataclass(frozen=True)
class Limits:
    max_text_chars: int


def voice_name(value: str) -> str:
    """A library voice name: `my-voice` or the original API's `my-voice.wav`; no paths, no traversal."""
    name = value.strip()
    if name.lower().endswith(".wav"):
        name = name[:-4]
    if not _VOICE_NAME.match(name) or ".." in name:
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


class SynthesizeRequest(Request):
    operation: Literal["synthesize"] = "synthesize"
    text: str
    voice: VoiceName | None = Field(None, validation_alias=AliasChoices("voice", "local_voice"))
    speed: float = Field(1.0, ge=0.5, le=2.0, allow_inf_nan=False)
    nfe_steps: int = Field(32, ge=1, le=128)
    cfg_strength: float = Field(2.0, ge=0.0, le=10.0, allow_inf_nan=False)
    sway_sampling_coef: float = Field(-1.0, ge=-1.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    remove_silence: bool = False
    output_format: Annotated[Literal["wav", "mp3", "flac", "ogg"], BeforeValidator(_lower)] = "wav"

    @field_validator("text")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty or only white space")
        limits: Limits | None = (info.context or {}).get("limits")
        if limits and len(value) > limits.max_text_chars:
            raise ValueError(f"is {len(value)} characters long; the limit is {limits.max_text_chars}")
        return value


REQUESTS: dict[str, type[Request]] = {"synthesize": SynthesizeRequest}


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "input"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown field"
    if kind == "missing":
        return f"{loc}: is required"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith("Input should"):
        msg = "should" + msg[len("Input should") :]
    return f"{loc}: {msg}"


def _operation(raw: dict[str, Any]) -> str:
    names = {key: raw.pop(key) for key in ("operation", "endpoint") if key in raw}
    for key, value in names.items():
        if not isinstance(value, str):
            raise InvalidInput(f"{key}: should be a string naming an operation")
    canonical = {OPERATION_ALIASES.get(v.strip().lower()) for v in names.values()}
    if len(canonical) > 1:
        raise InvalidInput("operation and endpoint name different operations; give one")
    if names and None in canonical:
        key, value = next(iter(names.items()))
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise UnknownOperation(f"{key}: {shown!r} is not an operation; use one of {', '.join(sorted(REQUESTS))}")
    return canonical.pop() if canonical else "synthesize"  # type: ignore[return-value]


def parse_request(raw: object, limits: Limits) -> Request:
    if not isinstance(raw, dict):
        raise InvalidInput("input: should be a JSON object")
    data = dict(raw)
    operation = _operation(data)
    try:
        return REQUESTS[operation].model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidInput("; ".join(_describe(e) for e in exc.errors())) from None
