"""Rendered videos through the worker's handler (tiny random models, real ffmpeg/libass), checked with
ffprobe and by decoding frames; a bad background or a failing render fails the job, leaves no files,
and the worker serves the next job."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runpod.serverless.modules import rp_job

from frames import colour_mask
from tts_worker import fonts, video
from tts_worker.handler import make_handler

FAST = {"nfe_steps": 4, "seed": 3}
TEXT = "Karaoke video test, one two three."


@pytest.fixture(scope="module")
def handler(worker):
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed")
    if not fonts.resolve(fonts.DEFAULT_FONT).exact:
        pytest.skip("DejaVu Sans is not installed (make system-deps)")
    return make_handler(worker)


def run(handler, job_input):
    return asyncio.run(rp_job.run_job(handler, {"id": f"test-{uuid.uuid4().hex[:8]}", "input": job_input}))


def ok(handler, job_input):
    result = run(handler, job_input)
    assert "error" not in result, result
    return result["output"]


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def frame_at(path: Path, t: float, size: tuple[int, int]) -> np.ndarray:
    """The first frame at or after `t` seconds."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{t:.3f}", "-i", str(path), "-frames:v", "1"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3)


def stored_files(worker) -> set[str]:
    root = Path(worker.settings.storage_dir)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def synthesized(handler, worker, tmp_path_factory):
    """One synthesize job with a vertical video: its result and the MP4 on disk."""
    out = ok(
        handler,
        {
            "text": TEXT,
            **FAST,
            "subtitles": {"formats": ["ass"], "highlight_colour": "#FF0000", "primary_colour": "#FFFFFF"},
            "video": {"resolution": "vertical", "background": "#203040"},
        },
    )
    path = tmp_path_factory.mktemp("video") / "v.mp4"
    path.write_bytes(worker.storage.get(out["video"]["key"]))
    return out, path


def test_synthesize_stores_an_h264_aac_mp4_as_long_as_the_audio(synthesized):
    out, path = synthesized
    assert out["video_url"] == out["video"]["url"] and out["video"]["content_type"] == "video/mp4"
    assert out["video"]["key"] == out["audio"]["key"].rsplit(".", 1)[0] + ".mp4"
    assert out["video"]["size"] == path.stat().st_size and "video" in out["processing_stages"]
    info = probe(path)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert sorted(streams) == ["audio", "video"] and len(info["streams"]) == 2
    v, a = streams["video"], streams["audio"]
    assert (v["codec_name"], v["width"], v["height"], v["pix_fmt"]) == ("h264", 1080, 1920, "yuv420p")
    assert a["codec_name"] == "aac"
    frame = 1 / 30
    for seconds in (float(v["duration"]), float(a["duration"]), float(info["format"]["duration"])):
        assert abs(seconds - out["duration"]) <= frame, (seconds, out["duration"])
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "not +faststart: the index follows the media"


def test_a_frame_at_a_word_shows_it_highlighted(synthesized):
    out, path = synthesized
    words = out["word_timings"]
    longest = max(words, key=lambda w: w["end"] - w["start"])
    mid = (longest["start"] + longest["end"]) / 2
    frame = frame_at(path, mid, (1080, 1920))
    assert colour_mask(frame, (255, 0, 0), 120).sum() > 200, f"no highlight at {mid:.2f} s ({longest['word']!r})"
    assert colour_mask(frame[:100, :100], (0x20, 0x30, 0x40), 30).all(), "background colour not kept"
    # The highlight follows the voice: by the last word's end more of the text is red than mid-first-word.
    first = frame_at(path, (words[0]["start"] + words[0]["end"]) / 2, (1080, 1920))
    last = frame_at(path, max(words[-1]["start"], words[-1]["end"] - 0.05), (1080, 1920))  # a frame before the end
    assert colour_mask(last, (255, 0, 0), 120).sum() > colour_mask(first, (255, 0, 0), 120).sum()
    # Before any word, nothing is highlighted (when the first word leaves room before it).
    if words[0]["start"] >= 0.1:
        early = frame_at(path, words[0]["start"] / 2, (1080, 1920))
        assert colour_mask(early, (255, 0, 0), 120).sum() == 0


def test_align_renders_over_a_background_image_cropped_to_the_frame(handler, worker, synthesized, tmp_path):
    out, _ = synthesized
    # Left half green, right half blue, 4:3: a square frame covers it and crops the sides.
    image = Image.new("RGB", (400, 300), (0, 200, 0))
    image.paste((0, 0, 230), (200, 0, 400, 300))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    background = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    aligned = ok(
        handler,
        {"operation": "align", "text": TEXT, "audio_key": out["audio"]["key"], "word_timings": False,
         "video": {"resolution": "square", "background": background}},
    )  # fmt: skip
    # A video needs the timings: asked for it alone, the job aligns anyway (and returns them, as with subtitles).
    assert "subtitles" not in aligned and aligned["word_timings"] and "alignment" in aligned["processing_stages"]
    path = tmp_path / "a.mp4"
    path.write_bytes(worker.storage.get(aligned["video"]["key"]))
    v = next(s for s in probe(path)["streams"] if s["codec_type"] == "video")
    assert (v["width"], v["height"]) == (1080, 1080)
    frame = frame_at(path, 0.05, (1080, 1080))
    assert (
        colour_mask(frame[:200, :200], (0, 200, 0), 40).all() and colour_mask(frame[:200, -200:], (0, 0, 230), 40).all()
    )
    assert not colour_mask(frame[:, :40], (0, 0, 230), 40).any(), "the image was squeezed, not cropped"


def _bomb_png(width: int, height: int) -> str:
    """A PNG header claiming width x height, with no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return "data:image/png;base64," + base64.b64encode(data + chunk(b"IEND", b"")).decode()


@pytest.mark.parametrize(
    ("background", "message"),
    [
        ("data:image/png;base64," + base64.b64encode(b"not an image at all").decode(), "not a PNG, JPEG or WebP"),
        (_bomb_png(10_000, 10_000), "the image is 10000x10000 pixels; the limit is 50 megapixels"),
        (_bomb_png(20_000, 20_000), "the image is far too large; the limit is 50 megapixels"),  # Pillow's own bomb
        ("ftp://example.com/a.png", "ftp: URLs are not accepted"),
    ],
)
def test_a_bad_background_fails_the_job_and_leaves_no_files(handler, worker, background, message):
    before = stored_files(worker)
    result = run(
        handler, {"text": TEXT, **FAST, "subtitles": {"formats": ["srt"]}, "video": {"background": background}}
    )
    assert result["error"].startswith("invalid_input: video.background: ") and message in result["error"], result
    assert stored_files(worker) == before


@pytest.mark.parametrize(
    ("limit", "value", "message"),
    [
        ("TIMEOUT_BASE", 0.2, "render_error: video: rendering took longer than 1 s and was stopped"),
        ("MEMORY_LIMIT", 400 * 2**20, "render_error: video: rendering ran out of its 400 MiB memory limit"),
    ],
)
def test_a_render_over_its_limits_is_a_render_error_and_rolls_back(handler, worker, monkeypatch, limit, value, message):
    monkeypatch.setattr(video, "TIMEOUT_PER_SECOND", 0.0)
    monkeypatch.setattr(video, limit, value)
    before = stored_files(worker)
    result = run(handler, {"text": TEXT, **FAST, "subtitles": {"formats": ["ass"]}, "video": {}})
    assert result.get("error") == message, result
    assert stored_files(worker) == before, "the audio and subtitles of the failed job were left in storage"
    monkeypatch.undo()
    assert "error" not in run(handler, {"text": "Still serving.", **FAST}), "the worker stopped serving"


@pytest.mark.parametrize(
    ("video_field", "message"),
    [
        ({"resolution": "portrait"}, "video.resolution: should be 'vertical', 'landscape' or 'square'"),
        ({"background": "#12345"}, "video.background: should be a colour written as #RRGGBB"),
        ({"format": "webm"}, "video.format: should be 'mp4'"),
        ({"fps": 60}, "video.fps: unknown field"),
    ],
)
def test_bad_video_fields_are_named(handler, video_field, message):
    result = run(handler, {"text": TEXT, "video": video_field})
    assert result["error"].startswith("invalid_input: ") and message in result["error"], result


def test_subtitle_style_must_fit_the_video_resolution(handler):
    job = {"text": TEXT, "subtitles": {"resolution": "vertical", "margin_v": 1500}, "video": {"resolution": "square"}}
    result = run(handler, job)
    assert result["error"].startswith("invalid_input: video.resolution: at square, subtitles.margin_v"), result
