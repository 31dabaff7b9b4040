"""`python -m tts_worker run-once FILE` (what `make run` runs): the job's answer as JSON on stdout, and a
start-up free of library noise (quiet.py), with a real worker on the tiny models in a subprocess.

torchcodec is made to fail the way it does on a machine whose FFmpeg libraries it can't load (a stand-in
package first on the path raising its RuntimeError), so its traceback would show if it weren't handled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]

TORCHCODEC_FAILURE = """raise RuntimeError(
    "Could not load libtorchcodec. Likely causes: FFmpeg is not properly installed.\\n"
    "[start of libtorchcodec loading traceback]\\nFFmpeg version 7: libavutil.so.59: cannot open shared object file"
    "\\n[end of libtorchcodec loading traceback]."
)
"""
NOISE = (
    "torchcodec is not installed correctly",
    "libtorchcodec loading traceback",
    "Lightning automatically upgraded",
    "upgrade_checkpoint",
    "vocab : ",
    "Load vocos from local path",
    "Compute type not specified",
    "Performing voice activity detection",
    "Traceback",
)


def broken_torchcodec(tmp_path: Path) -> Path:
    package = tmp_path / "shadow" / "torchcodec"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(TORCHCODEC_FAILURE)
    return package.parent


def run_once(tmp_path: Path, model_dir: Path, job: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "AWS_", "BUCKET_", "S3_"))}
    env.update(
        MODEL_DIR=str(model_dir), STORAGE_DIR=str(tmp_path / "out"), DEVICE="cpu", WARMUP="false",
        PYTHONPATH=os.pathsep.join([str(broken_torchcodec(tmp_path)), str(ROOT / "src")]),
    )  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "tts_worker", "run-once", "job.json", *extra],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_run_once_prints_the_answer_as_json_and_starts_quietly(tiny_model_dir, tmp_path):
    job = {"input": {"text": "Readable results.", "seed": 3, "nfe_steps": 4, "output_format": "wav"}}
    proc = run_once(tmp_path, tiny_model_dir, job)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)  # stdout is the JSON document and nothing else
    assert proc.stdout.startswith('{\n  "output": {')  # indented for people
    output = answer["output"]
    samples, rate = sf.read(output["audio_url"])
    assert rate == 24_000 and abs(len(samples) / rate - output["duration"]) < 1e-3
    for noise in NOISE:
        assert noise not in proc.stdout + proc.stderr, noise
    # The silenced torchcodec failure is said once, in one line; our own start-up lines still show.
    assert proc.stderr.count("torchcodec can't load FFmpeg's libraries; not needed here") == 1
    assert "models ready in" in proc.stderr and "TINY RANDOM WEIGHTS" in proc.stderr


def test_a_failed_job_is_json_too_with_exit_status_1(tiny_model_dir, tmp_path):
    proc = run_once(tmp_path, tiny_model_dir, {"input": {"text": "x", "speed": 99}})
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    assert answer["error"].startswith("invalid_input: speed:")


def test_a_bad_job_file_stops_before_the_models_load(tmp_path):
    (tmp_path / "job.json").write_text('{"input": ')
    proc = subprocess.run(
        [sys.executable, "-m", "tts_worker", "run-once", "job.json"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "MODEL_DIR": str(tmp_path / "none")},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("run-once: job.json is not JSON (Expecting value, line 1)")


def test_the_torchcodec_warning_is_real_without_quiet(tmp_path):
    """The check above has teeth: the same stand-in makes pyannote print the traceback when quiet is off."""
    code = "import pyannote.audio.core.io"
    env = {**os.environ, "PYTHONPATH": str(broken_torchcodec(tmp_path))}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "torchcodec is not installed correctly" in proc.stderr and "libtorchcodec loading traceback" in proc.stderr
