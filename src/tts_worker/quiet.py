"""Library noise at start, silenced at its source; real problems stay visible.

`install(level)` runs in `__main__` before any model library is imported; `captured_stdout()` wraps
the model load; `report()` runs after it. What each one handles, and why it is noise here:

- pyannote.audio warns at import, with torchcodec's whole FFmpeg loading traceback, when torchcodec
  can't load FFmpeg's shared libraries. The worker never uses that decoder: whisperx hands pyannote
  in-memory waveforms, and files are decoded by the `ffmpeg` program. The warning is filtered and
  `report()` says it in one line.
- Lightning logs at INFO that it upgraded whisperx's packaged VAD checkpoint in memory, with a
  command to run on a file inside the venv: that logger is kept below INFO.
- whisperx installs its own stdout handler at INFO ("Compute type not specified", "Performing voice
  activity detection..."): its logger goes through ours, at WARNING.
- f5_tts prints the vocab, tokenizer and checkpoint paths and "Load vocos from local path" while
  loading: `captured_stdout()` turns what is printed on stdout into DEBUG log lines (WARNING lines
  if the load fails, so nothing that explains a failure is lost).

With LOG_LEVEL=DEBUG the library loggers stay at INFO and the torchcodec warning is shown as it is.
Only these messages and loggers are touched; every library's warnings and errors still show.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_TORCHCODEC_WARNING = r"\s*torchcodec is not installed correctly"
_LIGHTNING_MIGRATION = ("lightning.pytorch.utilities.migration.utils", "pytorch_lightning.utilities.migration.utils")


def install(level: str = "INFO") -> None:
    """Filters and logger levels for the libraries the models load; call before importing them."""
    debug = level == "DEBUG"
    if not debug:
        warnings.filterwarnings("ignore", message=_TORCHCODEC_WARNING, category=UserWarning)
    for name in _LIGHTNING_MIGRATION:
        logging.getLogger(name).setLevel(logging.INFO if debug else logging.WARNING)
    # whisperx.log_utils.get_logger() sets up its stdout handler only when "whisperx" has none.
    whisperx = logging.getLogger("whisperx")
    whisperx.handlers[:] = [logging.NullHandler()]
    whisperx.propagate = True
    whisperx.setLevel(logging.INFO if debug else logging.WARNING)


@contextlib.contextmanager
def captured_stdout() -> Iterator[None]:
    """What libraries print on stdout in the block, as log lines instead (stdout stays the program's)."""
    buffer = io.StringIO()
    failed = False
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    except BaseException:
        failed = True
        raise
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                logger.log(logging.WARNING if failed else logging.DEBUG, "library output: %s", line.strip())


def report() -> None:
    """After the models load: one line for what `install` silenced and the user may want to know."""
    io_module = sys.modules.get("pyannote.audio.core.io")
    if io_module is not None and getattr(io_module, "TORCHCODEC_AVAILABLE", True) is False:
        logger.info("torchcodec can't load FFmpeg's libraries; not needed here (pyannote gets in-memory audio)")
