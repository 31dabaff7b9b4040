"""Refusing a hostile input costs the worker less than 50 MB of resident memory: neither its peak while
refusing nor what stays after.

The bombs (tests/bombs.py) are served by a loopback http server that ignores `Accept-Encoding`, and fetched
by a separate process, as a worker would fetch `voice_url`: the child builds a production `Fetcher` (with
loopback let through) and warms up on a small valid clip of each container, so lazily loaded codecs don't
count (never on a bomb, whose own first allocations must count). Then it refuses each bomb three times.
Before each refusal it resets the kernel's high-water mark of its resident set (/proc/self/clear_refs), so
the peak it reports is that refusal's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bombs import flac_with_total, gzip_bomb, serving, silence, wav_header

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[1]
BAR_KB = 50 * 1000
ROUNDS = 3
LIMIT = "the limit is 300 s"  # MAX_AUDIO_SECONDS by default
CONTAINERS = [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")]

CHILD = r"""
import gc, json, re, sys
from tts_worker.errors import WorkerError
from tts_worker.fetch import Fetcher
from tts_worker.settings import Settings

base, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
fetcher = Fetcher(Settings(fetch_allow_http=True), allow_addresses=["127.0.0.1/32"])

def kb(key):
    with open("/proc/self/status") as status:
        return int(re.search(key + r":\s+(\d+) kB", status.read()).group(1))

def refuse(name):
    try:
        fetcher.fetch_audio(base + "/" + name, field="voice_url")
    except WorkerError as exc:
        return exc.code + ": " + exc.message
    return "accepted"

warm = {name: refuse(name) for name in names if name.startswith("fine-")}  # loads the codecs, opens the path
gc.collect()
start = kb("VmRSS")
messages, peaks = {}, {}
for _ in range(rounds):
    for name in names:
        before = kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM := VmRSS
        message = refuse(name)
        assert messages.setdefault(name, message) == message
        peaks[name] = max(peaks.get(name, 0), kb("VmHWM") - before)
gc.collect()
print(json.dumps({"warm": warm, "messages": messages, "peak_kb": peaks, "growth_kb": kb("VmRSS") - start}))
"""


def bombs() -> dict[str, tuple[bytes, dict[str, str], str]]:
    """name -> (body, headers, the refusal it must get)."""
    gzip = {"Content-Type": "audio/wav", "Content-Encoding": "gzip"}
    compressed = "invalid_input: voice_url: 127.0.0.1 sent a compressed answer"
    hour = silence("FLAC", "PCM_16", 8000, 3600)  # 89 kB
    wav_frames = 0xFFFFFFFE  # 2^31 - 1 frames of 16-bit mono, in a file of a few bytes
    return {
        # 500 MB of zeros: 0.5 MB of gzip, under 1 kB as gzip of gzip.
        "gzip": (gzip_bomb(500 << 20), gzip, f"{compressed} (Content-Encoding: gzip)"),
        "gzip-gzip": (gzip_bomb(500 << 20, 2), gzip | {"Content-Encoding": "gzip, gzip"}, compressed),
        # Small compressed files that decode to far more than the limit, honest about it in their headers.
        "flac-hour": (hour, {}, f"invalid_audio: voice_url: the audio is 3600.0 s long; {LIMIT}"),
        "ogg-400s": (silence("OGG", "VORBIS", 8000, 400), {}, "invalid_audio: voice_url: the audio is 400.0 s long"),
        "mp3-400s": (silence("MP3", "MPEG_LAYER_III", 8000, 400), {}, "invalid_audio: voice_url: the audio is 400.0"),
        # Lengths unsaid (total 0): counted up to the limit, never held (300 s at 48 kHz would be 58 MB).
        "flac-unsaid": (flac_with_total(hour, 0), {}, "invalid_audio: voice_url: the audio is longer than the 300 s"),
        "flac-unsaid-48k": (
            flac_with_total(silence("FLAC", "PCM_16", 48000, 400), 0),
            {},
            "invalid_audio: voice_url: the audio is longer than the 300 s limit",
        ),
        # One second of audio claiming 2^36 - 1 samples.
        "flac-claims": (
            flac_with_total(silence("FLAC", "PCM_16", 8000, 1), (1 << 36) - 1),
            {},
            "invalid_audio: voice_url: the audio is 8589934.6 s long",
        ),
        "wav-frames": (
            wav_header(rate=8000, channels=1, data_bytes=wav_frames) + bytes(4000),
            {},
            "invalid_audio: voice_url: the audio is 0.25 s long; at least 1 s is needed",  # what is really there
        ),
        "wav-channels": (
            wav_header(rate=8000, channels=1000, bits=32, float_samples=True, data_bytes=0xFFFFFFF0) + bytes(64000),
            {},
            "invalid_audio: voice_url: the file has 1000 channels; at most 8 are accepted",
        ),
        "wav-rate": (
            wav_header(rate=2**31 - 1, channels=1, data_bytes=0xFFFFFFFE) + bytes(4000),
            {},
            "invalid_audio: voice_url: the sample rate is 2147483647 Hz",
        ),
    }


def test_refusing_bombs_keeps_resident_memory_bounded():
    crafted = bombs()
    assert len(crafted["gzip-gzip"][0]) < 2000 and len(crafted["flac-hour"][0]) < 100_000
    fine = {f"fine-{fmt}": (silence(fmt, subtype, 8000, 2), {}) for fmt, subtype in CONTAINERS}
    routes = {f"/{name}": (body, headers) for name, (body, headers, _) in crafted.items()}
    routes |= {f"/{name}": route for name, route in fine.items()}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    with serving(routes) as base:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, base, str(ROUNDS), *fine, *crafted],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["warm"] == dict.fromkeys(fine, "accepted")
    for name, (_, _, refusal) in crafted.items():
        assert report["messages"][name].startswith(refusal), (name, report["messages"][name])
    peaks = {name: peak for name, peak in report["peak_kb"].items() if name in crafted}
    assert max(peaks.values()) < BAR_KB, peaks
    assert report["growth_kb"] < BAR_KB, report
    print(f"peak per refusal (kB): {peaks}; growth after {ROUNDS} rounds: {report['growth_kb']} kB")


def test_the_bombs_are_what_they_claim():
    """The test above can fail: each bomb really is one (it inflates, or decodes, to far past the limit)."""
    import gzip
    import io
    import zlib

    import soundfile as sf

    crafted = bombs()
    inflated = zlib.decompressobj(16 + zlib.MAX_WBITS)
    first = inflated.decompress(gzip.decompress(crafted["gzip-gzip"][0]), 1 << 20)
    assert len(first) == 1 << 20 and not any(first)  # and 499 MiB more behind it
    for name, seconds in [("flac-hour", 3600), ("ogg-400s", 400), ("mp3-400s", 400)]:
        info = sf.info(io.BytesIO(crafted[name][0]))
        assert info.frames / info.samplerate >= seconds - 1, name
    with sf.SoundFile(io.BytesIO(crafted["flac-unsaid"][0])) as f:
        assert f.frames == 2**63 - 1  # libsndfile doesn't know; sf.read would try to allocate that
    with sf.SoundFile(io.BytesIO(crafted["flac-claims"][0])) as f:
        assert f.frames == (1 << 36) - 1
    with sf.SoundFile(io.BytesIO(crafted["wav-channels"][0])) as f:
        assert f.channels == 1000
    assert np.frombuffer(crafted["wav-frames"][0][40:44], "<u4")[0] == 0xFFFFFFFE
