"""Start-up does only what serving needs: no heavy library the worker never calls is imported; the grammars,
aligner and ASR load in the background while jobs are already taken; a job that needs them waits and never
loads them twice; a background load that fails stops the worker as a start-up failure does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fake_runpod import FakeRunPod, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]

# Imported by nothing the worker calls: f5_tts's training and gradio app, its inference helpers (the worker
# owns its loop), and librosa's filters (the BigVGAN mel only).
NEVER = (
    "wandb", "datasets", "gradio", "f5_tts.model.trainer", "f5_tts.infer.utils_infer",
    "f5_tts.model.dataset", "librosa.filters", "librosa.core", "numba", "pydub", "IPython", "tensorboard",
)  # fmt: skip
# Needed only by the components that load in the background (whisperx's ASR pipeline and pyannote VAD, which
# bring transformers' pipelines, lightning and, through torchmetrics, matplotlib; the normalisation grammars):
# not on the way to the first job-take.
BACKGROUND = (
    "whisperx.asr", "whisperx.alignment", "pyannote.audio", "transformers", "transformers.pipelines",
    "lightning", "matplotlib", "nltk", "nemo_text_processing", "pynini",
)  # fmt: skip

START = """
import json, sys
from pathlib import Path
import tts_worker.pipeline as pipeline
from tts_worker.settings import Settings

steps = []
pipeline.load_in_background = lambda s, on_failure: steps.extend(s)  # held back: the foreground alone first
settings = Settings(model_dir=Path(sys.argv[1]), storage_dir=Path(sys.argv[2]), device="cpu")
worker = pipeline.Worker.load(settings)
import runpod  # what __main__ imports before the RunPod loop

at_take = sorted(sys.modules)
for readiness, load in steps:
    load()
    readiness.done()
print(json.dumps({"at_take": at_take, "after_background": sorted(sys.modules), "steps": [r.what for r, _ in steps]}))
"""


@pytest.fixture(scope="module")
def started(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    storage = tmp_path_factory.mktemp("startup-storage")
    proc = subprocess.run(
        [sys.executable, "-c", START, str(tiny_model_dir), str(storage)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_module_the_worker_never_calls_is_imported(started):
    assert [m for m in NEVER if m in started["after_background"]] == []


def test_the_way_to_the_first_job_take_imports_no_background_library(started):
    assert [m for m in BACKGROUND if m in started["at_take"]] == []
    assert "f5_tts.model.backbones.dit" in started["at_take"] and "runpod" in started["at_take"]


def test_grammars_then_aligner_and_asr_load_in_the_background(started):
    assert started["steps"] == ["the normalisation grammars", "the aligner and speech recognition models"]
    assert "whisperx.asr" in started["after_background"] and "nemo_text_processing" in started["after_background"]


@pytest.fixture
def held_aligner(monkeypatch):
    """The aligner's background load held until the test releases it; counts how often the models load."""
    from tts_worker.alignment import Aligner

    release = threading.Event()
    loads: list[float] = []
    real = Aligner.load_models

    def held(self: Aligner) -> None:
        assert release.wait(120)
        loads.append(time.monotonic())
        real(self)

    monkeypatch.setattr(Aligner, "load_models", held)
    return release, loads


def test_a_job_that_needs_the_aligner_early_waits_for_it_and_it_loads_once(worker_settings, held_aligner):
    from tts_worker.handler import make_handler
    from tts_worker.pipeline import Worker

    release, loads = held_aligner
    worker = Worker.load(worker_settings.model_copy(update={"background_load": True}))
    assert not worker.aligner.readiness.ready
    handler = make_handler(worker)
    answers: list[dict] = []
    job = {"id": "early", "input": {"text": "Words to time, early.", "seed": 1, "nfe_steps": 2}}
    thread = threading.Thread(target=lambda: answers.append(handler(job)))
    thread.start()
    thread.join(3.0)
    assert thread.is_alive() and not answers, "the job must wait for the aligner, not fail"
    release.set()
    thread.join(120)
    assert answers and "error" not in answers[0], answers
    words = answers[0]["word_timings"]
    assert [w["word"] for w in words] == ["Words", "to", "time,", "early."]
    assert worker.aligner.readiness.ready and len(loads) == 1
    handler({"id": "later", "input": {"text": "And once more.", "seed": 2, "nfe_steps": 2}})
    assert len(loads) == 1


def test_with_background_load_off_everything_is_loaded_before_the_worker_returns(worker_settings):
    from tts_worker.pipeline import Worker

    worker = Worker.load(worker_settings.model_copy(update={"background_load": False}))
    assert worker.aligner.readiness.ready and worker.normalizer.readiness.ready


def test_a_background_load_that_fails_stops_the_worker_like_a_failed_start(tiny_model_dir, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "align" / "en" / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # same size: passes the manifest check at start
    with FakeRunPod() as fake:
        worker = WorkerProcess(fake, broken, tmp_path)
        try:
            fake.wait_take(process=worker, timeout=240)  # the TTS model is up: jobs are taken
            assert worker.wait(timeout=240) == 1
        finally:
            worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "tts-worker cannot start: " in log and "alignment model" in log, log[-2000:]
    assert "Traceback" not in log.split("tts-worker cannot start: ")[1]


def test_a_load_that_never_finishes_fails_the_waiting_job_and_restarts_the_worker(monkeypatch):
    from tts_worker import readiness
    from tts_worker.errors import ModelError

    monkeypatch.setattr(readiness, "WAIT_SECONDS", 0.2)
    stuck = readiness.Readiness("the aligner", pending=True)
    message = r"^the aligner did not finish loading in 0 s; the worker will restart$"
    with pytest.raises(ModelError, match=message) as info:
        stuck.wait()
    assert info.value.refresh_worker


def test_a_failed_background_step_fails_the_later_steps_too():
    from tts_worker import readiness
    from tts_worker.errors import ModelDirError, ModelError

    first, second = readiness.Readiness("grammars", pending=True), readiness.Readiness("aligner", pending=True)
    failures: list[BaseException] = []

    def broken() -> None:
        raise ModelDirError("MODEL_DIR x: the grammars are missing")

    readiness.load_in_background([(first, broken), (second, lambda: None)], failures.append).join(10)
    for step in (first, second):
        with pytest.raises(ModelError, match="failed to load; the worker will restart"):
            step.wait()
    assert [str(e) for e in failures] == ["MODEL_DIR x: the grammars are missing"]
