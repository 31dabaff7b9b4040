"""The engine interface: another f5_tts model family (E2-TTS) baked tiny and serving a job, and the
frame budget that keeps every generation inside the model's limits whatever the request asks."""

from __future__ import annotations

import base64
import io
import itertools
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tts_worker import tts
from tts_worker.chunking import split_text
from tts_worker.engine import (
    MAX_REFERENCE_BYTES_PER_SECOND,
    MIN_REFERENCE_BYTES_PER_SECOND,
    Generation,
    SamplingParams,
)
from tts_worker.errors import InvalidInput
from tts_worker.handler import make_handler

ROOT = Path(__file__).resolve().parents[1]
FAST = {"nfe_steps": 2, "seed": 3}


def tone(seconds: float, rate: int = 24_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 190 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def wav_base64(seconds: float) -> str:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds), 24_000, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def run(handler, job_input):
    return handler({"id": f"engine-{uuid.uuid4().hex[:6]}", "input": job_input})


@pytest.fixture(scope="module")
def e2_worker(tmp_path_factory):
    from tts_worker.pipeline import Worker
    from tts_worker.settings import Settings

    out = tmp_path_factory.mktemp("e2-models")
    subprocess.run(
        [sys.executable, str(ROOT / "bake_models.py"), "--tiny", str(out), "--model", "E2TTS_Base"],
        check=True,
        cwd=ROOT,
    )
    settings = Settings(model_dir=out, storage_dir=tmp_path_factory.mktemp("e2-storage"), device="cpu")
    return Worker.load(settings)


def test_an_e2_tts_tiny_bake_serves_a_job_end_to_end(e2_worker):
    assert type(e2_worker.engine._model.transformer).__name__ == "UNetT"
    result = run(make_handler(e2_worker), {"text": "Spoken by the other model family.", **FAST})
    assert "error" not in result, result
    assert result["model"] == {"name": "E2TTS_tiny", "tiny": True}
    samples, rate = sf.read(io.BytesIO(e2_worker.storage.get(result["audio"]["key"])))
    assert rate == 24_000 and len(samples) == result["samples"] > rate // 2
    assert result["word_timings"] and np.isfinite(samples).all()


@pytest.mark.parametrize("ref_text", ["Hi", "A" * 900])
def test_a_ref_text_that_cannot_match_its_clip_is_refused_before_sampling(worker, ref_text):
    handler = make_handler(worker)
    for speed in (0.5, 1.0):
        job = {"text": "Hello there.", "voice_base64": wav_base64(12.0), "ref_text": ref_text, "speed": speed, **FAST}
        result = run(handler, job)
        assert result["error"].startswith("invalid_input: ref_text: ") and "refresh_worker" not in result, result
    assert "error" not in run(handler, {"text": "The worker still serves.", **FAST})


def test_every_planned_generation_fits_the_frame_budget(worker):
    """Any accepted reference (text rate within the bounds, 1-12 s), any speed: every chunk of a long text,
    as f5_tts would size it, keeps reference + generated frames within ~22 s and the model's limit."""
    engine = worker.engine
    text = " ".join(f"Sentence {i} has a few words, and then some more of them." for i in range(60)) + " 😀" * 40
    rates = (MIN_REFERENCE_BYTES_PER_SECOND * 1.01, 15.0, MAX_REFERENCE_BYTES_PER_SECOND * 0.99)
    for seconds, rate, speed in itertools.product((1.5, 6.0, 12.0), rates, (0.5, 1.0, 2.0)):
        ref_text = "x" * round(rate * seconds)
        ref = engine.prepare_reference(tone(seconds), ref_text, max_seconds=12)
        params = SamplingParams(nfe_steps=1, speed=speed)
        for chunk in split_text(text, engine.max_chunk_bytes(ref, speed)):
            frames = engine._ref_frames(ref) + engine._generated_frames(Generation(ref, chunk.text, params, 0))
            assert frames <= tts.GENERATION_FRAMES <= tts.MAX_FRAMES, (seconds, rate, speed, chunk.text)


def test_reference_text_bounds_name_the_field_they_came_in(worker):
    with pytest.raises(InvalidInput, match=r"^voice: "):
        worker.engine.prepare_reference(tone(12.0), "Hi", max_seconds=12, text_field="voice")
