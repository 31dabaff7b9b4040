"""f5_loading gives the model f5_tts's own loaders give, without their import and initialisation cost.

The comparison runs in a subprocess: f5_tts's loaders import the whole package (the Trainer too), and the
worker's own path must be seen starting from a clean interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

COMPARE = r"""
import json, sys, warnings
from pathlib import Path

import numpy as np
import torch

warnings.simplefilter("ignore")
from tts_worker import f5_loading
from tts_worker.engine import Generation, SamplingParams
from tts_worker.manifest import load_verified
from tts_worker.tts import F5Engine

model_dir = Path(sys.argv[1])
manifest = load_verified(model_dir)
engine = F5Engine.load(model_dir, manifest, "cpu")
lean = sorted(m for m in ("f5_tts.model.trainer", "f5_tts.infer.utils_infer", "librosa") if m in sys.modules)

from f5_tts.infer import utils_infer  # upstream's loaders: the whole package from here on
from f5_tts import model as f5_model

arch = {**manifest.tts.arch, "attn_backend": "torch", "attn_mask_enabled": True}
model = utils_infer.load_model(
    getattr(f5_model, manifest.tts.backbone), arch, str(model_dir / manifest.tts.checkpoint),
    mel_spec_type=manifest.tts.mel_spec_type, vocab_file=str(model_dir / manifest.tts.vocab), device="cpu",
)
vocos_dir = str(model_dir / manifest.vocoder.dir)
vocoder = utils_infer.load_vocoder("vocos", is_local=True, local_path=vocos_dir, device="cpu")
upstream = F5Engine(model, vocoder, "cpu", manifest)


def differing(a, b):
    out = []
    for kind in ("named_parameters", "named_buffers"):
        ta, tb = dict(getattr(a, kind)(remove_duplicate=False)), dict(getattr(b, kind)(remove_duplicate=False))
        out += sorted(ta.keys() ^ tb.keys())
        out += [k for k in ta.keys() & tb.keys() if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]
    return out


rng = np.random.default_rng(0)
ref_audio = (0.2 * rng.standard_normal(24_000 * 2)).astype(np.float32)
outputs = []
for e in (engine, upstream):
    ref = e.prepare_reference(ref_audio, "A short reference clip.", max_seconds=20)
    texts = ("Hello there.", "A second chunk, longer.")
    gens = [Generation(ref, t, SamplingParams(nfe_steps=3), seed=7) for t in texts]
    outputs.append([c.wave for c in e.generate_batch(gens)] + [e.generate_batch(gens[:1])[0].wave])
same_audio = all(np.array_equal(a, b) for a, b in zip(*outputs, strict=True))
constants = {
    name: getattr(f5_loading, name) == getattr(utils_infer, name.lower())
    for name in ("N_MEL_CHANNELS", "HOP_LENGTH", "WIN_LENGTH", "N_FFT", "TARGET_SAMPLE_RATE", "ODE_METHOD")
}
print(json.dumps({
    "lean": lean,
    "model_differs": differing(engine._model, upstream._model),
    "vocoder_differs": differing(engine._vocoder, upstream._vocoder),
    "same_audio": same_audio,
    "samples": [len(w) for w in outputs[0]],
    "constants": constants,
    "package_names_work": f5_model.DiT is f5_loading.model_classes().DiT and hasattr(f5_model, "Trainer"),
}))
"""


@pytest.fixture(scope="module")
def compared(tiny_model_dir: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE, str(tiny_model_dir)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_worker_loads_the_model_without_trainer_utils_infer_or_librosa(compared):
    assert compared["lean"] == []


def test_every_parameter_and_buffer_equals_upstreams_loaders(compared):
    assert compared["model_differs"] == []
    assert compared["vocoder_differs"] == []


def test_the_same_generations_give_the_same_samples_bit_for_bit(compared):
    assert compared["same_audio"]
    assert all(n > 0 for n in compared["samples"])


def test_mel_and_sampler_settings_equal_upstreams(compared):
    assert compared["constants"] and all(compared["constants"].values()), compared["constants"]


def test_the_package_still_serves_every_name_its_init_defines(compared):
    assert compared["package_names_work"]


def test_the_deferred_librosa_mel_is_librosas():
    from librosa.filters import mel

    from tts_worker.f5_loading import _librosa_mel

    kwargs = {"sr": 24_000, "n_fft": 1024, "n_mels": 100, "fmin": 0, "fmax": None}
    assert np.array_equal(_librosa_mel(**kwargs), mel(**kwargs))
