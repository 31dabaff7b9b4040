#!/usr/bin/env python3
"""The worker's benchmark: how far the worker is from the bare model, measured side by side in one run.

    python bench/bench.py [--write docs/PERFORMANCE.md]     (`make bench`)

Rows, each beside its floor on the same machine in the same run:
  (a) cold start (bench/cold_start.py): `python -m tts_worker` from process start to its first job-take and
      to its first completed job (the SDK's production loop against `tests/fake_runpod.py`), with and without
      BACKGROUND_LOAD, warm and with the page cache dropped, phase by phase, beside a process that imports
      torch and reads the checkpoint bytes; full-size F5TTS_v1_Base (the packaged arch) and a real-size Vocos
      with random weights. `--only cold-start` runs this row alone and, with `--write`, replaces its section;
  (b) per-job overhead: one synthesize job through the worker's handler in-process against f5_tts's
      `infer_process` on the same model objects, reference, text, NFE and seed, with the worker's stages;
  (c) throughput: N jobs one after another, then at once without and with batching, through the production loop;
  (d) peak resident memory of the worker process and of the floor process;
  (e) on a CUDA machine, the real-time factor at 16 and 32 NFE with and without flash-attn;
  (f) the rendered video (`tts_worker.video.render`): seconds of ffmpeg per second of 1080x1920 video, and its
      peak memory. `--only video` runs this row alone and, with `--write`, replaces its section in the file.
  (g) the quality guard: its judge's time per chunk as a share of that chunk's synthesis, and one retry
      (`--only quality` runs this row alone and prints its section).
  (h) text normalisation: start-up and a 5000-character text as a share of synthesis (bench/normalize_bench.py).

The random-weight model directory is built once (bake_models.py's tiny layout, then the full-size DiT and
Vocos written over it) and cached in ~/.cache/tts-worker-bench. Random weights make noise, but cost what
real weights cost: same shapes, same FLOPs, same bytes. The tiny aligner makes the alignment line meaningless
in absolute terms; it is reported on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bake_models
sys.path.insert(0, str(ROOT / "tests"))  # fake_runpod
import cold_start  # noqa: E402  (bench/, beside this script)
import normalize_bench  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

MODEL = "F5TTS_v1_Base"
CACHE = Path(os.environ.get("TTS_BENCH_CACHE", Path.home() / ".cache" / "tts-worker-bench"))
# charactr/vocos-mel-24khz's backbone: the vocoder F5-TTS ships with.
VOCOS_FULL = {"dim": 512, "intermediate_dim": 1536, "num_layers": 8}
REF_TEXT = "Some call me nature, others call me mother nature."  # f5_tts's basic_ref_en.wav, 5.33 s
# About 10 s of speech at the reference's pace (9.6 characters/s), one chunk for both the worker and f5_tts.
TEXT_10S = "The quick brown fox jumps over the lazy dog, then runs far away into the quiet green hills at dawn."
TEXT_5S = "A shorter job for the throughput test, about five seconds."
SEED = 1234
START_TIMEOUT = 600.0


# --- the machine ---------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    import psutil
    import torch

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)  # noqa: S607
    return {
        "CPU": cpu,
        "cores": f"{psutil.cpu_count(logical=True)} logical, {psutil.cpu_count(logical=False)} physical",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "GPU": gpu,
        "device used": "cuda" if torch.cuda.is_available() else "cpu",
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "f5-tts": metadata.version("f5-tts"),
        "runpod": metadata.version("runpod"),
        "commit": commit.stdout.strip() or "unknown",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --- the full-size random-weight model directory -------------------------------------------------
def build_full_model_dir(out: Path) -> Path:
    """bake_models.py's tiny layout (aligner, punkt_tab, ASR included), with a full-size F5TTS_v1_Base and a
    real-size Vocos of random weights written over the tiny ones. Cached: rebuilt only when absent."""
    import bake_models
    import torch
    from f5_tts import model as f5_model
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import save_file
    from vocos import Vocos

    from tts_worker import manifest as mf

    if (out / mf.MANIFEST_NAME).is_file() and not mf.verify(out, mf.load_manifest(out)):
        return out
    print(f"building the random-weight {MODEL} model directory in {out} (once)...", flush=True)
    tiny = bake_models.bake_tiny(out)
    (out / mf.MANIFEST_NAME).unlink()  # incomplete until the full-size files are in

    backbone, arch, mel_type = bake_models.packaged_arch(MODEL)
    vocab_char_map, vocab_size = get_tokenizer(str(out / mf.TTS_VOCAB), "custom")
    torch.manual_seed(0)
    cfm = f5_model.CFM(
        transformer=getattr(f5_model, backbone)(
            **arch, text_num_embeds=vocab_size, mel_dim=bake_models.MEL["n_mel_channels"]
        ),
        mel_spec_kwargs={**bake_models.MEL, "mel_spec_type": mel_type},
        vocab_char_map=vocab_char_map,
    )
    save_file({f"ema_model.{k}": v.contiguous() for k, v in cfm.state_dict().items()}, str(out / mf.TTS_CHECKPOINT))
    params = sum(p.numel() for p in cfm.parameters())
    del cfm

    config = out / mf.VOCODER_DIR / "config.yaml"
    config.write_text(bake_models.vocos_config(**VOCOS_FULL))
    torch.manual_seed(0)
    torch.save(Vocos.from_hparams(str(config)).state_dict(), out / mf.VOCODER_DIR / "pytorch_model.bin")

    tts = mf.TTSSpec(
        name=f"{MODEL}-random",
        backbone=backbone,
        arch=arch,
        mel_spec_type=mel_type,
        source=mf.Source(kind="random", files=[f"{params} parameters, torch.manual_seed(0)"]),
    )
    vocoder = mf.VocoderSpec(source=mf.Source(kind="random", files=[json.dumps(VOCOS_FULL)]))
    # `tiny` = random weights: the worker says its output is noise. The sizes are the real ones.
    mf.write_manifest(out, tiny=True, tts=tts, vocoder=vocoder, components=tiny.components, files=list(tiny.files))
    return out


# --- measurements --------------------------------------------------------------------------------
@dataclass
class Report:
    machine: dict[str, str]
    nfe: int
    rows: dict[str, Any] = field(default_factory=dict)


def worker_runs(model_dir: Path, nfe: int, jobs: int) -> dict[str, Any]:
    """`jobs` jobs one after another on a worker with the default settings (MAX_CONCURRENCY=jobs, as a
    concurrent endpoint runs); then the same jobs submitted at once to one worker with BATCH_MAX_SIZE=1 (no
    batching) and to one with BATCH_MAX_SIZE=jobs. Peak memory of the first worker and of the floor."""
    from fake_runpod import FakeRunPod, WorkerProcess
    from tts_worker import manifest as mf

    manifest = mf.load_manifest(model_dir)
    files = [model_dir / manifest.tts.checkpoint, *(model_dir / f for f in mf.VOCODER_FILES)]
    out: dict[str, Any] = {"floor_hwm": cold_start.floor_start(files)[1]}
    env = {"DEVICE": os.environ.get("DEVICE", "cpu"), "MAX_CONCURRENCY": str(jobs)}
    for name, extra in (
        ("throughput", {}),
        ("unbatched", {"BATCH_MAX_SIZE": "1"}),
        ("batched", {"BATCH_MAX_SIZE": str(jobs)}),
    ):
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp, FakeRunPod() as fake:
            worker = WorkerProcess(fake, model_dir, Path(tmp), extra_env={**env, **extra})
            try:
                fake.wait_take(timeout=START_TIMEOUT, process=worker)
                out[name] = throughput(fake, worker, nfe, jobs, at_once=name != "throughput")
                if name == "throughput":
                    out["worker_hwm"] = cold_start.vm_hwm(worker.pid)
            finally:
                worker.stop()
    return out


def throughput(fake: Any, worker: Any, nfe: int, jobs: int, *, at_once: bool) -> dict[str, Any]:
    def job(i: int) -> dict[str, Any]:
        return {"text": TEXT_5S, "seed": SEED + i, "nfe_steps": nfe}

    warm = fake.submit(job(-1))  # the first job of this length builds its kernels; neither side should pay
    assert fake.wait_results([warm], timeout=900, process=worker)[warm].ok
    time.sleep(1.5)
    t0 = time.monotonic()
    if at_once:
        ids = [fake.submit(job(i)) for i in range(jobs)]
        results = fake.wait_results(ids, timeout=900, process=worker)
    else:
        results = {}
        for i in range(jobs):
            job_id = fake.submit(job(i))
            results |= fake.wait_results([job_id], timeout=900, process=worker)
    out: dict[str, Any] = {"seconds": time.monotonic() - t0}
    assert all(r.ok for r in results.values()), [r.body for r in results.values()]
    out["audio_seconds"] = sum(r.output["duration"] for r in results.values())
    out["batch_sizes"] = sorted(c["batch_size"] for r in results.values() for c in r.output["chunks"])
    print(f"  throughput: {jobs} jobs {'at once' if at_once else 'one after another'}: {out}")
    return out


def overhead(model_dir: Path, nfe: int, repeats: int) -> dict[str, Any]:
    """The worker's handler vs f5_tts's infer_process on the very same model objects, alternating runs."""
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        return _overhead(model_dir, nfe, repeats, Path(tmp))


def _overhead(model_dir: Path, nfe: int, repeats: int, storage: Path) -> dict[str, Any]:
    import asyncio
    import concurrent.futures

    import numpy as np
    import soundfile as sf
    import torch
    from f5_tts.infer.utils_infer import infer_process

    from tts_worker import handler as handlers
    from tts_worker.pipeline import Worker
    from tts_worker.settings import Settings
    from tts_worker.voices import default_voice

    device = os.environ.get("DEVICE", "cpu")  # per-job costs: everything loaded before the first measurement
    settings = Settings(model_dir=model_dir, storage_dir=storage, device=device, background_load=False)
    worker = Worker.load(settings)
    # As `python -m tts_worker` serves jobs: the async handler, which runs each job in a thread of its own.
    # (The thread that loaded the models can carry other thread settings: see `torch_threads` below.)
    if hasattr(handlers, "make_async_handler"):
        async_handler = handlers.make_async_handler(worker)

        def handler(job: dict[str, Any]) -> dict[str, Any]:
            return asyncio.run(async_handler(job))
    else:
        handler = handlers.make_handler(worker)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        torch_threads = {
            "loading thread": torch.get_num_threads(),
            "job thread": pool.submit(torch.get_num_threads).result(),
        }
    # The engine's own model and vocoder objects: identical weights, memory layout and threads for both.
    model, vocoder = worker.engine._model, worker.engine._vocoder
    ref_file = Path(storage) / "ref.wav"
    ref_file.write_bytes(default_voice()[0])

    def bare() -> tuple[float, np.ndarray]:
        torch.manual_seed(SEED)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            wave, _, _ = infer_process(
                str(ref_file),
                REF_TEXT,
                TEXT_10S,
                model,
                vocoder,
                mel_spec_type="vocos",
                show_info=lambda *a, **k: None,
                progress=None,
                nfe_step=nfe,
                cfg_strength=2.0,
                sway_sampling_coef=-1.0,
                speed=1.0,
                device=worker.engine.device,
            )
        return time.perf_counter() - t0, wave

    def served(i: int) -> tuple[float, dict[str, Any]]:
        job = {"id": f"bench-{i}", "input": {"text": TEXT_10S, "seed": SEED, "nfe_steps": nfe}}
        t0 = time.perf_counter()
        result = handler(job)
        elapsed = time.perf_counter() - t0
        assert "error" not in result, result
        return elapsed, result

    bare_s, served_s, results = [], [], []
    for i in range(repeats):
        seconds, wave = bare()
        bare_s.append(seconds)
        seconds, result = served(i)
        served_s.append(seconds)
        results.append(result)
        print(f"  per job {i + 1}/{repeats}: worker {served_s[-1]:.2f} s, bare infer_process {bare_s[-1]:.2f} s")
    best = results[served_s.index(min(served_s))]
    served_audio, _ = sf.read(storage / best["audio"]["key"], dtype="float32")
    same_length = len(served_audio) == len(wave)
    return {
        "bare": bare_s,
        "served": served_s,
        "stages": best["processing_stages"],
        "pipeline_total": best["processing_time"],
        "chunks": len(best["chunks"]),
        "duration": best["duration"],
        "bare_duration": len(wave) / 24_000,
        "max_abs_diff": float(np.max(np.abs(served_audio - wave))) if same_length else None,
        "torch_threads": torch_threads,
    }


def quality_cost(model_dir: Path, nfe: int) -> dict[str, Any]:
    """One 10 s chunk through the guard's loop on the worker's own objects and judge, in mode retry with two
    attempts: the tiny ASR fails every take, so the loop makes exactly one retry. Timed side by side in the
    one run from the loop's progress updates (one after each judged take): the first take's synthesis, its
    judge (the loop's own account), and the second take from the first's verdict to its own."""
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        from tts_worker import audio, tts
        from tts_worker.comparison import Comparison
        from tts_worker.pipeline import Worker
        from tts_worker.quality import AsrJudge, Policy, reference_rate
        from tts_worker.retakes import Retakes
        from tts_worker.settings import Settings
        from tts_worker.voices import default_voice

        # Per-job costs, not start-up: everything loaded before the first measurement.
        device = os.environ.get("DEVICE", "cpu")
        settings = Settings(model_dir=model_dir, storage_dir=Path(tmp), device=device, background_load=False)
        worker = Worker.load(settings)
        data, text = default_voice()
        samples, rate = audio.decode(data, field="voice")
        ref = worker.engine.prepare_reference(audio.resample(samples, rate, tts.SAMPLE_RATE), text, max_seconds=12)
        gens = [tts.Generation(ref, TEXT_10S, tts.SamplingParams(nfe_steps=nfe), SEED)]
        # as the worker builds it: the transcript goes through the normaliser, part of the judge's cost
        compare = Comparison("en", worker.normalizer)
        judge = AsrJudge(worker.aligner, compare=compare, chars_per_second=reference_rate(ref))
        worker.engine.generate_batch(gens)  # the first generation of this length builds its kernels
        judged: list[tuple[float, float]] = []  # (time, judge seconds so far) after each take
        # `loop` is bound by the time the loop calls back
        loop = Retakes(
            gens,
            worker.batcher.submit,
            judge,
            Policy("retry", 2),
            lambda _: judged.append((time.perf_counter(), loop.judge_seconds)),
        )
        t0 = time.perf_counter()
        (take,) = loop.settle_all()
        (t1, judge1), (t2, _) = judged
        out = {
            "synthesis": t1 - t0 - judge1,
            "judge": judge1,
            "retry": t2 - t1,
            "attempts": loop.record(0)["attempts"],
            "chunk_seconds": len(take.audio.wave) / tts.SAMPLE_RATE,
        }
        print(f"  quality: {out}")
        return out


def render_quality(q: dict[str, Any], nfe: int) -> list[str]:
    synthesis, judge, retry = q["synthesis"], q["judge"], q["retry"]
    return [
        f"## Quality guard: one {q['chunk_seconds']:.1f} s chunk, NFE {nfe}",
        "",
        "| | seconds | × synthesis of the chunk |",
        "|---|---:|---:|",
        f"| synthesis of the chunk's first take (sampling and vocoder, through the batcher) | {synthesis:.2f} | 1.00 |",
        f"| the judge (ASR round trip, alignment, audio checks) | {judge:.2f} | {judge / synthesis:.3f} |",
        f"| one retry (the second take and its judge) | {retry:.2f} | {retry / synthesis:.3f} |",
        "",
        "One run of mode retry with two attempts, timed from the loop's progress updates. Measured with",
        "bake_models.py's tiny ASR and aligner, so the judge's line is a floor for the plumbing (pyannote VAD,",
        "whisperx alignment), not the cost of a real Whisper-small; the tiny random Whisper decodes noise until",
        "its token limit, so its ASR time is not that of a real model either.",
        "",
        "**Estimate, not measured (no GPU here yet):** F5-TTS at 32 NFE runs at a real-time factor of about",
        "0.15 on an RTX 3090 (the F5-TTS paper), so a 10 s chunk samples in about 1.5 s. faster-whisper small",
        "transcribes at about 34 x real time on CUDA (Open ASR leaderboard, small.en), 0.3 s for 10 s; pyannote",
        "VAD and the wav2vec2 alignment add about 0.05 s each. The judge then costs about 0.4 s, 20-30 % of the",
        "chunk's synthesis at 32 NFE (twice that share at 16 NFE), and one retry about 1.25 x the chunk's",
        "synthesis (another take and its judge; retries of a job's chunks share a batch). With a share p of",
        "chunks retried once, a job's synthesis stage takes about (1.25 + 1.25 p) x its time without the guard.",
        "Mode retry is the default on CUDA only: on a CPU one retry costs minutes.",
        "",
    ]


def gpu_rows(model_dir: Path) -> list[dict[str, Any]]:
    """RTF of f5_tts's infer_process at 16/32 NFE with SDPA and (when it imports) flash-attn. CUDA only."""
    import torch
    from f5_tts import model as f5_model
    from f5_tts.infer.utils_infer import infer_process, load_model, load_vocoder

    from tts_worker import manifest as mf
    from tts_worker.voices import default_voice

    manifest = mf.load_manifest(model_dir)
    backends = ["torch"]
    try:
        import flash_attn  # noqa: F401

        if torch.cuda.get_device_capability(0)[0] >= 8:
            backends.append("flash_attn")
    except (ImportError, OSError):
        pass
    ref = Path(tempfile.mkdtemp()) / "ref.wav"
    ref.write_bytes(default_voice()[0])
    vocoder = load_vocoder("vocos", is_local=True, local_path=str(model_dir / manifest.vocoder.dir), device="cuda")
    rows = []
    for backend in backends:
        model = load_model(
            getattr(f5_model, manifest.tts.backbone),
            {**manifest.tts.arch, "attn_backend": backend},
            str(model_dir / manifest.tts.checkpoint),
            mel_spec_type=manifest.tts.mel_spec_type,
            vocab_file=str(model_dir / manifest.tts.vocab),
            device="cuda",
        )
        for nfe in (16, 32):
            times = []
            for _ in range(3):  # the first is warm-up
                torch.manual_seed(SEED)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    wave, sr, _ = infer_process(
                        str(ref), REF_TEXT, TEXT_10S, model, vocoder, show_info=lambda *a, **k: None,
                        progress=None, nfe_step=nfe, device="cuda",
                    )  # fmt: skip
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            seconds = min(times[1:])
            rows.append({"backend": backend, "nfe": nfe, "seconds": seconds, "rtf": seconds / (len(wave) / sr)})
        rows[-1]["dtype"] = str(next(model.parameters()).dtype)
        del model
        torch.cuda.empty_cache()
    if "flash_attn" not in backends:
        rows.append({"backend": "flash_attn", "nfe": None, "note": "flash-attn not importable or GPU below sm80"})
    return rows


VIDEO_SECONDS = 20.0


def video_cost(seconds: float = VIDEO_SECONDS, repeats: int = 2) -> dict[str, Any]:
    """Render a vertical karaoke video of `seconds` over a colour and over an image, best of `repeats`; in a
    child process of its own, so that the children's peak RSS it reports is ffmpeg's alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_video_cost, seconds, repeats).result()


def _video_cost(seconds: float, repeats: int) -> dict[str, Any]:
    import resource

    import numpy as np
    from PIL import Image

    from tts_worker import subtitles, video
    from tts_worker.words import WordTiming

    text = (TEXT_10S + " " + TEXT_5S).split()
    step = seconds / (len(text) + 1)
    words = [WordTiming(word=text[n % len(text)], start=n * step, end=(n + 0.8) * step, score=None, interpolated=False)
             for n in range(len(text))]  # fmt: skip
    sr = 24_000
    wave = (0.1 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)
    ass, _ = subtitles.build("ass", words, subtitles.SubtitleOptions(resolution="vertical"), seconds)
    image = Image.linear_gradient("L").resize((1080, 1920)).convert("RGB")
    out: dict[str, Any] = {"seconds": seconds, "threads": video.THREADS, "timeout": video.timeout_for(seconds)}
    out["timeout_rule"] = f"{video.TIMEOUT_BASE:g} s + {video.TIMEOUT_PER_SECOND:g} x"
    for name, background in (("colour", "#203040"), ("image", image)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            data = video.render(ass, wave, sr, (1080, 1920), background)
            times.append(time.perf_counter() - t0)
        out[name] = min(times)
        out[f"{name}_bytes"] = len(data)
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    out["memory_limit"] = video.MEMORY_LIMIT
    return out


def render_video(v: dict[str, Any]) -> str:
    gib, mib = 2**30, 2**20
    return "\n".join(
        [
            f"## Rendered video: 1080x1920, {v['seconds']:.0f} s, libx264 veryfast, {v['threads']} threads",
            "",
            "| background | render seconds | seconds per second of video | MP4 size |",
            "|---|---:|---:|---:|",
            *(
                f"| {label} | {v[k]:.1f} | {v[k] / v['seconds']:.2f} | {v[f'{k}_bytes'] / mib:.1f} MiB |"
                for k, label in (("colour", "colour (`#203040`)"), ("image", "image (scaled and cropped)"))
            ),
            "",
            f"Best of 2 runs each of `tts_worker.video.render` (karaoke ASS of the vertical preset, 30 fps, AAC "
            f"128 kb/s). Peak resident memory of ffmpeg: {v['peak_rss'] / gib:.2f} GiB (its address-space limit: "
            f"{v['memory_limit'] / gib:.0f} GiB). A job's render may take {v['timeout_rule']} the audio's length "
            f"({v['timeout']:.0f} s for this one) before it is stopped.",
            "",
        ]
    )


# --- the table -----------------------------------------------------------------------------------
def render(report: Report) -> str:
    r = report.rows
    gib = 2**30
    lines = [
        "# Performance",
        "",
        f"Written by `make bench` (`bench/bench.py`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Every ratio",
        "compares two measurements taken side by side in the same run on the same machine; absolute numbers",
        "move with the machine and its load, the ratios much less. Models: full-size F5TTS_v1_Base (the",
        "packaged architecture) and a real-size Vocos, both with random weights (same shapes and FLOPs as",
        "the real ones; the audio is noise), with bake_models.py's tiny aligner and ASR.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report.machine.items()],
        "",
    ]
    cs = r["workers"]
    lines += cold_start.render(r["cold_start"]) if "cold_start" in r else []
    oh = r["overhead"]
    bare, served = min(oh["bare"]), min(oh["served"])
    align = oh["stages"].get("alignment", 0.0)
    served_ex = served - align
    synthesis = oh["stages"].get("synthesis", 0.0)
    extra = served_ex - bare
    model_stages = ("synthesis", "vocoder", "alignment")
    around = oh["pipeline_total"] - sum(v for k, v in oh["stages"].items() if k in model_stages)
    around += max(0.0, oh["served"][oh["served"].index(served)] - oh["pipeline_total"])
    lines += [
        f"## Per-job overhead: one {oh['duration']:.1f} s utterance, NFE {report.nfe}, seed {SEED}",
        "",
        "| | seconds | × bare |",
        "|---|---:|---:|",
        f"| bare f5_tts `infer_process` (same model objects, reference, text, NFE, seed) | {bare:.2f} | 1.00 |",
        f"| worker handler, whole job | {served:.2f} | {served / bare:.3f} |",
        f"| worker handler, excluding alignment | {served_ex:.2f} | {served_ex / bare:.3f} |",
        f"| alignment (own line; tiny random aligner here) | {align:.2f} | |",
        "",
        f"Overhead of the worker over the bare model, alignment excluded: {extra:+.2f} s = "
        f"{extra / synthesis * 100:+.1f} % of the synthesis time (target: under 5 %). Best of "
        f"{len(oh['served'])} alternating runs. Chunks: {oh['chunks']}. Output length worker/bare: "
        f"{oh['duration']:.2f} s / {oh['bare_duration']:.2f} s"
        + (
            f", largest sample difference {oh['max_abs_diff']:.2g} (16-bit WAV)."
            if oh["max_abs_diff"] is not None
            else "."
        ),
        "",
        f"The worker's own work around the model (reference, post-processing, encoding, storage and the rest of "
        f"its `processing_stages`, plus the handler's validation): {around:.3f} s = {around / synthesis * 100:.2f} % "
        "of the synthesis time. This part does not depend on the machine's load; the wall-clock ratio above does "
        "(both sides run the same sampling code on the same model objects; their difference moves with the load).",
        "",
        f"torch threads after the worker loaded its models: {oh.get('torch_threads')} on "
        f"{os.cpu_count()} logical cores. Jobs run in the async handler's threads, as in production.",
        "",
        "Where the worker's job time goes (its `processing_stages`; `processing_time` is the total):",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    total = oh["pipeline_total"]
    for stage, seconds in oh["stages"].items():
        lines.append(f"| {stage} | {seconds:.3f} | {seconds / total * 100:.1f} % |")
    rest = total - sum(oh["stages"].values())
    lines += [
        f"| other (chunking, result) | {rest:.3f} | {rest / total * 100:.1f} % |",
        f"| total | {total:.3f} | |",
        "",
    ]

    tp, flat, batched = cs["throughput"], cs["unbatched"], cs["batched"]
    n = r["jobs"]

    def row(label: str, seconds: float) -> str:
        return f"| {label} | {seconds:.1f} | {n / seconds * 60:.2f} | {tp['seconds'] / seconds:.2f} |"

    lines += [
        f"## Throughput: {n} jobs of about {tp['audio_seconds'] / n:.1f} s each, NFE {report.nfe}, "
        "through the production loop",
        "",
        "| | seconds | jobs/min | × one after another |",
        "|---|---:|---:|---:|",
        row("one after another (submit, wait for the result, submit the next)", tp["seconds"]),
        row(f"all {n} submitted at once, MAX_CONCURRENCY={n}, BATCH_MAX_SIZE=1 (no batching)", flat["seconds"]),
        row(
            f"all {n} submitted at once, MAX_CONCURRENCY={n}, BATCH_MAX_SIZE={n} (cross-request batching)",
            batched["seconds"],
        ),
        "",
        "Cross-request batching against the same concurrent jobs unbatched: "
        f"{flat['seconds'] / batched['seconds']:.2f}×. "
        f"Batch sizes the batched jobs' chunks were sampled in: {batched['batch_sizes']} (unbatched: "
        f"{flat['batch_sizes']}).",
        "",
        "Every side starts after one warm job of the same length. Concurrent jobs overlap their reference",
        "fetch, alignment, encoding and upload, and skip the SDK loop's pause of up to 1 s between jobs; the",
        "three sides run in separate worker processes with the same settings but BATCH_MAX_SIZE (the first with",
        "the default: 4 on CUDA, 1 on CPU). On a CPU a batch cannot win: the model's matrix products already keep",
        "the cores busy, and a batch of different lengths needs an attention mask, which sends torch's CPU",
        "attention to its unfused path. Hence the CPU default of no batching. On a GPU one chunk leaves",
        "most of the device idle and flash-attn (sm80+) runs the masked batch without padding; that gain is",
        "not measured here.",
        "",
        "## Peak memory (resident set, VmHWM)",
        "",
        "| process | GiB |",
        "|---|---:|",
        f"| floor (import torch, read the checkpoint) | {cs['floor_hwm'] / gib:.2f} |",
        f"| worker after start-up and the throughput jobs | {cs['worker_hwm'] / gib:.2f} |",
        "",
        *normalize_bench.render(r.get("normalize"), min(oh["bare"]) / len(TEXT_10S)),
    ]
    if "video" in r:
        lines += [render_video(r["video"])]
    if "quality" in r:
        lines += render_quality(r["quality"], report.nfe)
    lines += ["## GPU", ""]
    gpu = r.get("gpu")
    if not gpu:
        lines += ["No GPU on this machine: the RTF rows at 16 and 32 NFE with and without flash-attn are empty.", ""]
    else:
        lines += ["| attention | NFE | seconds | RTF | note |", "|---|---:|---:|---:|---|"]
        for row in gpu:
            if row.get("nfe") is None:
                lines.append(f"| {row['backend']} | | | | {row['note']} |")
            else:
                lines.append(
                    f"| {row['backend']} | {row['nfe']} | {row['seconds']:.2f} | {row['rtf']:.3f} | "
                    f"{row.get('dtype', '')} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", type=Path, metavar="FILE", help="also write the table here (docs/PERFORMANCE.md)")
    parser.add_argument("--nfe", type=int, default=None, help="NFE steps (default: 4 on CPU, 32 on CUDA)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each measurement (best is reported)")
    parser.add_argument("--jobs", type=int, default=4, help="jobs in the throughput test")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the raw measurements as JSON")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the random-weight model is built once")
    parser.add_argument(
        "--only", choices=["video", "quality", "cold-start"], help="run one row alone (see (a), (f) and (g) above)"
    )
    args = parser.parse_args(argv)
    if args.only == "video":
        return only_video(args.write)

    import torch

    cuda = torch.cuda.is_available()
    os.environ.setdefault("DEVICE", "cuda" if cuda else "cpu")
    nfe = args.nfe or (32 if cuda else 4)
    started = time.monotonic()
    report = Report(machine=machine(), nfe=nfe)
    model_dir = build_full_model_dir(args.cache / f"{MODEL}-random")

    if args.only == "quality":
        print("quality guard (in-process)...", flush=True)
        print("\n" + "\n".join(render_quality(quality_cost(model_dir, nfe), nfe)))
        print(f"machine: {report.machine}; load average at the end {os.getloadavg()}")
        return 0

    from tts_worker import manifest as mf

    manifest = mf.load_manifest(model_dir)
    files = [model_dir / manifest.tts.checkpoint, *(model_dir / f for f in mf.VOCODER_FILES)]
    if args.only == "cold-start":
        print("cold start (worker processes)...", flush=True)
        section = "\n".join(cold_start.render(cold_start.measure(model_dir, files, args.repeats)))
        load = os.getloadavg()
        section += (
            f"\nMeasured on its own (`bench.py --only cold-start`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"{report.machine['CPU']}, {os.cpu_count()} logical cores, commit {report.machine['commit']}, load "
            f"average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end.\n"
        )
        print("\n" + section)
        if args.write:
            replace_section(args.write, "## Cold start", section)
        return 0

    report.rows["jobs"] = args.jobs
    print("cold start (worker processes)...", flush=True)
    report.rows["cold_start"] = cold_start.measure(model_dir, files, args.repeats)
    print("throughput (worker processes)...", flush=True)
    report.rows["workers"] = worker_runs(model_dir, nfe, args.jobs)
    print("per-job overhead (in-process)...", flush=True)
    report.rows["overhead"] = overhead(model_dir, nfe, args.repeats)
    print("rendered video...", flush=True)
    report.rows["video"] = video_cost()
    print("quality guard (in-process)...", flush=True)
    report.rows["quality"] = quality_cost(model_dir, nfe)
    print("text normalisation...", flush=True)
    report.rows["normalize"] = normalize_bench.measure(args.repeats)
    if cuda:
        print("GPU rows...", flush=True)
        report.rows["gpu"] = gpu_rows(model_dir)

    load = os.getloadavg()
    shared = load[1] > (os.cpu_count() or 1)
    text = render(report) + (
        f"\nThe whole benchmark took {(time.monotonic() - started) / 60:.1f} min; load average at the end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} logical cores"
        + (
            ": other work shared the machine, so absolute times are inflated; the ratios are taken side by side.\n"
            if shared
            else ".\n"
        )
    )
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps({"machine": report.machine, "nfe": nfe, "rows": report.rows}, indent=2))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
        print(f"wrote {args.write}")
    return 0


def only_video(write: Path | None) -> int:
    """The video row alone; with `write`, its section in that file is replaced (or added before ## GPU)."""
    measured = video_cost()
    load = os.getloadavg()
    section = render_video(measured) + (
        f"\nMeasured on its own (`bench.py --only video`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} logical cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end.\n"
    )
    print(section)
    if write:
        replace_section(write, "## Rendered video", section)
    return 0


def replace_section(path: Path, heading: str, section: str) -> None:
    """Put `section` in place of the one under `heading` in the file (or before ## GPU, or at the end)."""
    text = path.read_text() if path.exists() else ""
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + "\n" + (text[end + 1 :] if end >= 0 else "")
    elif "## GPU" in text:
        text = text.replace("## GPU", section + "\n## GPU", 1)
    else:
        text += "\n" + section
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
