"""Audio helpers: codecs round-trip at the right rate and length; joins and pause trimming keep what they claim;
decoding refuses what it must (other containers, absurd headers, too long) and scales what it may."""

import base64
import io
import itertools

import numpy as np
import pytest
import soundfile as sf

from bombs import flac_with_total, silence, wav_header
from tts_worker import audio
from tts_worker.errors import InvalidAudio
from tts_worker.handler import make_handler

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


# -- decoding hostile and unusual files ---------------------------------------------------------------


def encoded(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def refused(data: bytes, match: str, **kw) -> str:
    with pytest.raises(InvalidAudio, match=match) as caught:
        audio.decode(data, field="voice_file", **kw)
    assert caught.value.message.startswith("voice_file: ")
    return caught.value.message


@pytest.mark.parametrize("fmt", ["AIFF", "CAF", "W64", "RF64", "AU", "IRCAM", "NIST", "VOC"])
def test_only_the_documented_containers_are_accepted(fmt):
    message = refused(encoded(tone(1.0), RATE, fmt, "PCM_16"), f"^voice_file: {fmt} files are not accepted")
    assert message.endswith("; send WAV, FLAC, OGG or MP3")


@pytest.mark.parametrize(("fmt", "subtype"), [("WAVEX", "PCM_24"), ("OGG", "OPUS"), ("WAV", "ULAW")])
def test_variants_of_the_documented_containers_are_accepted(fmt, subtype):
    samples, rate = audio.decode(encoded(tone(1.0), RATE, fmt, subtype), field="x")
    assert abs(len(samples) / rate - 1.0) < 0.03 and 0.2 < np.abs(samples).max() < 0.4


@pytest.mark.parametrize(
    ("fmt", "subtype", "seconds"), [("FLAC", "PCM_16", 3600), ("OGG", "VORBIS", 400), ("MP3", "MPEG_LAYER_III", 400)]
)
def test_a_long_file_is_refused_from_its_header(fmt, subtype, seconds):
    """Small compressed files that decode to minutes: refused by what they declare, before decoding."""
    data = silence(fmt, subtype, 8000, seconds)
    assert len(data) < 500_000
    refused(data, rf"^voice_file: the audio is {seconds}.0 s long; the limit is 300 s$", max_seconds=300)
    assert len(audio.decode(data, field="x", max_seconds=seconds + 1)[0]) == pytest.approx(seconds * 8000, abs=2000)


def test_a_header_claiming_billions_of_samples_is_refused():
    claims = flac_with_total(silence("FLAC", "PCM_16", 8000, 1), (1 << 36) - 1)
    refused(claims, r"^voice_file: the audio is 8589934.6 s long; the limit is 300 s$", max_seconds=300)
    # The default limit (no max_seconds) is the largest MAX_AUDIO_SECONDS allows: still refused, no MemoryError.
    refused(claims, r"the limit is 3600 s$")


def test_a_length_the_header_does_not_say_is_counted_and_capped():
    """FLAC streams may leave the total at 0 (libsndfile then reports 2^63 - 1 frames): decoded in full when
    short enough, refused past the limit, never allocated from the header."""
    speech = silence("FLAC", "PCM_16", 8000, 20)
    noisy = encoded(np.sin(np.arange(20 * 8000) / 3.0).astype(np.float32) * 0.5, 8000, "FLAC", "PCM_16")
    for data in (speech, noisy):
        unsaid = flac_with_total(data, 0)
        assert sf.info(io.BytesIO(unsaid)).frames == 2**63 - 1
        got, rate = audio.decode(unsaid, field="x", max_seconds=30)
        want, _ = audio.decode(data, field="x", max_seconds=30)
        assert rate == 8000 and np.array_equal(got, want) and len(got) == 20 * 8000
    refused(flac_with_total(speech, 0), r"^voice_file: the audio is longer than the 10 s limit$", max_seconds=10)


def test_a_header_claiming_less_than_the_file_holds_is_read_as_far_as_it_claims():
    lying = flac_with_total(silence("FLAC", "PCM_16", 8000, 400), 8000)  # 400 s, declared as 1 s
    samples, rate = audio.decode(lying, field="x", max_seconds=300)
    assert rate == 8000 and len(samples) == 8000


def test_a_wav_header_claiming_more_than_the_file_holds_decodes_what_is_there():
    data = (0.5 * np.sin(np.arange(2000) / 5.0) * 32767).astype("<i2").tobytes()
    lying = wav_header(rate=8000, channels=1, data_bytes=0xFFFFFFFE) + data  # 2^31 - 1 frames claimed
    samples, rate = audio.decode(lying, field="x")
    assert rate == 8000 and len(samples) == 2000 and np.abs(samples).max() == pytest.approx(0.5, abs=1e-3)


def test_channel_counts_are_bounded():
    many = wav_header(rate=8000, channels=1000, bits=32, float_samples=True, data_bytes=0xFFFFFFF0) + bytes(40_000)
    refused(many, r"^voice_file: the file has 1000 channels; at most 8 are accepted$")
    refused(encoded(np.zeros((RATE, 9), np.float32), RATE), "the file has 9 channels")
    eight = np.stack([tone(1.0)] * 4 + [-tone(1.0)] * 3 + [tone(1.0)], axis=1)
    mono, _ = audio.decode(encoded(eight, RATE), field="x")
    assert np.allclose(mono, tone(1.0) / 4, atol=1e-6)  # the mean of the channels


@pytest.mark.parametrize("rate", [2**31 - 1, 1_000_000, 3999, 1])
def test_absurd_sample_rates_are_refused(rate):
    header = wav_header(rate=rate, channels=1, data_bytes=16000) + bytes(16000)
    refused(header, rf"^voice_file: the sample rate is {rate} Hz; 4000 to 384000 Hz is accepted$")


def test_high_rates_are_resampled_while_decoding():
    rate = 192_000
    t = np.arange(3 * rate) / rate
    samples, out_rate = audio.decode(encoded((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), rate), field="x")
    assert out_rate == 48_000 and abs(len(samples) - 3 * 48_000) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * out_rate / len(samples) == pytest.approx(1000, abs=2)
    assert audio.decode(encoded(tone(1.0), 4000), field="x")[1] == 4000  # the lowest rate accepted


@pytest.mark.parametrize("amplitude", [1.5, 1e6, 1e30, 3e38])
def test_float_audio_beyond_full_scale_is_scaled_to_peak_one(amplitude):
    """The waveform is kept, at full scale: not clipped into a square wave, not overflowed into inf."""
    clip = tone(2.0, amp=1.0)
    for channels in (1, 2):
        data = encoded(np.stack([clip * np.float32(amplitude)] * channels, axis=1), RATE)
        samples, _ = audio.decode(data, field="x")
        assert np.isfinite(samples).all() and np.abs(samples).max() == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(samples, clip / np.abs(clip).max(), atol=1e-5)


def test_audio_within_full_scale_keeps_its_level():
    for subtype in ("PCM_16", "FLOAT"):
        samples, _ = audio.decode(encoded(tone(1.0, amp=0.3), RATE, "WAV", subtype), field="x")
        assert np.abs(samples).max() == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_samples_are_refused(bad):
    clip = tone(1.0)
    clip[RATE // 2] = bad
    refused(encoded(clip, RATE), r"^voice_file: the audio contains invalid \(NaN or infinite\) samples$")


def test_a_reference_far_beyond_full_scale_gives_the_audio_of_the_same_clip_at_full_scale(worker):
    """Through a job: a float reference at 1e30 (or near float32's maximum, which once came out as full-scale
    noise) synthesises what the same clip at peak 1.0 does: finite, not saturated."""
    handler = make_handler(worker)
    clip = tone(3.0, freq=220.0, amp=1.0)
    clip /= np.abs(clip).max()

    def spoken(amplitude: float) -> np.ndarray:
        reference = base64.b64encode(encoded(clip * np.float32(amplitude), RATE)).decode()
        job = {"text": "Hello there, how are you?", "voice_base64": reference, "ref_text": "Some words here.",
               "nfe_steps": 4, "seed": 5, "word_timings": False}  # fmt: skip
        result = handler({"id": "loud-ref", "input": job})
        assert "error" not in result, result
        samples, rate = sf.read(io.BytesIO(worker.storage.get(result["audio"]["key"])), dtype="float32")
        assert rate == RATE and len(samples) > RATE // 2
        return samples

    full_scale = spoken(1.0)
    for amplitude in (1e30, 1.5e38):
        loud = spoken(amplitude)
        assert np.isfinite(loud).all() and np.mean(np.abs(loud) >= 0.999) < 0.01
        assert np.abs(loud - full_scale).max() < 0.01  # (the scaled reference differs in its last float bits)


def test_an_upload_far_beyond_full_scale_is_stored_as_its_waveform_not_clipped(worker):
    handler = make_handler(worker)
    clip = tone(2.0, freq=220.0, amp=1.0)
    loud = base64.b64encode(encoded(clip * np.float32(1e30), RATE)).decode()
    job = {"operation": "upload_voice", "voice_name": "loud-upload", "voice_base64": loud, "ref_text": "Loud words."}
    result = handler({"id": "loud-upload", "input": job})
    assert "error" not in result, result
    stored, _ = sf.read(io.BytesIO(worker.storage.get("voices/loud-upload.wav")), dtype="float32")
    assert np.mean(np.abs(stored) >= 0.999) < 0.05  # a sine at full scale, not a square wave
    assert np.corrcoef(stored[: len(clip)], clip[: len(stored)])[0, 1] > 0.99
    handler({"id": "cleanup", "input": {"operation": "delete_voice", "voice_name": "loud-upload"}})
