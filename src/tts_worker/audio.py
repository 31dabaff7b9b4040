"""Audio in and out: decode uploaded/stored audio, resample, join chunks, trim
long pauses and long clips, encode the result. numpy in, numpy out; no torch here.

`AudioFormat` is the one list of output formats: the job schema's `output_format`
is this type, and `FORMATS` maps each to how it is encoded.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import soundfile as sf
import soxr

from tts_worker.errors import InvalidAudio


@dataclass(frozen=True)
class Encoding:
    container: str
    subtype: str
    content_type: str


AudioFormat = Literal["wav", "mp3", "flac", "ogg"]

FORMATS: dict[AudioFormat, Encoding] = {
    "wav": Encoding("WAV", "PCM_16", "audio/wav"),
    "flac": Encoding("FLAC", "PCM_16", "audio/flac"),
    "ogg": Encoding("OGG", "VORBIS", "audio/ogg"),
    "mp3": Encoding("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}
assert set(FORMATS) == set(get_args(AudioFormat))


def decode(data: bytes, *, field: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of an encoded file, or `InvalidAudio` naming `field`."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidAudio(f"{field}: not a decodable audio file (WAV, FLAC, OGG or MP3)") from exc
    if samples.size == 0:
        raise InvalidAudio(f"{field}: the audio has no samples")
    mono = samples.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise InvalidAudio(f"{field}: the audio contains invalid (NaN or infinite) samples")
    return mono, int(rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target).astype(np.float32, copy=False)


def crossfade_overlap(prev: int, nxt: int, fade: int) -> int:
    """Samples two chunks of these lengths overlap by in `crossfade_join`."""
    return max(0, min(fade, prev // 2, nxt // 2))


def crossfade_join(waves: list[np.ndarray], fade: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Join chunks with a linear cross-fade of up to `fade` samples.

    Returns the joined wave and, per chunk, the [start, end) sample range it owns
    in it. Ranges tile the output exactly; a boundary sits at the middle of its
    cross-fade.
    """
    if not waves:
        raise ValueError("no audio to join")
    out = waves[0].astype(np.float32, copy=True)
    bounds = [0]
    for prev, wave in itertools.pairwise(waves):
        n = crossfade_overlap(len(prev), len(wave), fade)
        if n <= 0:
            bounds.append(len(out))
            out = np.concatenate([out, wave])
            continue
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        mixed = out[-n:] * (1.0 - ramp) + wave[:n] * ramp
        bounds.append(len(out) - n + n // 2)
        out = np.concatenate([out[:-n], mixed, wave[n:]])
    bounds.append(len(out))
    return out, list(itertools.pairwise(bounds))


def shorten_pauses(
    wave: np.ndarray, rate: int, *, threshold_db: float = -50.0, min_pause: float = 1.0, keep: float = 0.5
) -> np.ndarray:
    """Cut every silence longer than `min_pause` seconds down to `keep` seconds (half on each side),
    as f5_tts's `remove_silence_for_generated_wav` does, without a round trip through a file."""
    frame = max(1, rate // 100)  # 10 ms
    n_frames = len(wave) // frame
    if n_frames == 0:
        return wave
    frames = wave[: n_frames * frame].reshape(n_frames, frame)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    silent = 20.0 * np.log10(np.maximum(rms, 1e-10)) < threshold_db
    pieces, pos, i = [], 0, 0
    min_frames, half_keep = int(min_pause * 100), int(keep * rate / 2)
    while i < n_frames:
        if not silent[i]:
            i += 1
            continue
        j = i
        while j < n_frames and silent[j]:
            j += 1
        if j - i >= min_frames:
            start, end = i * frame, j * frame
            pieces.append(wave[pos : start + half_keep])
            pos = end - half_keep
        i = j
    pieces.append(wave[pos:])
    return np.concatenate(pieces)


def trim_at_pause(
    samples: np.ndarray,
    rate: int,
    max_seconds: float = 12.0,
    *,
    min_pause: float = 0.1,
    min_keep: float | None = None,
    threshold_db: float = 30.0,
) -> np.ndarray:
    """At most `max_seconds` of `samples`, cut inside the last pause that starts before the limit.

    A pause is at least `min_pause` s of 10 ms frames `threshold_db` below the loudest frame. The cut
    keeps up to 0.2 s of the pause. With no pause after `min_keep` s (default: a third of the limit),
    it is a hard cut at the limit with a 20 ms fade-out.
    """
    limit = int(max_seconds * rate)
    if len(samples) <= limit:
        return samples
    frame = max(1, rate // 100)
    n = limit // frame
    frames = samples[: n * frame].reshape(n, frame).astype(np.float64)
    level = 20.0 * np.log10(np.maximum(np.sqrt(np.mean(frames * frames, axis=1)), 1e-10))
    silent = level < level.max() - threshold_db
    keep_frames = int((max_seconds / 3 if min_keep is None else min_keep) * 100)
    min_frames = max(1, int(min_pause * 100))
    cut = None
    i = n - 1
    while i >= 0:
        if not silent[i]:
            i -= 1
            continue
        end = i + 1
        while i >= 0 and silent[i]:
            i -= 1
        start = i + 1
        if end - start >= min_frames and start >= keep_frames:
            cut = (start + min(20, (end - start) // 2)) * frame
            break
    if cut is not None:
        return samples[:cut]
    out = samples[:limit].copy()
    fade = min(len(out), rate // 50)
    out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return out


def encode(wave: np.ndarray, rate: int, fmt: AudioFormat) -> bytes:
    enc = FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), rate, format=enc.container, subtype=enc.subtype)
    return buf.getvalue()
