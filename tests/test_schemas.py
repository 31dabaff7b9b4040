"""Job input validation: every bad input names its field; aliases of the original API map to canonical names."""

import math

import pytest

from tts_worker.errors import InvalidInput, UnknownOperation
from tts_worker.parsing import parse_request
from tts_worker.schemas import Limits, SynthesizeRequest, voice_name

LIMITS = Limits(max_text_chars=100)


def parse(raw):
    return parse_request(raw, LIMITS)


def test_defaults_and_trimming():
    req = parse({"text": "  Hello there.  "})
    assert isinstance(req, SynthesizeRequest)
    assert (req.text, req.voice, req.speed, req.nfe_steps, req.output_format) == ("Hello there.", None, 1.0, 32, "wav")
    assert req.seed is None and req.remove_silence is False


def test_original_api_request_maps_to_canonical_fields():
    req = parse({"text": "Hi", "local_voice": "my-voice.wav", "speed": 1.0})
    assert req.voice == "my-voice" and req.speed == 1.0
    assert parse({"endpoint": "tts", "text": "Hi"}).operation == "synthesize"
    assert parse({"operation": "SYNTHESIZE", "text": "Hi"}).operation == "synthesize"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"text": "a", "foo": 1}, "invalid_input: foo: unknown field"),
        ({"text": 5}, "invalid_input: text: should be a valid string"),
        ({"text": "a", "speed": "fast"}, "invalid_input: speed: should be a valid number"),
        ({"text": "a", "remove_silence": "yes"}, "invalid_input: remove_silence: should be a valid boolean"),
        ({}, "invalid_input: text: is required"),
        ({"text": ""}, "invalid_input: text: must not be empty or only white space"),
        ({"text": " \n\t "}, "invalid_input: text: must not be empty or only white space"),
        ({"text": "x" * 101}, "invalid_input: text: is 101 characters long, over the limit of 100"),
        (
            {"text": "é" * 61},
            "invalid_input: text: is 122 bytes long in UTF-8, over the limit of 120 (the generated duration follows "
            "the bytes: an emoji counts 4, a Chinese character 3, an accented or Cyrillic letter 2)",
        ),
        (
            {"text": "?! \u200b…"},
            "invalid_input: text: holds nothing to speak: no letter or digit (only punctuation, symbols or invisible "
            "text)",
        ),
        ({"text": "hi\ud800"}, "invalid_input: text: is not valid Unicode text (it holds a lone surrogate code point)"),
        ({"text": "a", "language": "en\n"}, "invalid_input: language: should be a language code such as 'en' or 'de'"),
        ({"text": "a", "speed": 2.5}, "invalid_input: speed: should be less than or equal to 2"),
        ({"text": "a", "speed": 0.1}, "invalid_input: speed: should be greater than or equal to 0.5"),
        ({"text": "a", "speed": math.nan}, "invalid_input: speed: should be a finite number"),
        ({"text": "a", "cfg_strength": math.inf}, "invalid_input: cfg_strength: should be a finite number"),
        ({"text": "a", "nfe_steps": 0}, "invalid_input: nfe_steps: should be greater than or equal to 1"),
        ({"text": "a", "seed": -3}, "invalid_input: seed: should be greater than or equal to 0"),
        (
            {"text": "a", "output_format": "aac"},
            "invalid_input: output_format: should be 'wav', 'mp3', 'flac' or 'ogg'",
        ),
        ("just a string", "invalid_input: input: should be a JSON object"),
        (None, "invalid_input: input: should be a JSON object"),
        ({"operation": 3, "text": "a"}, "invalid_input: operation: should be a string naming an operation"),
    ],
)
def test_bad_input_names_field(raw, expected):
    with pytest.raises(InvalidInput) as err:
        parse(raw)
    assert f"{err.value.code}: {err.value.message}" == expected


def test_several_errors_are_all_reported():
    with pytest.raises(InvalidInput) as err:
        parse({"text": "", "speed": 9, "bogus": True})
    assert {"text:", "speed:", "bogus:"} <= {part.split()[0] for part in err.value.message.split("; ")}


def test_unknown_operation():
    with pytest.raises(UnknownOperation) as err:
        parse({"endpoint": "explode", "text": "a"})
    assert err.value.code == "unknown_operation"
    assert "'explode'" in err.value.message and "synthesize" in err.value.message


def test_conflicting_operation_and_endpoint():
    with pytest.raises(InvalidInput, match="operation and endpoint"):
        parse({"operation": "synthesize", "endpoint": "upload", "text": "a"})


@pytest.mark.parametrize(
    "bad", ["../etc/passwd", "a/b", "", ".hidden", "x" * 65, "a..b", "voice name", "a\\b", "x\n", " x", "x.wav\n"]
)
def test_voice_names_refuse_paths_and_traversal(bad):
    with pytest.raises(ValueError):
        voice_name(bad)
    with pytest.raises(InvalidInput, match="^voice: must be"):
        parse({"text": "a", "voice": bad})


def test_voice_name_drops_wav_suffix():
    assert voice_name("Kurt_12s.wav") == "Kurt_12s"
    assert voice_name("narrator-2") == "narrator-2"


def test_video_and_subtitle_resolutions_are_the_presets():
    """Both resolution fields accept exactly the names of `styles.PRESETS` (one list, not two)."""
    from tts_worker.styles import PRESETS

    for name in PRESETS:
        req = parse({"text": "Hi", "subtitles": {"resolution": name}, "video": {"resolution": name}})
        assert req.video is not None and req.video.resolution == name
        assert req.subtitles is not None and req.subtitles.resolution == name
    for field in ("video", "subtitles"):
        with pytest.raises(InvalidInput, match=rf"^{field}\.resolution: "):
            parse({"text": "Hi", field: {"resolution": "portrait"}})
