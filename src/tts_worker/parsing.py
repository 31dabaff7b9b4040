"""A job's raw input into a validated request, and every problem with it into one error message.

`parse_request(raw, limits)` returns a request model of `schemas` or raises `InvalidInput` /
`UnknownOperation` with one message naming every bad field (the first ten of them), each as
`<field path>: <problem>`, the field as the user sent it. `OPERATION_ALIASES` is the one place
where the original API's operation names (`endpoint: "upload"`) map to canonical ones.

`name_fields(message, names)` rewrites the field a message starts with into the name the user sent:
the parser applies it to validation errors, the handler to every error a job raises later (stages
name fields canonically: `voice_url: ...`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tts_worker.errors import InvalidInput, UnknownOperation, quote
from tts_worker.sanitize import input_problems, path_part
from tts_worker.schemas import REQUESTS, Limits, Request

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
    "download": "download",
}


# Matched with fullmatch: `$` would let a trailing newline through.
def name_fields(message: str, names: dict[str, str]) -> str:
    """`message` with the field each of its `; `-separated parts starts with (`field: ...`,
    `field.sub.0: ...`) written as the user sent it; the longest mapped prefix of the path wins."""
    if not names:
        return message
    parts = []
    for part in message.split("; "):
        head, sep, rest = part.partition(": ")
        if sep and head and " " not in head:
            segments = head.split(".")
            for n in range(len(segments), 0, -1):
                prefix = ".".join(segments[:n])
                if prefix in names:
                    head = ".".join([names[prefix], *segments[n:]])
                    break
        parts.append(head + sep + rest)
    return "; ".join(parts)


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
    model = REQUESTS[operation]
    names = model.names_in(data)
    try:
        request = model.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        problems = [_describe(e) for e in errors[:_MAX_ERRORS]]
        if len(errors) > _MAX_ERRORS:
            problems.append(f"input: {len(errors) - _MAX_ERRORS} more problems not shown")
        raise InvalidInput(name_fields("; ".join(problems), names)) from None
    request._sent_names = names
    return request
