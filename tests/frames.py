"""Frames of an ASS file as libass draws them (ffmpeg's `ass` filter), and measurements on their pixels."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

FPS = 20  # probe times are rounded to 50 ms: every event and word the tests probe lasts longer


def render(
    ffmpeg: str, workdir: Path, ass: bytes, size: tuple[int, int], times: list[float], background: str = "white"
) -> list[np.ndarray]:
    """RGB frames (height x width x 3) at `times` seconds of a `background` video with `ass` burnt in."""
    width, height = size
    frames = sorted({round(t * FPS) for t in times})
    (workdir / "subs.ass").write_bytes(ass)
    select = "select=" + "+".join(f"eq(n\\,{n})" for n in frames)
    source = f"color={background}:s={width}x{height}:r={FPS}:d={frames[-1] / FPS + 0.5}"
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", source]
    cmd += ["-vf", f"{select},ass=subs.ass", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, check=False, timeout=120)
    assert result.returncode == 0 and not result.stderr, result.stderr.decode(errors="replace")
    raw = np.frombuffer(result.stdout, np.uint8).reshape(-1, height, width, 3)
    assert len(raw) == len(frames)
    by_index = dict(zip(frames, raw, strict=True))
    return [by_index[round(t * FPS)] for t in times]


def colour_mask(frame: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 60) -> np.ndarray:
    """Pixels within `tolerance` (summed over channels) of `rgb`."""
    return np.abs(frame.astype(int) - np.array(rgb)).sum(axis=2) <= tolerance


def ink(frame: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Pixels that differ from the background: text, outline and shadow."""
    return ~colour_mask(frame, background, tolerance=24)


def runs(mask: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """[first, last] index of each run of True in a 1-D mask, joining runs separated by fewer than
    `min_gap` False entries."""
    found: list[tuple[int, int]] = []
    for i in np.flatnonzero(mask):
        if found and i - found[-1][1] <= min_gap:
            found[-1] = (found[-1][0], int(i))
        else:
            found.append((int(i), int(i)))
    return found


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the True pixels, inclusive; None when there are none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])
