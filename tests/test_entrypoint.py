"""The worker as users start it: `python -m tts_worker` with --test_input and with the local HTTP API,
and the start-up refusal on a model directory that can't be served."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from runpod.serverless.modules.rp_fastapi import WorkerAPI

from tts_worker.handler import make_handler

ROOT = Path(__file__).resolve().parents[1]


def worker_env(model_dir: Path, storage_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(MODEL_DIR=str(model_dir), STORAGE_DIR=str(storage_dir), DEVICE="cpu", WARMUP="false")
    return env


def start(args, env, cwd):
    return subprocess.run(
        [sys.executable, "-m", "tts_worker", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def output_files(storage_dir: Path) -> list[Path]:
    return sorted((storage_dir / "output").glob("*"))


def test_test_input_runs_one_job_and_exits(tiny_model_dir, tmp_path):
    storage = tmp_path / "out"
    job = {"input": {"text": "One job from the command line.", "seed": 9, "nfe_steps": 4, "output_format": "flac"}}
    proc = start(["--test_input", json.dumps(job)], worker_env(tiny_model_dir, storage), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [audio_file] = output_files(storage)
    samples, rate = sf.read(audio_file)
    assert rate == 24_000 and len(samples) > rate // 2 and audio_file.suffix == ".flac"
    assert "TINY RANDOM WEIGHTS" in proc.stdout + proc.stderr


def test_repo_test_input_json_is_a_valid_job(tiny_model_dir, tmp_path):
    """`make run` feeds test_input.json to the worker; it must stay a job that succeeds."""
    storage = tmp_path / "out"
    job = json.loads((ROOT / "test_input.json").read_text())
    job["input"]["nfe_steps"] = 4
    proc = start(["--test_input", json.dumps(job)], worker_env(tiny_model_dir, storage), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(output_files(storage)) == 1


def test_failed_test_input_job_exits_nonzero(tiny_model_dir, tmp_path):
    proc = start(["--test_input", json.dumps({"input": {"text": ""}})], worker_env(tiny_model_dir, tmp_path), tmp_path)
    assert proc.returncode == 1
    assert "invalid_input: text: must not be empty" in proc.stdout + proc.stderr


def test_missing_model_dir_stops_start_with_the_bake_command(tmp_path):
    proc = start(["--test_input", '{"input": {"text": "x"}}'], worker_env(tmp_path / "absent", tmp_path), tmp_path)
    assert proc.returncode != 0
    assert "does not exist" in proc.stderr and "make bake" in proc.stderr


def test_incomplete_model_dir_names_what_is_missing(tiny_model_dir, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "vocos" / "pytorch_model.bin").unlink()
    proc = start(["--test_input", '{"input": {"text": "x"}}'], worker_env(broken, tmp_path), tmp_path)
    assert proc.returncode != 0
    assert "vocos/pytorch_model.bin: missing" in proc.stderr and "make bake" in proc.stderr


def test_runsync_http_contract_in_process(worker):
    client = TestClient(WorkerAPI({"handler": make_handler(worker)}).rp_app)
    good = client.post("/runsync", json={"input": {"text": "Over HTTP.", "seed": 2, "nfe_steps": 4}}).json()
    assert good["status"] == "COMPLETED"
    data = worker.storage.get(good["output"]["audio"]["key"])
    samples, rate = sf.read(io.BytesIO(data))
    assert abs(len(samples) / rate - good["output"]["duration"]) < 1e-3
    bad = client.post("/runsync", json={"input": {"text": "x", "speed": "fast"}}).json()
    assert bad == {"id": bad["id"], "status": "FAILED", "error": "invalid_input: speed: should be a valid number"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_local_api_server_serves_runsync(tiny_model_dir, tmp_path):
    """`make serve`: the real server process on 127.0.0.1, driven over HTTP."""
    port, storage = free_port(), tmp_path / "out"
    args = ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tts_worker", *args],
        env=worker_env(tiny_model_dir, storage),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{base}/docs", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        job = {"input": {"text": "Served locally.", "local_voice": "default", "nfe_steps": 4}}
        reply = httpx.post(f"{base}/runsync", json=job, timeout=120).json()
        assert reply["status"] == "COMPLETED", reply
        samples, rate = sf.read(reply["output"]["audio_url"])
        assert rate == 24_000 and abs(len(samples) / rate - reply["output"]["duration"]) < 1e-3
        bad = httpx.post(f"{base}/runsync", json={"input": {"endpoint": "nope"}}, timeout=60).json()
        assert bad["status"] == "FAILED" and bad["error"].startswith("unknown_operation: endpoint:")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_unreachable_bucket_stops_start_without_leaking_secrets(tiny_model_dir, tmp_path):
    env = worker_env(tiny_model_dir, tmp_path)
    env.update(S3_BUCKET="outputs", AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
               AWS_SECRET_ACCESS_KEY="very-secret-value", S3_MAX_ATTEMPTS="1", S3_CONNECT_TIMEOUT="1")  # fmt: skip
    proc = start(["--test_input", '{"input": {"text": "x"}}'], env, tmp_path)
    assert proc.returncode != 0
    assert "cannot start" in proc.stderr and "outputs" in proc.stderr
    assert "very-secret-value" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_a_bad_setting_stops_start_naming_the_variable(tiny_model_dir, tmp_path):
    env = {**os.environ, "MODEL_DIR": str(tiny_model_dir), "STORAGE_DIR": str(tmp_path), "BATCH_MAX_SIZE": "0",
           "FETCH_ALLOW_NETWORKS": "not-a-network"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "tts_worker"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tts-worker cannot start: ")
    assert "BATCH_MAX_SIZE: Input should be greater than or equal to 1" in proc.stderr
    assert "FETCH_ALLOW_NETWORKS: " in proc.stderr and "'not-a-network' is not an IP address" in proc.stderr
