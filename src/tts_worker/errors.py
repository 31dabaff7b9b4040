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
"""

from __future__ import annotations


class WorkerError(Exception):
    """An error a job answers with; `code` is stable and documented in docs/API.md."""

    code = "internal_error"
    refresh_worker = False

    def __init__(self, message: str) -> None:
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
