"""Start the worker: settings, the TTS model loaded (and warmed up on CUDA), then the RunPod loop while
the grammars, aligner and ASR load in the background (readiness.py).

    python -m tts_worker                       serve jobs (RunPod, or --rp_serve_api locally)
    python -m tts_worker --test_input '{...}'  run one job and exit
    python -m tts_worker run-once [FILE]       run the job in FILE (test_input.json) as --test_input does,
                                               and print what RunPod would answer as JSON on stdout
    python -m tts_worker check-storage         try the storage settings step by step (storage_check.py)

A model directory that can't be served, or storage that can't be written, stops
the process here with a message naming what is wrong (and how to bake missing
models); jobs never load or download models. Library noise at start is silenced at
its source (quiet.py).
"""

from __future__ import annotations

import os

# Offline by construction: set before anything imports huggingface_hub, transformers or pyannote.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
# oneDNN (torch on CPU) caches a primitive per input shape, up to 1024; every job length is a new
# shape, so a long-lived CPU worker grew ~100 MB over 200 jobs. Uncached, RSS stays flat; CUDA unaffected.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
# Above oneDNN, torch's ideep keeps its own cache of convolutions per input shape (LRU_CACHE_CAPACITY,
# default 1024): each new audio length through the aligner's convolutions added ~0.2 MB, 35 MB per 200
# jobs. One entry keeps it flat at no measurable cost (a job's shapes are new ones anyway).
os.environ.setdefault("LRU_CACHE_CAPACITY", "1")

import asyncio
import contextlib
import importlib
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tts_worker import log, quiet
from tts_worker.errors import ModelDirError, StorageError
from tts_worker.settings import Settings, describe_errors

if TYPE_CHECKING:
    from tts_worker.pipeline import Worker

logger = logging.getLogger("tts_worker")
_IMPORTED = time.monotonic()


def _uptime() -> float:
    """Seconds since this process started (Linux's /proc; elsewhere, since this module was imported)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED


def main() -> None:
    command = sys.argv[1:2]
    if command == ["check-storage"]:  # before anything heavy is imported
        from tts_worker.storage_check import main as check_storage

        sys.exit(check_storage(sys.argv[2:]))
    if command == ["run-once"]:
        sys.exit(run_once(sys.argv[2:]))
    settings = _settings()
    # runpod's import spends ~1 s in a cpuinfo subprocess (its debugger module): overlap it with the load.
    runpod_import = threading.Thread(
        target=importlib.import_module, args=("runpod",), name="import-runpod", daemon=True
    )
    runpod_import.start()
    worker = _load(settings)
    runpod_import.join()
    import runpod

    logger.info("start-up: %.2f s from process start to the RunPod loop", _uptime())

    from tts_worker.handler import make_async_handler, make_streaming_handler

    # Progress goes to RunPod's job API; locally (--test_input, --rp_serve_api) there is none to post to.
    progress = runpod.serverless.progress_update if settings.runpod_webhook_post_output else None
    config: dict[str, Any] = {"concurrency_modifier": lambda current: settings.max_concurrency}
    if settings.streaming:
        # The SDK reads `refresh_worker` from this dict after each job: set, it asks RunPod for a new worker.
        config["handler"] = make_streaming_handler(worker, progress, lambda: config.update(refresh_worker=True))
        config["return_aggregate_stream"] = True
    else:
        config["handler"] = make_async_handler(worker, progress)
    runpod.serverless.start(config)


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:  # each bad variable and why; not its value, which may be a secret
        sys.exit(f"tts-worker cannot start: {describe_errors(exc)}")
    log.configure(settings.log_level)
    quiet.install(settings.log_level)
    return settings


def _load(settings: Settings) -> Worker:
    try:
        with quiet.captured_stdout():
            from tts_worker.pipeline import Worker

            logger.info("start-up: %.2f s from process start to loading models (interpreter, imports)", _uptime())
            worker = Worker.load(settings, on_failure=_cannot_start)
    except (ModelDirError, StorageError) as exc:
        logger.error("cannot start: %s", exc)
        sys.exit(f"tts-worker cannot start: {exc}")
    quiet.report()
    return worker


def _cannot_start(exc: BaseException) -> None:
    """A model that failed to load in the background (readiness.py) stops the worker as a failure at start does:
    the same message, exit status 1. From that thread only `os._exit` ends the process; RunPod replaces it."""
    logger.error("cannot start: %s", exc)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.write(2, f"tts-worker cannot start: {exc}\n".encode(errors="replace"))
    os._exit(1)


def run_once(argv: Sequence[str]) -> int:
    """One job from a file through RunPod's own job runner (what `--test_input` runs), its answer printed as
    JSON on stdout and nothing else there; exit status 1 when the job failed."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tts_worker run-once", description=run_once.__doc__)
    parser.add_argument("file", nargs="?", default="test_input.json", type=Path, help='{"input": {...}}')
    path = parser.parse_args(argv).file
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        sys.exit(f"run-once: cannot read {path} ({exc.strerror})")
    except json.JSONDecodeError as exc:
        sys.exit(f"run-once: {path} is not JSON ({exc.msg}, line {exc.lineno})")
    if not isinstance(job, dict) or not isinstance(job.get("input"), dict):
        sys.exit(f'run-once: {path} must hold {{"input": {{...}}}}')
    job.setdefault("id", "local_test")
    # Everything loaded before the job, so nothing a library prints later can follow the JSON on stdout.
    worker = _load(_settings().model_copy(update={"background_load": False}))
    from runpod.serverless.modules.rp_job import run_job
    from runpod.serverless.modules.rp_logger import RunPodLogger

    from tts_worker.handler import make_async_handler

    RunPodLogger().set_level("WARN")  # its DEBUG lines repeat the whole result as a Python repr
    with contextlib.redirect_stdout(sys.stderr):  # whatever else prints goes with the logs
        result = asyncio.run(run_job(make_async_handler(worker), job))
    sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    main()
