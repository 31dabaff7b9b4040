"""What the RunPod Hub's publishing guide expects: `Dockerfile`, `handler.py` and `README.md` at the
repository root or in `.runpod/` (which takes precedence). Dockerfile.runpod stays the source of truth;
`.runpod/Dockerfile` is a byte-identical copy and `.runpod/handler.py` starts the real worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_hub_dockerfile_is_an_identical_copy_of_dockerfile_runpod():
    copy, source = ROOT / ".runpod" / "Dockerfile", ROOT / "Dockerfile.runpod"
    assert copy.read_bytes() == source.read_bytes(), "run: cp Dockerfile.runpod .runpod/Dockerfile"


def test_hub_finds_a_readme_and_a_handler():
    assert (ROOT / ".runpod" / "README.md").is_file() or (ROOT / "README.md").is_file()
    assert (ROOT / ".runpod" / "handler.py").is_file()


def test_hub_handler_starts_the_real_worker_entry_point(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BUCKET_", "S3_", "PYTHONPATH"))}
    env["STORAGE_DIR"] = str(tmp_path / "store")
    # Its own subcommand proves the call reaches tts_worker.__main__ without loading models.
    ran = subprocess.run(
        [sys.executable, str(ROOT / ".runpod" / "handler.py"), "check-storage"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "[4/8] ok" in ran.stdout and "storage check passed" in ran.stdout
    # And a bad setting stops it the way the worker stops.
    env["MAX_TEXT_CHARS"] = "0"
    ran = subprocess.run(
        [sys.executable, str(ROOT / ".runpod" / "handler.py")], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode != 0 and ran.stderr.startswith("tts-worker cannot start: MAX_TEXT_CHARS: ")
