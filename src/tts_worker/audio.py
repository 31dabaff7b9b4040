"""Audio in and out: decode uploaded/stored audio, resample, join chunks, trim
long pauses and long clips, encode the result. numpy in, numpy out; no torch here.

`AudioFormat` is the one list of output formats: the job schema's `output_format`
is this type, and `FORMATS` maps each to how it is encoded.

`decode` is the one entry for audio from outside (fetched, uploaded, stored) and
its memory is bounded by its `max_seconds`, whatever the file declares:

- Only the documented containers are opened: WAV (also WAVE_FORMAT_EXTENSIBLE),
  FLAC, OGG (Vorbis, Opus) and MP3. libsndfile reads many more (AIFF, CAF, W64,
  RF64, AU, ...); they are refused by the container libsndfile detects.
- The header is checked before any sample is decoded: 1 to `MAX_CHANNELS`
  channels, a rate of `MIN_SAMPLE_RATE` to `MAX_SAMPLE_RATE` Hz, and a declared
  length of at most `max_seconds`.
- Samples are decoded block by block (a fixed number of samples, whatever the
  channel count) and decoding stops as soon as more than `max_seconds` has come
  out, so a header that lies still stops at the cap. A file that doesn't say its
  length (a FLAC stream without a total) is counted first, keeping nothing, and
  decoded only when it is within the cap: refusing it holds one block. Audio above
  `MAX_DECODED_RATE` is resampled to it while decoding, so the result holds at
  most `max_seconds * MAX_DECODED_RATE` samples.
- NaN or infinite samples are refused. Float audio beyond full scale (a peak
  over 1.0, up to 1e30 and more in a hostile file) is scaled down to peak 1.0:
  the waveform is kept, and nothing downstream clips it into full-scale noise.

Every refusal is an `InvalidAudio` whose message starts with the field's name
and quotes nothing from the file but numbers and libsndfile's container name.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
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


# Containers as libsndfile names them, and what the user is told they are.
ACCEPTED_CONTAINERS = {"WAV": "WAV", "WAVEX": "WAV", "FLAC": "FLAC", "OGG": "OGG", "MP3": "MP3"}
ACCEPTED_NAMES = "WAV, FLAC, OGG or MP3"
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 8  # 7.1 surround; a voice clip is mono or stereo
MAX_DECODED_RATE = 48_000  # higher rates are resampled while decoding: the output's size doesn't grow with them
MAX_SECONDS = 3600.0  # the default cap: the largest MAX_AUDIO_SECONDS allows; callers pass their own limit
BLOCK_SAMPLES = 1 << 16  # per read, across all channels: 256 KiB of float32
_UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's SF_COUNT_MAX: a stream that doesn't declare its length


class _Reader(sf.SoundFile):
    """A SoundFile read front to back only. soundfile re-seeks to where it already is after every read;
    libsndfile's FLAC reader fails that seek at the end of a stream that doesn't declare its length, so
    such a file could never be read to its end. Declaring the file unseekable skips the seek."""

    def seekable(self) -> bool:
        return False


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 1e7 else f"{value:.3g}"


def decode(data: bytes, *, field: str, max_seconds: float = MAX_SECONDS, hint: str = "") -> tuple[np.ndarray, int]:
    """Mono float32 samples (peak at most 1.0) and their rate (at most `MAX_DECODED_RATE`) of an encoded
    file lasting at most `max_seconds`, or `InvalidAudio` naming `field` (`hint` ends the message of a file
    that is too long: what to do instead). See the module docstring."""
    try:
        return _decode(data, field, max_seconds)
    except InvalidAudio as exc:
        if hint and "limit" in exc.message:
            raise InvalidAudio(f"{exc.message}; {hint}") from None
        raise


def _decode(data: bytes, field: str, max_seconds: float) -> tuple[np.ndarray, int]:
    try:
        with _Reader(io.BytesIO(data)) as f:
            _check_header(f, field, max_seconds)
            frames = f.frames
            if frames != _UNKNOWN_FRAMES:
                return _read_mono(f, field, max_seconds, frames)
            # A length the header doesn't say: counted first, keeping nothing, so a long one is refused
            # without ever holding its samples; then decoded again from the start.
            frames = sum(len(block) for block in _blocks(f, field, max_seconds))
        with _Reader(io.BytesIO(data)) as f:
            return _read_mono(f, field, max_seconds, frames)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise InvalidAudio(f"{field}: not a decodable audio file ({ACCEPTED_NAMES})") from exc


def _check_header(f: _Reader, field: str, max_seconds: float) -> None:
    if f.format not in ACCEPTED_CONTAINERS:
        raise InvalidAudio(f"{field}: {f.format} files are not accepted; send {ACCEPTED_NAMES}")
    if not 1 <= f.channels <= MAX_CHANNELS:
        raise InvalidAudio(f"{field}: the file has {f.channels} channels; at most {MAX_CHANNELS} are accepted")
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        raise InvalidAudio(
            f"{field}: the sample rate is {f.samplerate} Hz; {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz is accepted"
        )
    if f.frames != _UNKNOWN_FRAMES and f.frames / f.samplerate > max_seconds:
        declared = _seconds(f.frames / f.samplerate)
        raise InvalidAudio(f"{field}: the audio is {declared} s long; the limit is {max_seconds:g} s")


def _blocks(f: _Reader, field: str, max_seconds: float) -> Iterator[np.ndarray]:
    """The file's frames, one reused block at a time (`BLOCK_SAMPLES` across all channels); refused as soon
    as more than `max_seconds` has come out, whatever the header said."""
    limit = int(max_seconds * f.samplerate)
    block = np.empty((max(1, BLOCK_SAMPLES // f.channels), f.channels), dtype=np.float32)
    frames = 0
    while len(got := f.read(out=block)):
        frames += len(got)
        if frames > limit:
            raise InvalidAudio(f"{field}: the audio is longer than the {max_seconds:g} s limit")
        yield got


def _read_mono(f: _Reader, field: str, max_seconds: float, expected: int) -> tuple[np.ndarray, int]:
    """Decode into one buffer sized for `expected` frames (grown in place if the file holds more)."""
    rate = f.samplerate
    out_rate = min(rate, MAX_DECODED_RATE)
    resampler = soxr.ResampleStream(rate, out_rate, 1, dtype="float32") if out_rate != rate else None
    ceiling = int(max_seconds * rate) * out_rate // rate + 64  # output samples; slack for the resampler's rounding
    out = np.empty(min(ceiling, expected * out_rate // rate + 64), dtype=np.float32)
    pos = 0
    peak = 0.0
    for got in _blocks(f, field, max_seconds):
        mono = got[:, 0] if f.channels == 1 else got.mean(axis=1, dtype=np.float64).astype(np.float32)
        if not np.isfinite(mono).all():
            raise InvalidAudio(f"{field}: the audio contains invalid (NaN or infinite) samples")
        peak = max(peak, float(np.abs(mono).max()))
        pos = _append(out, pos, resampler.resample_chunk(mono) if resampler else mono, ceiling, field)
    if resampler is not None:
        pos = _append(out, pos, resampler.resample_chunk(np.empty(0, np.float32), last=True), ceiling, field)
    if pos == 0:
        raise InvalidAudio(f"{field}: the audio has no samples")
    out.resize(pos, refcheck=False)  # realloc: a large buffer shrinks in place, without a copy
    if peak > 1.0:
        out /= np.float32(peak)  # (not *= 1/peak: for peaks near float32's maximum, 1/peak is subnormal)
    return out, out_rate


def _append(out: np.ndarray, pos: int, chunk: np.ndarray, ceiling: int, field: str) -> int:
    """Copy `chunk` into `out` at `pos`, growing `out` in place (doubling, at most to `ceiling`)."""
    end = pos + len(chunk)
    if end > ceiling:  # only the resampler's rounding could get here: the input frames are capped already
        raise InvalidAudio(f"{field}: the audio is longer than the limit")
    if end > len(out):
        out.resize(min(ceiling, max(end, 2 * len(out))), refcheck=False)
    out[pos:end] = chunk
    return end


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
