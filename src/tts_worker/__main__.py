"""Start the worker: settings, then the models loaded and warmed once, then the RunPod loop.

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
import json
import logging
import sys
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


def main() -> None:
    command = sys.argv[1:2]
    if command == ["check-storage"]:  # before anything heavy is imported
        from tts_worker.storage_check import main as check_storage

        sys.exit(check_storage(sys.argv[2:]))
    if command == ["run-once"]:
        sys.exit(run_once(sys.argv[2:]))
    settings = _settings()
    worker = _load(settings)
    import runpod

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

            worker = Worker.load(settings)
    except (ModelDirError, StorageError) as exc:
        logger.error("cannot start: %s", exc)
        sys.exit(f"tts-worker cannot start: {exc}")
    quiet.report()
    return worker


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
    worker = _load(_settings())
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
