"""Cold start, side by side in one run (part of `make bench`; `bench.py --only cold-start` runs it alone).

- floor: a process that imports torch and reads the checkpoint and vocoder bytes;
- `python -m tts_worker` in RunPod's production loop (tests/fake_runpod.py), with the defaults and with
  BACKGROUND_LOAD and WARMUP each turned the other way: process start -> its first job-take, and -> its
  first completed job (a synthesize job queued before the worker starts: NFE 1, word timings on, as a
  first request on a scaled-up worker is); and the phases the worker logs in its `start-up:` lines;
- the floor and the default worker again after the page cache is dropped (`/proc/sys/vm/drop_caches`, as
  root) or, where that is refused, after the model files and the Python environment are evicted from it
  (`posix_fadvise(DONTNEED)`), which is then an estimate of a cold disk.

Warm runs are interleaved, best of `repeats`; the cold pair runs once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIRST_JOB = {
    "text": "A first job on a fresh worker, about five seconds long.",
    "nfe_steps": 1,
    "seed": 1,
    "word_timings": True,
}
START_TIMEOUT = 600.0

FLOOR = """
import sys, time
import torch
n = 0
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += len(block)
print("ready", n, flush=True)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print(line.strip(), flush=True)
"""

# The worker's `start-up:` log lines (__main__, pipeline, readiness) -> phase names.
PHASES = {
    "interpreter and imports": r"start-up: ([\d.]+) s from process start to loading models",
    "manifest and storage": r"start-up: manifest and storage ([\d.]+) s",
    "TTS model code and weights": r"\(model code and weights\) ([\d.]+) s",
    "grammars, aligner and ASR (foreground)": r"grammars, aligner and ASR ([\d.]+) s",
    "warm-up": r"warm-up ([\d.]+) s",
    "to the RunPod loop (total)": r"start-up: ([\d.]+) s from process start to the RunPod loop",
    "background: normalisation grammars": r"the normalisation grammars loaded in the background in ([\d.]+) s",
    "background: aligner and ASR": r"speech recognition models loaded in the background in ([\d.]+) s",
}


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a live process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def floor_start(files: list[Path]) -> tuple[float, int]:
    """Seconds to import torch and read `files`, and that process's peak RSS."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOOR, *map(str, files)], stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir()
    )
    assert proc.stdout is not None
    ready = next(line for line in proc.stdout if line.startswith("ready"))
    elapsed = time.monotonic() - t0
    hwm = int(next(line for line in proc.stdout if line.startswith("VmHWM")).split()[1]) * 1024
    proc.wait(timeout=60)
    assert int(ready.split()[1]) == sum(f.stat().st_size for f in files)
    return elapsed, hwm


def worker_start(model_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """One worker process: seconds to its first take and its first completed job, and its logged phases."""
    from fake_runpod import FakeRunPod, WorkerProcess

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp, FakeRunPod() as fake:
        job = fake.submit(FIRST_JOB)  # queued before the worker starts: its first take takes it
        worker = WorkerProcess(fake, model_dir, Path(tmp), extra_env=env)
        try:
            take = fake.wait_take(timeout=START_TIMEOUT, process=worker)
            done = fake.wait_results([job], timeout=START_TIMEOUT, process=worker)[job]
            assert done.ok, done.body
            # The background load may end after the job (one that needs no aligner would not wait for it).
            deadline = time.monotonic() + 60
            while env.get("BACKGROUND_LOAD") != "false" and "background models ready" not in worker.log_tail(10**6):
                assert time.monotonic() < deadline, worker.log_tail()
                time.sleep(0.2)
            log = worker.log_tail(10**6)
        finally:
            worker.stop()
    phases = {}
    for name, pattern in PHASES.items():
        if match := re.search(pattern, log):
            phases[name] = float(match.group(1))
    return {"take": take.at - worker.started, "job": done.at - worker.started, "phases": phases}


def drop_page_cache(paths: list[Path]) -> str:
    """Empty the page cache; where that is refused, evict every file under `paths` from it. Says which."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "dropped (`/proc/sys/vm/drop_caches`)"
    except OSError:
        pass
    for root in paths:
        for path in root.rglob("*") if root.is_dir() else [root]:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)
    return "estimated: model files and the Python environment evicted (`posix_fadvise`), not the whole cache"


def sides(device: str) -> dict[str, dict[str, str]]:
    """The worker's settings each side runs with: the defaults, and each start-up choice turned the other way."""
    cuda = device.startswith("cuda")
    return {
        "defaults": {},
        "BACKGROUND_LOAD=false": {"BACKGROUND_LOAD": "false"},
        f"WARMUP={'false' if cuda else 'true'}": {"WARMUP": "false" if cuda else "true"},
    }


def measure(model_dir: Path, files: list[Path], repeats: int) -> dict[str, Any]:
    device = os.environ.get("DEVICE", "cpu")
    runs = sides(device)
    out: dict[str, Any] = {"device": device, "floor": [], "sides": {name: [] for name in runs}}
    for run in range(repeats):
        seconds, out["floor_hwm"] = floor_start(files)
        out["floor"].append(seconds)
        for name, extra in runs.items():
            out["sides"][name].append(worker_start(model_dir, {"DEVICE": device, **extra}))
        firsts = ", ".join(f"{n} {r[-1]['take']:.1f}/{r[-1]['job']:.1f}" for n, r in out["sides"].items())
        print(f"  cold start {run + 1}/{repeats}: floor {seconds:.1f} s; first take/first job: {firsts}", flush=True)
    evicted = [model_dir, Path(sys.prefix), Path(sys.base_prefix) / "lib"]
    out["cache"] = drop_page_cache(evicted)
    out["cold_floor"] = floor_start(files)[0]
    drop_page_cache(evicted)
    out["cold"] = worker_start(model_dir, {"DEVICE": device})
    print(f"  page cache {out['cache']}: floor {out['cold_floor']:.1f} s, first take {out['cold']['take']:.1f} s")
    return out


def render(cs: dict[str, Any]) -> list[str]:
    floor = min(cs["floor"])

    def row(label: str, seconds: float, base: float = floor) -> str:
        return f"| {label} | {seconds:.1f} | {seconds / base:.2f} |"

    default = cs["sides"]["defaults"]
    lines = [
        "## Cold start",
        "",
        "| | seconds | × floor |",
        "|---|---:|---:|",
        f"| floor: `python -c 'import torch'` + read the checkpoint and vocoder bytes | {floor:.1f} | 1.00 |",
        row("`python -m tts_worker`: process start to its first job-take", min(r["take"] for r in default)),
        row("process start to its first completed job (NFE 1, word timings)", min(r["job"] for r in default)),
    ]
    for name, side in cs["sides"].items():
        if name != "defaults":
            lines += [
                row(f"first job-take, {name}", min(r["take"] for r in side)),
                row(f"first completed job, {name}", min(r["job"] for r in side)),
            ]
    lines += [
        "",
        f"Device {cs['device']}, defaults for it. Best of {len(cs['floor'])} runs each, interleaved, page cache",
        "warm. The first job is queued before the worker starts, so its first take takes it; it waits at the",
        "normalisation stage for the grammars and at the alignment stage for the aligner if they are still loading.",
        "",
        f"Page cache {cs['cache']}, one run each:",
        "",
        "| | seconds | × cold floor |",
        "|---|---:|---:|",
        f"| floor, cold | {cs['cold_floor']:.1f} | 1.00 |",
        row("first job-take, cold", cs["cold"]["take"], cs["cold_floor"]),
        row("first completed job, cold", cs["cold"]["job"], cs["cold_floor"]),
        "",
        "Where the time goes, as the worker logs it (`start-up:` lines; each side's run with the fastest first take):",
        "",
        "| phase | " + " | ".join(f"{name}, s" for name in cs["sides"]) + " |",
        "|---|" + "---:|" * len(cs["sides"]),
    ]
    fast = [min(side, key=lambda run: run["take"])["phases"] for side in cs["sides"].values()]
    for phase in PHASES:
        values = [f"{p[phase]:.2f}" if phase in p else "" for p in fast]
        if any(values):
            lines.append(f"| {phase} | " + " | ".join(values) + " |")
    return [*lines, "", *SEQUENCE, ""]


SEQUENCE = """### The start-up sequence

1. Settings are read and checked; `runpod` starts importing in a thread (about 1 s of it is the SDK's
   `cpuinfo` subprocess), overlapping everything below.
2. The manifest is checked (sizes, not hashes) and storage is probed, so a bad configuration fails in seconds.
3. The TTS model: only f5_tts's model code is imported (not its package `__init__`, which brings the Trainer,
   datasets and wandb, nor `utils_infer`, nor librosa); the modules are built without random initialisation and
   the safetensors checkpoint is memory-mapped and assigned as the parameters (`tts_worker/f5_loading.py`;
   tensor for tensor what f5_tts's loaders give, tested). Vocos the same way.
4. Warm-up (`WARMUP`, on CUDA by default): one generation of about 115 frames at NFE 1 (and, when
   batching, one masked batch of two), so the first job does not pay for kernel selection and cuBLAS/cuDNN
   start-up. On a CPU there is little to ready (the table above shows what it costs and what the first job
   gains), so it is off there by default.
5. The RunPod loop starts taking jobs. Meanwhile, with `BACKGROUND_LOAD=true` (the default), one thread
   restores the normalisation grammars (pynini), then imports whisperx and loads the aligner, NLTK data and
   ASR (transformers, pyannote, lightning). A job that needs them waits at that stage, never fails for it,
   and they are loaded once. A failure there ends the process with the same `tts-worker cannot start: ...`
   message as a failure at step 2 or 3.

Why background loading is the default: on a GPU worker the first job's sampling runs on the GPU while the
background thread's imports and loads run on the CPU, so they overlap instead of adding up before the first
take; a job that needs no aligner (no word timings or subtitles, `list_voices`, `download`) does not wait at
all. On this 2-core CPU machine both compete for the same cores, so the first completed job gains less than
the first take (the table above shows both).

**On a GPU (an estimate, not yet measured):** imports as here, minus the CPU-bound parts a faster host CPU
shortens (2-3 s); CUDA context creation 0.5-1 s; the 1.35 GB F5-TTS checkpoint read from a local NVMe disk
about 1 s cold (from a network volume, several times that), copied to the device in about 0.2 s; warm-up
1-2 s (cuBLAS/cuDNN initialisation and kernel choice); about 5-7 s from process start to the first take,
with the grammars, aligner and ASR ready 3-5 s later in the background.
""".splitlines()
