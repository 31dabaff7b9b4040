#!/usr/bin/env python3
"""One frame of each resolution preset as libass draws the worker's ASS: the PNGs docs/API.md shows.

    python docs/frames.py docs        (`make docs-frames`; needs ffmpeg and fonts-dejavu-core)

Each frame is the default style of its preset (`tts_worker.styles.PRESETS`), karaoke `k`, over a light
gradient (the hard case for white text), at the moment the fifth word is spoken, with the preset's safe
area drawn as a thin line. Written at half size (`frame-<preset>.png`) to keep the repository small.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tts_worker import fonts
from tts_worker.styles import PRESETS
from tts_worker.subtitles import SubtitleOptions, build
from tts_worker.words import WordTiming

logger = logging.getLogger("docs.frames")

TEXT = "Subtitles that look right at any size, with every word lit up as it is spoken."
STEP = 0.4  # seconds per word
PROBE_WORD = 4


def gradient(width: int, height: int) -> Image.Image:
    """Sky blue at the top to sand at the bottom."""
    top, bottom = (135, 206, 235), (245, 222, 179)
    column = Image.new("RGB", (1, height))
    for y in range(height):
        f = y / max(1, height - 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * f) for a, b in zip(top, bottom, strict=True)))
    return column.resize((width, height))


def frame(preset: str, out: Path) -> None:
    p = PRESETS[preset]
    opts = SubtitleOptions(resolution=preset)
    words = [
        WordTiming(word=w, start=n * STEP, end=n * STEP + STEP * 0.8, score=None, interpolated=False)
        for n, w in enumerate(TEXT.split())
    ]
    data, _ = build("ass", words, opts)
    t = (PROBE_WORD + 0.5) * STEP
    safe = (
        f"drawbox=x={p.safe_left}:y={p.safe_top}:w={p.width - p.safe_left - p.safe_right}:"
        f"h={p.height - p.safe_top - opts.vertical_margin}:color=white@0.6:t=2"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "subs.ass").write_bytes(data)
        gradient(p.width, p.height).save(work / "background.png")
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i", "background.png"]
        cmd += ["-vf", f"{safe},ass=subs.ass,scale={p.width // 2}:{p.height // 2}:flags=lanczos"]
        cmd += ["-ss", f"{t:.2f}", "-frames:v", "1", str(out.resolve())]
        subprocess.run(cmd, cwd=work, check=True, timeout=120)
    logger.info("wrote %s (%s, font %s %d px)", out, preset, opts.font, opts.size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not fonts.resolve(fonts.DEFAULT_FONT).exact:
        logger.error("DejaVu Sans is not installed: run make system-deps")
        return 1
    for preset in PRESETS:
        frame(preset, args.outdir / f"frame-{preset}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
