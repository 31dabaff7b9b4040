"""Audio helpers: codecs round-trip at the right rate and length; joins and pause trimming keep what they claim."""

import io
import itertools

import numpy as np
import pytest
import soundfile as sf

from tts_worker import audio
from tts_worker.errors import InvalidAudio

RATE = 24_000


def tone(seconds, freq=440.0, amp=0.3):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", sorted(audio.FORMATS))
def test_encode_decode_round_trip(fmt):
    data = audio.encode(tone(1.5), RATE, fmt)
    info = sf.info(io.BytesIO(data))
    assert info.format == audio.FORMATS[fmt].container
    decoded, rate = audio.decode(data, field="x")
    assert rate == RATE
    assert abs(len(decoded) / RATE - 1.5) < 0.06  # mp3 frames pad a little


def test_decode_refuses_garbage_naming_the_field():
    with pytest.raises(InvalidAudio, match="^voice: not a decodable audio file"):
        audio.decode(b"this is not audio at all" * 10, field="voice")


def test_decode_downmixes_stereo():
    stereo = np.stack([tone(1.0), -tone(1.0)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, RATE, format="WAV", subtype="FLOAT")
    mono, _ = audio.decode(buf.getvalue(), field="x")
    assert mono.shape == (RATE,) and np.abs(mono).max() < 1e-6


def test_resample_changes_length_by_rate_ratio():
    out = audio.resample(tone(1.0), RATE, 16_000)
    assert len(out) == 16_000


def test_crossfade_ranges_tile_the_output():
    waves = [tone(1.0), tone(0.5, 220), tone(2.0, 330)]
    fade = int(0.15 * RATE)
    joined, ranges = audio.crossfade_join(waves, fade)
    assert len(joined) == sum(len(w) for w in waves) - 2 * fade
    assert ranges[0][0] == 0 and ranges[-1][1] == len(joined)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    # Each chunk's range lies where its own audio is (boundary at the middle of the fade).
    first_end = RATE - fade + fade // 2
    second_end = (RATE + RATE // 2 - fade) - fade + fade // 2
    assert ranges[:2] == [(0, first_end), (first_end, second_end)]


def test_crossfade_single_chunk_is_untouched():
    w = tone(0.3)
    joined, ranges = audio.crossfade_join([w], 100)
    assert np.array_equal(joined, w) and ranges == [(0, len(w))]


def test_shorten_pauses_cuts_long_silences_only():
    speech, gap_long, gap_short = tone(0.5), np.zeros(3 * RATE, np.float32), np.zeros(RATE // 2, np.float32)
    wave = np.concatenate([speech, gap_long, speech, gap_short, speech])
    out = audio.shorten_pauses(wave, RATE)
    # The 3 s pause becomes 0.5 s; the 0.5 s pause is kept.
    assert abs(len(out) / RATE - (1.5 + 0.5 + 0.5)) < 0.03
