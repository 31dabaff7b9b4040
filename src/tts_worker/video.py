"""The rendered video: a job's audio with its karaoke subtitles burnt in, as MP4 for browsers and phones.

Contract: `store(job, req, words, wave, sample_rate, fetcher)` renders the video `req.video` asks
for and stores it through the job as `output/<stem>.mp4`, returning `{"video": <stored object>,
"video_url": <url>}` (None when no video is asked for). A failure raises a `WorkerError` before
anything is stored: `InvalidInput` for a background that cannot be used, `RenderError` when ffmpeg
fails, runs out of time or memory, or is missing. The job's staged writes then remove its other files.

What is rendered:
- the frame: the preset's canvas (`tts_worker.styles.PRESETS`), filled with the background colour,
  or the background image scaled to cover it and centre-cropped (EXIF orientation applied);
- the subtitles: the ASS that `subtitles.build` writes for the request's `subtitles` style (or the
  defaults) at the video's resolution, drawn by libass through ffmpeg's `ass` filter, with the fonts
  fontconfig finds (the worker's image ships DejaVu Sans);
- H.264 (libx264, `veryfast`, CRF 23, yuv420p, 30 fps) and AAC (128 kb/s, 48 kHz), `+faststart`, as
  long as the audio (`-t`: within one frame).

Background images are fetched like `voice_url` (`Fetcher.fetch_bytes`: https, s3:// or base64, at
most `FETCH_MAX_BYTES`), must be PNG, JPEG or WebP, and at most `MAX_IMAGE_PIXELS` (checked from
the header, before decoding; large JPEGs decode at a reduced scale).

ffmpeg runs as a child process in its own session, bounded in time (`timeout_for(duration)`:
`TIMEOUT_BASE` + `TIMEOUT_PER_SECOND` x the audio's length; measured cost is 0.4 s per second at
1080x1920 on 2 CPU cores, docs/PERFORMANCE.md), in address space (`MEMORY_LIMIT`, RLIMIT_AS, set on
the child from the parent right after it starts: `preexec_fn` is unsafe in a threaded worker) and in
threads (`THREADS`). On timeout the whole process group is killed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
from PIL import Image, ImageOps, UnidentifiedImageError

from tts_worker import subtitles
from tts_worker.errors import InvalidInput, RenderError

if TYPE_CHECKING:
    from tts_worker.fetch import Fetcher
    from tts_worker.job import Job
    from tts_worker.options import VideoRequest
    from tts_worker.results import Video
    from tts_worker.schemas import AlignRequest, SynthesizeRequest
    from tts_worker.words import WordTiming

logger = logging.getLogger(__name__)

FPS = 30
CONTENT_TYPE = "video/mp4"
MAX_IMAGE_PIXELS = 50_000_000
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
TIMEOUT_BASE = 30.0
TIMEOUT_PER_SECOND = 3.0
MEMORY_LIMIT = 3 * 2**30
"""Address space of the ffmpeg process: at 1080x1920 with 2 threads it peaks at 0.76 GiB (0.3 GiB resident)."""
THREADS = max(1, min(4, os.cpu_count() or 1))
_STDERR_TAIL = 2000
# How ffmpeg (its loader, libx264, libavutil) reports an allocation refused by RLIMIT_AS.
_OUT_OF_MEMORY = ("Cannot allocate memory", "malloc of size", "failed to map segment", "out of memory")


def timeout_for(duration: float) -> float:
    """Seconds ffmpeg may take for a video of `duration` seconds."""
    return TIMEOUT_BASE + TIMEOUT_PER_SECOND * duration


def store(
    job: Job,
    req: SynthesizeRequest | AlignRequest,
    words: list[WordTiming] | None,
    wave: np.ndarray,
    sample_rate: int,
    fetcher: Fetcher,
) -> Video | None:
    """Render and store the video `req.video` asks for (see the module docstring)."""
    spec = req.video
    if spec is None:
        return None
    with job.watch.stage("video"):
        return _store(job, spec, req, words, wave, sample_rate, fetcher)


def _store(
    job: Job,
    spec: VideoRequest,
    req: SynthesizeRequest | AlignRequest,
    words: list[WordTiming] | None,
    wave: np.ndarray,
    sample_rate: int,
    fetcher: Fetcher,
) -> Video:
    options = options_for(spec, req.subtitles.style() if req.subtitles else {})
    size = (options.preset.width, options.preset.height)
    image = None if spec.background.startswith("#") else fetch_background(spec.background, size, fetcher)
    duration = len(wave) / sample_rate
    ass, _ = subtitles.build("ass", words or [], options, duration)
    data = render(ass, wave, sample_rate, size, image if image is not None else spec.background)
    stored = job.store("output/", "mp4", data, CONTENT_TYPE)
    return {"video": stored, "video_url": stored["url"]}


def options_for(spec: VideoRequest, style: dict[str, Any]) -> subtitles.SubtitleOptions:
    """The subtitle style at the video's resolution (the request's `subtitles` style, else the defaults)."""
    resolution = spec.resolution or style.get("resolution", "landscape")
    return subtitles.SubtitleOptions(**{**style, "resolution": resolution})


def fetch_background(value: str, size: tuple[int, int], fetcher: Fetcher) -> Image.Image:
    """The background image, fetched, checked, and scaled and cropped to cover `size`."""
    field = "video.background"
    data = fetcher.fetch_bytes(value, field=field)
    limit = f"the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit follows
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError:
            raise InvalidInput(f"{field}: the image is far too large; {limit}") from None
        except (UnidentifiedImageError, OSError, ValueError):
            raise InvalidInput(f"{field}: not a PNG, JPEG or WebP image") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidInput(f"{field}: the image is {width}x{height} pixels; {limit}")
    try:
        # JPEG: decode at the smallest scale that still covers the frame either way up (EXIF may rotate it).
        image.draft("RGB", (max(size), max(size)))
        upright = ImageOps.exif_transpose(image).convert("RGB")
        return ImageOps.fit(upright, size, Image.Resampling.LANCZOS)
    except (OSError, ValueError, Image.DecompressionBombError):
        raise InvalidInput(f"{field}: the image is damaged or truncated") from None


def render(
    ass: bytes, wave: np.ndarray, sample_rate: int, size: tuple[int, int], background: str | Image.Image
) -> bytes:
    """MP4 bytes of `wave` over `background` (a #RRGGBB colour or an image of `size`) with `ass` burnt in."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RenderError("video: ffmpeg is not installed on this worker")
    duration = len(wave) / sample_rate
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="tts-video-") as tmp:
            work = Path(tmp)
            (work / "subs.ass").write_bytes(ass)
            sf.write(work / "audio.wav", wave, sample_rate, subtype="PCM_16")
            if isinstance(background, Image.Image):
                background.save(work / "background.png")
            _run(_command(exe, size, background, duration), work, timeout_for(duration))
            out = work / "video.mp4"
            data = out.read_bytes() if out.is_file() else b""
    except OSError as exc:  # the working files (disk full, TMPDIR gone); never a path in the message
        raise RenderError(f"video: rendering failed ({exc.strerror or exc.__class__.__name__})") from None
    if not data:
        raise RenderError("video: rendering produced no file")
    seconds = time.perf_counter() - started
    logger.info("rendered a %dx%d video of %.1f s in %.1f s (%d bytes)", *size, duration, seconds, len(data))
    return data


def _command(exe: str, size: tuple[int, int], background: str | Image.Image, duration: float) -> list[str]:
    """ffmpeg's arguments, run in the directory holding subs.ass, audio.wav and (an image) background.png."""
    if isinstance(background, Image.Image):
        # Decoded and converted to yuv420p once, then repeated by the loop filter (image2's -loop would
        # decode and convert the PNG for every frame: 1.7x the render time).
        frames, repeat = ["-framerate", str(FPS), "-i", "background.png"], f"loop=-1:1:0,setpts=N/{FPS}/TB,"
    else:
        frames, repeat = ["-f", "lavfi", "-i", f"color=c=0x{background[1:]}:s={size[0]}x{size[1]}:r={FPS}"], ""
    cmd = [exe, "-nostdin", "-hide_banner", "-v", "error", "-y", *frames, "-i", "audio.wav"]
    graph = f"[0:v]format=yuv420p,{repeat}ass=subs.ass,format=yuv420p[v]"
    cmd += ["-filter_complex", graph, "-map", "[v]", "-map", "1:a"]
    cmd += ["-t", f"{duration:.3f}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23"]
    cmd += ["-threads", str(THREADS), "-filter_threads", "1", "-c:a", "aac", "-b:a", "128k", "-ar", "48000"]
    return [*cmd, "-movflags", "+faststart", "video.mp4"]


def _run(cmd: list[str], cwd: Path, timeout: float) -> None:
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=quiet, stdout=quiet, stderr=subprocess.PIPE, start_new_session=True)
    with contextlib.suppress(OSError, ValueError):  # OSError: the child is already gone; its status says why
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise RenderError(f"video: rendering took longer than {math.ceil(timeout)} s and was stopped") from None
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        tail = stderr.decode("utf-8", errors="replace")[-_STDERR_TAIL:]
        logger.warning("ffmpeg exited with status %d: %s", proc.returncode, tail)
        if any(sign in tail for sign in _OUT_OF_MEMORY):
            raise RenderError(f"video: rendering ran out of its {MEMORY_LIMIT // 2**20} MiB memory limit")
        raise RenderError(f"video: rendering failed (ffmpeg exited with status {proc.returncode})")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
