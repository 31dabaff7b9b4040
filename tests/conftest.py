"""Shared fixtures: tiny random-weight models baked by bake_models.py itself, and
a worker loaded from them through the same loader as real weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The worker's runtime environment: offline, no telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`bake_models.py --tiny` run as a user runs it, once per session."""
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(ROOT / "bake_models.py"), "--tiny", str(out)], check=True, cwd=ROOT)
    return out


@pytest.fixture(scope="session")
def worker_settings(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from tts_worker.settings import Settings

    # Batching is off by default on CPU (slower there); the tests run it as a GPU worker would.
    return Settings(
        model_dir=tiny_model_dir, storage_dir=tmp_path_factory.mktemp("storage"), device="cpu", batch_max_size=4
    )


@pytest.fixture(scope="session")
def worker(worker_settings):
    from tts_worker.pipeline import Worker

    return Worker.load(worker_settings)
