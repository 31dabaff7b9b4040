"""Typed errors with stable codes.

Every error a job can answer is a `WorkerError`. The handler turns one into
`{"error": "<code>: <message>"}`: a string, so RunPod marks the job FAILED.
Messages name the field and the problem; they never carry tracebacks, machine
paths or secrets.

    WorkerError                      internal_error
    ├── InvalidInput                 invalid_input     (schema: field, type, range, limits)
    │   └── UnknownOperation         unknown_operation
    ├── VoiceNotFound                voice_not_found
    ├── InvalidAudio                 invalid_audio     (undecodable or unusable audio)
    ├── StorageError                 storage_error
    ├── ResultTooLarge               result_too_large  (files inline past RunPod's answer limit)
    ├── RenderError                  render_error      (the video could not be rendered)
    └── ModelError                   model_error       (asks RunPod to refresh the worker)

`ModelDirError` is not a job error: it stops the worker at start when
`MODEL_DIR` is missing or incomplete.

User input in a message is shown only through `quote(value)`: at most ~100 characters, every
control, format, separator or surrogate character escaped (`\\x1b`, `\\u202e`, `\\ud800`). As a
last line of defence every message is passed through `printable(...)` when the error is made, so
no message can break a log line, a terminal or the JSON result, whatever a raise site embeds.
"""

from __future__ import annotations

QUOTE_LIMIT = 100
"""Most characters of user input `quote` shows (escapes included), before `...`."""
MESSAGE_LIMIT = 2000
"""Most characters of one error message; longer ones are cut with `...`."""


def _escaped(ch: str) -> str:
    if ch.isprintable() or ch == " ":
        return ch
    return ch.encode("unicode_escape", "backslashreplace").decode("ascii")


def _cut(text: str, limit: int) -> tuple[str, bool]:
    """`text` escaped and cut to at most `limit` characters; True when something was cut."""
    out: list[str] = []
    size = 0
    for ch in text:
        piece = _escaped(ch)
        if size + len(piece) > limit:
            return "".join(out), True
        out.append(piece)
        size += len(piece)
    return "".join(out), False


def printable(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` with every non-printable character escaped (repr's rule: controls, format characters such
    as bidi overrides, line and paragraph separators, lone surrogates), cut to `limit` characters."""
    body, cut = _cut(text, limit)
    return body + "..." if cut else body


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """User input as an error message may show it: quoted, escaped, at most about `limit` characters.

    `quote("dance")` is `'dance'` (what `repr` gives); `quote("\\x1b[31m" * 50)` is
    `'\\x1b[31m\\x1b[31m...'... (250 characters)`. A non-string is shown as its `repr`, escaped and cut the same way.
    """
    if not isinstance(value, str):
        return printable(repr(value), limit)
    body, cut = _cut(value.replace("\\", "\\\\").replace("'", "\\'"), limit)
    return f"'{body}'... ({len(value)} characters)" if cut else f"'{body}'"


class WorkerError(Exception):
    """An error a job answers with; `code` is stable and documented in docs/API.md."""

    code = "internal_error"
    refresh_worker = False

    def __init__(self, message: str) -> None:
        message = printable(message)
        super().__init__(message)
        self.message = message

    def as_result(self, message: str | None = None) -> dict[str, object]:
        """The job's answer; `message` replaces this error's (the same, with the fields as the user sent them)."""
        result: dict[str, object] = {"error": f"{self.code}: {message or self.message}"}
        if self.refresh_worker:
            result["refresh_worker"] = True
        return result


class InvalidInput(WorkerError):
    code = "invalid_input"


class UnknownOperation(InvalidInput):
    code = "unknown_operation"


class VoiceNotFound(WorkerError):
    code = "voice_not_found"


class InvalidAudio(WorkerError):
    code = "invalid_audio"


class StorageError(WorkerError):
    code = "storage_error"


class ResultTooLarge(WorkerError):
    """The result, with its files inline as base64, is more than RunPod takes as a job's answer."""

    code = "result_too_large"


class RenderError(WorkerError):
    """ffmpeg could not render the requested video (failed, too slow, out of memory, missing)."""

    code = "render_error"


class ModelError(WorkerError):
    """The model failed in a way that may leave the device unusable: restart the worker after this job."""

    code = "model_error"
    refresh_worker = True


class ModelDirError(Exception):
    """`MODEL_DIR` cannot be served from; the message says what is missing and how to bake it."""
