"""Hostile job inputs: every refusal names its field, nothing becomes internal_error, and what is
accepted is what the user meant (no control characters, something to speak, a cost limit in bytes).

The schema tests walk every field of every operation (taken from the models themselves, so a new
field is covered without touching this file) with invalid Unicode and wrong shapes. The end-to-end
tests run jobs through the handler on the tiny models and check that the worker keeps serving.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import random
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pysubs2
import pytest
import soundfile as sf

from tts_worker.errors import InvalidInput, quote
from tts_worker.fetch import Fetcher
from tts_worker.handler import make_handler
from tts_worker.parsing import parse_request
from tts_worker.schemas import REQUESTS, Limits, SubtitlesRequest
from tts_worker.settings import Settings
from tts_worker.storage import LocalStorage, check_key
from tts_worker.styles import PRESETS

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(max_text_chars=5000, languages=("en",))

# A valid request of each operation, to which one hostile value is added at a time.
BASE: dict[str, dict[str, Any]] = {
    "synthesize": {"text": "Hello there."},
    "align": {"operation": "align", "text": "Hello there.", "audio_key": "output/x.wav"},
    "upload_voice": {"operation": "upload_voice", "voice_name": "narrator", "voice_base64": "UklGRg=="},
    "list_voices": {"operation": "list_voices"},
    "delete_voice": {"operation": "delete_voice", "voice_name": "narrator"},
}
SHAPES: list[Any] = [[["a"]], [{"a": "b"}], {"a": "b"}, {"a": ["b"]}, [[]], [None], None, 3, 2.5, True, "x", [], {}]


def fields(operation: str) -> list[str]:
    """Every input field of an operation, as dotted paths (subtitles' and the original options' nested)."""
    model = REQUESTS[operation]
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.validation_alias is not None:
            names.update(str(a) for a in getattr(info.validation_alias, "choices", []))
    names.discard("operation")
    if "subtitles" in names:
        names |= {f"subtitles.{n}" for n in SubtitlesRequest.model_fields} | {"subtitles.formats.0"}
        names |= {"options", "options.create_subtitles", "options.subtitle_format"}
    return sorted(names)


def with_value(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`raw` with `value` at the dotted `path` ("subtitles.formats.0" makes the list)."""
    data = json.loads(json.dumps(raw))
    parts = path.split(".")
    node: Any = data
    for part, following in itertools.pairwise(parts):
        child: Any = [] if following.isdigit() else {}
        if isinstance(node, list):
            node.append(child)
        else:
            node = node.setdefault(part, child)
            continue
        node = child
    if parts[0] == "options" and len(parts) > 1:
        data["options"].setdefault("create_subtitles", True)
    if isinstance(node, list):
        node.append(value)
    else:
        node[parts[-1]] = value
    return data


def refusal(raw: Any, limits: Limits = LIMITS) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_request(raw, limits)
    message = caught.value.message
    assert message.isprintable(), message
    message.encode("utf-8")  # serialisable in any JSON writer
    return message


def assert_names(message: str, path: str) -> None:
    """Every problem in the message starts with a field path, the first with `path` or its parent."""
    parts = message.split("; ")
    assert all(re.match(r"^[\w.'\\-]+(\.[\w'\\-]+)*: ", p) for p in parts), message
    top = path.split(".")[0]
    named = any(p.split(":")[0].split(".")[0] == top for p in parts) or re.search(rf"\b{top}\b", message)
    assert named, (path, message)
    for leak in ("instance of", "Request", "pydantic", "Value error", "type=", "Traceback"):
        assert leak not in message, message


# --- class 3: invalid Unicode, wrong shapes ------------------------------------------------------------


@pytest.mark.parametrize("operation", sorted(BASE))
@pytest.mark.parametrize("bad", ["\ud800", "ok\udfffok", "\udc80" * 3])
def test_lone_surrogates_in_any_string_field_are_refused_naming_it(operation, bad):
    for path in fields(operation):
        if path == "options.create_subtitles":
            continue  # a boolean
        message = refusal(with_value(BASE[operation], path, bad))
        assert message.split(": ")[0] == path, (path, message)
        assert "not valid Unicode" in message


@pytest.mark.parametrize("operation", sorted(BASE))
def test_invalid_unicode_in_field_names_and_unknown_nested_fields(operation):
    message = refusal({**BASE[operation], "\ud83d": 1})
    assert message.startswith("input: the field name '\\ud83d' is not valid Unicode"), message
    if "text" in BASE[operation]:
        message = refusal({**BASE[operation], "subtitles": {"formats": ["srt"], "fo\udc00nt": "x"}})
        assert message.startswith("subtitles: the field name"), message


@pytest.mark.parametrize("operation", sorted(BASE))
def test_wrong_shapes_in_any_field_name_the_field_path(operation):
    for path in fields(operation):
        for shape in SHAPES:
            raw = with_value(BASE[operation], path, shape)
            try:
                parse_request(raw, LIMITS)
            except InvalidInput as exc:
                assert exc.code == "invalid_input"
                assert exc.message.isprintable()
                assert_names(exc.message, path)


def test_nested_type_errors_read_as_the_api_not_as_pydantic():
    assert refusal({"text": "a", "subtitles": {"formats": [["ass"]]}}) == (
        "subtitles.formats.0: should be 'ass', 'srt', 'vtt', 'json' or 'csv'"
    )
    assert refusal({"text": "a", "subtitles": ["srt"]}) == "subtitles: should be an object"
    assert refusal({"text": "a", "subtitles": {"font": {"a": 1}}}) == "subtitles.font: should be a valid string"
    assert refusal({"text": "a", "options": "srt"}) == "options: should be an object"


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    root = node
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"text": "a", "subtitles": {"formats": [["srt"]] * 1_000_000}}, "subtitles.formats: holds 1000000 items"),
        ({"text": "a", **{f"k{i}": 1 for i in range(100_000)}}, "input: holds 100001 fields, over the limit of 100"),
        ({"text": "a", "subtitles": {"font": [[[0] * 99] * 99] * 99}}, "input: holds more than 10000 values"),
        ({"text": "a", "subtitles": nested(500)}, "subtitles.a.a.a.a.a.a.a: is nested too deeply"),
    ],
)
def test_the_size_and_depth_of_the_input_are_bounded_before_validation(raw, expected):
    # Pydantic would build one error per bad item: a million of them took 15 s and 1.3 GB.
    assert refusal(raw).startswith(expected)


@pytest.mark.parametrize("bad", ["x\n", "x\r\n", "x.wav\n", " x", "x ", "x\t", "x\x00", "x\u2028", "\nx"])
def test_names_are_matched_whole_so_no_trailing_newline_gets_through(bad):
    for raw, field in [
        ({"text": "a", "voice": bad}, "voice"),
        ({"operation": "upload_voice", "voice_name": bad, "voice_base64": "UklGRg=="}, "voice_name"),
        ({"operation": "delete_voice", "voice_name": bad}, "voice_name"),
        ({"operation": "list_voices", "cursor": bad}, "cursor"),
    ]:
        assert refusal(raw).startswith(f"{field}: must be 1-64 characters")
    assert refusal({"text": "a", "language": bad.replace("x", "en")}).startswith("language: should be a language code")


@pytest.mark.parametrize("key", ["output/a.wav\n", "output/a.wav\r\n", "output/../a.wav", "output//a.wav", "/a"])
def test_storage_keys_are_matched_whole(key):
    with pytest.raises(ValueError, match="invalid storage key"):
        check_key(key)


@pytest.mark.parametrize(
    "url",
    [
        "s3://b/voices/../secret.wav",
        "s3://b/../x.wav",
        "s3://b/a/./x.wav",
        "s3://b//x.wav",
        "s3://b/a//x.wav",
        "s3://b/a/",
        "s3://b/%2e%2e/x.wav",
        "s3://b/a%2F..%2Fx.wav",
        "s3://b/a/x\x00.wav",
        "s3://b/a/x\n.wav",
        "s3://b/a/%0Ax.wav",
        "s3://b/a/\x9bx.wav",
    ],
)
def test_s3_keys_with_traversal_or_control_characters_are_invalid_input(url, tmp_path):
    fetcher = Fetcher(Settings(), storage=LocalStorage(tmp_path))
    with pytest.raises(InvalidInput) as caught:
        fetcher.fetch_bytes(url, field="voice_url")
    assert caught.value.code == "invalid_input"
    assert caught.value.message.startswith("voice_url: the key of an s3:// URL must be a plain path")


def test_language_without_an_aligner_is_refused_at_parse_time_when_timings_are_asked():
    for operation in ("synthesize", "align"):
        base = {**BASE[operation], "language": "de"}
        assert refusal(base).startswith("language: no alignment model for 'de' in this worker (baked: en)")
        assert refusal({**base, "word_timings": False, "subtitles": {"formats": ["srt"]}}).startswith("language:")
        assert refusal({**base, "word_timings": False, "options": {"create_subtitles": True}}).startswith("language:")
        assert parse_request({**base, "word_timings": False}, LIMITS).language == "de"
        assert parse_request(base, Limits(max_text_chars=5000)).language == "de"  # no languages: not checked
    assert parse_request({**BASE["upload_voice"], "language": "de"}, LIMITS).language == "de"


@pytest.mark.parametrize("create", [True, False])
def test_options_and_subtitles_together_are_an_error_naming_both(create):
    raw = {"text": "a", "options": {"create_subtitles": create}, "subtitles": {"formats": ["srt"]}}
    message = refusal(raw)
    assert message.startswith("options: ") and "subtitles" in message


# --- class 3: quoted input ---------------------------------------------------------------------------


def test_quote_is_short_escaped_and_repr_like():
    assert quote("dance") == "'dance'"
    assert quote("it's") == "'it\\'s'"
    assert quote("\x1b[2J\u202e\ud800\n") == "'\\x1b[2J\\u202e\\ud800\\n'"
    long = quote("\x1b" * 500)
    assert long.startswith("'\\x1b") and long.endswith("... (500 characters)") and len(long) < 130
    assert quote(["a"]) == "['a']"


HOSTILE_VALUES = ["\x1b[2J\x1b[31m" * 200, "A" * 10_000, "\u202e" * 300, "x\n" * 500, "\x00" * 1000]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_errors_quote_user_input_only_short_and_escaped(value):
    raws = [
        {"operation": value},
        {"text": "a", value: 1},
        {"text": "a", "subtitles": {value: 1}},
        {"text": "a", "options": {value: 1}},
        {"text": "a", "subtitles": {"karaoke": value}},
        {"text": "a", "subtitles": {"primary_colour": value}},
        {"text": "a", "subtitles": {"font": value}},
        {"text": "a", "subtitles": {"position": value}},
        {"text": "a", "voice": value},
        {"text": "a", "language": value},
        {"text": "a", "output_format": value},
        {"operation": "list_voices", "cursor": value},
        {"text": "a", **{f"field{i}": value for i in range(50)}},
    ]
    for raw in raws:
        with pytest.raises(InvalidInput) as caught:
            parse_request(raw, LIMITS)
        message = caught.value.message
        assert message.isprintable()
        assert len(message) <= 1200, len(message)
        for part in message.split("; "):
            assert len(part) <= 300, part
        assert value[:150] not in message


# --- class 4: text that reaches the model and the files ------------------------------------------------

HOSTILE_TEXT = "Hello\x00world\x1b[31m red\x07\x7f\x9b\u202eevil\u2066x\u2069 a\r\nb\rc\u2028d\x0be\ufeff\u200bf\u00adg"
CLEAN_TEXT = "Hello world [31m red   evilx a\nb\nc\nd\nefg"


def assert_clean(text: str) -> None:
    for ch in text:
        category = unicodedata.category(ch)
        assert category != "Cc" or ch in "\n\t", repr(ch)
        assert category != "Cf" or ch in "\u200c\u200d", repr(ch)


def test_control_and_format_characters_never_reach_the_model():
    req = parse_request({"text": HOSTILE_TEXT}, LIMITS)
    assert req.text == CLEAN_TEXT  # type: ignore[attr-defined]
    assert_clean(req.text)  # type: ignore[attr-defined]
    req = parse_request({"text": "a", "voice_url": "https://x.example/a.wav", "ref_text": HOSTILE_TEXT}, LIMITS)
    assert req.ref_text == CLEAN_TEXT  # type: ignore[attr-defined]
    # Joiners that change spelling stay: an emoji family, a Persian word.
    kept = "family \U0001f468\u200d\U0001f469\u200d\U0001f467 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert parse_request({"text": kept}, LIMITS).text == kept  # type: ignore[attr-defined]


NOTHING_TO_SAY = ["!!!", "...", "\u200b\u200b", "\U0001f600" * 200, "\U0001f44d \U0001f389", "\u3164\u3164",
                  "— – …", "\x00\x01", "\u202e\u202d", "+-*/ = %", "\ufeff"]  # fmt: skip


@pytest.mark.parametrize("text", NOTHING_TO_SAY)
def test_text_with_nothing_to_speak_is_refused_naming_text(text):
    assert refusal({"text": text}).startswith("text: ")
    assert refusal({"operation": "align", "text": text, "audio_key": "output/x.wav"}).startswith("text: ")
    ref = {"text": "a", "voice_url": "https://x.example/a.wav", "ref_text": text}
    assert refusal(ref).startswith("ref_text: ")


@pytest.mark.parametrize("text", ["a", "7", "¡Hola!", "日本", "\u0663", "Ω", "x\U0001f600", "Café."])
def test_any_letter_or_digit_is_speakable(text):
    assert parse_request({"text": text}, LIMITS).text == text  # type: ignore[attr-defined]


def test_the_text_limit_counts_utf8_bytes_as_well_as_characters():
    assert len(parse_request({"text": "a" * 5000}, LIMITS).text) == 5000  # type: ignore[attr-defined]
    assert parse_request({"text": "é" * 3000}, LIMITS)  # 6000 bytes: 1.2 x 5000
    assert refusal({"text": "é" * 3001}).startswith("text: is 6002 bytes long in UTF-8, over the limit of 6000")
    # 200 emoji would cost 4x the audio of 200 letters: in bytes they count 4 each.
    assert parse_request({"text": "a\U0001f600" * 1200}, LIMITS)
    assert refusal({"text": "a\U0001f600" * 1201}).startswith("text: is 6005 bytes long")
    assert refusal({"text": "a" * 80}, Limits(max_text_chars=100, max_text_bytes=60)).startswith("text: is 80 bytes")
    assert refusal({"text": "a" * 101}, Limits(max_text_chars=100)).startswith("text: is 101 characters long")
    # Control characters removed first: what counts is what the model gets.
    assert parse_request({"text": "a" + "\u200b" * 9000}, LIMITS).text == "a"  # type: ignore[attr-defined]


def test_max_text_bytes_is_a_validated_setting():
    assert Settings(max_text_bytes=9000).max_text_bytes == 9000
    assert Settings().max_text_bytes is None
    with pytest.raises(ValueError):
        Settings(max_text_bytes=0)


# --- class 4: subtitle option ranges are the documented ones -------------------------------------------


def documented_ranges() -> dict[str, tuple[int, int]]:
    """`field -> (low, high)` from docs/API.md's Subtitles table rows whose limit is `A-B`."""
    section = (ROOT / "docs" / "API.md").read_text().split("## Subtitles", 1)[1].split("\n## ", 1)[0]
    ranges = {}
    for field, limit in re.findall(r"^\| `(\w+)` \| [^|]* \| ([^|]*) \|", section, flags=re.M):
        found = re.fullmatch(r"\s*(\d+)-(\d+)\s*", limit)
        if found:
            ranges[field] = (int(found[1]), int(found[2]))
    return ranges


def test_every_documented_subtitle_range_is_the_accepted_range():
    ranges = documented_ranges()
    assert {"font_size", "outline", "shadow", "max_chars_per_line", "max_words_per_line", "max_lines"} <= set(ranges)
    for field, (low, high) in ranges.items():
        for value, good in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
            raw = {"text": "a", "subtitles": {field: value}}
            if good:
                assert getattr(parse_request(raw, LIMITS).subtitles, field) == value  # type: ignore[attr-defined]
            else:
                assert refusal(raw).startswith(f"subtitles.{field}: "), (field, value)


@pytest.mark.parametrize(("resolution", "height"), [("landscape", 1080), ("vertical", 1920)])
@pytest.mark.parametrize("font_size", [None, 10, 500])
def test_margin_v_stays_within_the_chosen_canvas_height(resolution, height, font_size):
    style = {"resolution": resolution} | ({"font_size": font_size} if font_size else {})
    high = height - (font_size or PRESETS[resolution].font_size)
    for margin, good in ((0, True), (high, True), (high + 1, False), (height, False), (-1, False)):
        raw = {"text": "a", "subtitles": {**style, "margin_v": margin}}
        if good:
            assert parse_request(raw, LIMITS).subtitles.margin_v == margin  # type: ignore[attr-defined]
        else:
            message = refusal(raw)
            assert message.startswith(f"subtitles.margin_v: must be a whole number from 0 to {high}"), message


# --- end to end, through the handler on the tiny models ------------------------------------------------

FAST = {"nfe_steps": 4}


def wav_b64(seconds: float, rate: int = 16_000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def handler(worker):
    return make_handler(worker)


def job(handler, job_input: dict[str, Any]) -> dict[str, Any]:
    result = handler({"id": "hostile", "input": job_input})
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # what any JSON writer must manage
    return result


@pytest.mark.parametrize(
    ("job_input", "expected"),
    [
        ({"operation": "align", "text": "Hello \ud800 there", "audio_base64": "AAAA"}, "invalid_input: text: "),
        ({"text": "Hi", "subtitles": {"formats": [["srt"]]}}, "invalid_input: subtitles.formats.0: "),
        ({"text": "Hi", "language": "de", **FAST}, "invalid_input: language: no alignment model for 'de'"),
        ({"text": "Hi", "options": {"create_subtitles": True}, "subtitles": {}}, "invalid_input: options: "),
        ({"operation": "align", "text": "Hi", "audio_key": "output/x.wav\n"}, "invalid_input: audio_key: "),
        ({"text": "Hi", "voice_url": "s3://bucket/voices/../x.wav"}, "invalid_input: voice_url: the key of an s3"),
        ({"operation": "delete_voice", "voice_name": "narrator\n"}, "invalid_input: voice_name: "),
        ({"text": "\u200b!?\U0001f600"}, "invalid_input: text: holds nothing to speak"),
    ],
)
def test_hostile_jobs_fail_naming_the_field_and_the_next_job_succeeds(handler, worker, job_input, expected):
    before = {o.key for p in ("output/", "timings/") for o in worker.storage.list(p)}
    result = job(handler, job_input)
    assert result["error"].startswith(expected), result
    assert {o.key for p in ("output/", "timings/") for o in worker.storage.list(p)} == before
    assert "error" not in job(handler, {"text": "Still serving.", "word_timings": False, **FAST})


def test_an_align_result_echoing_hostile_text_is_clean_and_serialisable(handler, worker):
    result = job(handler, {"operation": "align", "text": HOSTILE_TEXT, "audio_base64": wav_b64(3.0),
                           "subtitles": {"formats": ["srt", "vtt", "json", "csv"]}})  # fmt: skip
    assert "error" not in result, result
    out = result
    assert out["text"] == CLEAN_TEXT
    assert [w["word"] for w in out["word_timings"]] == CLEAN_TEXT.split()
    for fmt, stored in out["subtitles"].items():
        body = worker.storage.get(stored["key"]).decode("utf-8")
        assert_clean(body.replace("\u2060", ""))
        if fmt in ("srt", "vtt"):
            shown = [e.text.replace("\u2060", "") for e in pysubs2.SSAFile.from_string(body, format_=fmt).events]
            assert " ".join(" ".join(shown).replace("\\N", " ").split()) == " ".join(CLEAN_TEXT.split())


def test_synthesis_of_hostile_text_speaks_and_subtitles_the_clean_text(handler, worker):
    result = job(handler, {"text": HOSTILE_TEXT, "subtitles": {"formats": ["srt"]}, "seed": 1, **FAST})
    assert "error" not in result, result
    assert result["text"] == CLEAN_TEXT
    assert "".join(c["text"] for c in result["chunks"]).split() == CLEAN_TEXT.split()
    body = worker.storage.get(result["subtitles"]["srt"]["key"]).decode("utf-8")
    assert_clean(body.replace("\u2060", ""))


def test_a_language_without_aligner_is_refused_before_any_synthesis(worker):
    updates: list[dict[str, Any]] = []
    handler = make_handler(worker, progress=lambda job, update: updates.append(update))
    result = job(handler, {"text": "Hello there.", "language": "de", "subtitles": {"formats": ["srt"]}, **FAST})
    assert result["error"].startswith("invalid_input: language: no alignment model for 'de'")
    assert updates == []  # no chunk was synthesised, nothing was aligned
    result = job(handler, {"text": "Hello there.", "language": "de", "word_timings": False, **FAST})
    assert "error" not in result and "word_timings" not in result
    assert [u["stage"] for u in updates][:1] == ["synthesis"]


def test_random_documents_get_a_request_or_field_named_problems_only():
    """Random documents of the API's own field names, aliases and hostile values: each parses, or every
    problem in its message is `<field path>: <problem>`; nothing else is raised."""
    keys = sorted({f.split(".")[0] for op in BASE for f in fields(op)} | {"endpoint", "bogus"})
    nested_keys = [*sorted(SubtitlesRequest.model_fields), "create_subtitles", "subtitle_format", "bogus"]
    strings = ["", "a", "en", "de", "srt", "ass", "\ud800", "x\n", "https://a.example/x.wav", "s3://b/../k",
               "UklGRg==", "#FFFFFF", "vertical", "kf", "\x00\x1b", "!!!", "hello", "default"]  # fmt: skip
    scalars = [0, 1, -1, 2**40, 0.5, 1e308, float("nan"), True, False, None, 1080, 64]
    rng = random.Random(7)

    def value(depth: int = 0) -> Any:
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(strings)
        if roll < 0.5 or depth > 2:
            return rng.choice(scalars)
        if roll < 0.75:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(nested_keys + keys): value(depth + 1) for _ in range(rng.randint(0, 3))}

    for _ in range(3000):
        raw = {rng.choice(keys): value() for _ in range(rng.randint(0, 6))}
        if rng.random() < 0.7:
            raw["operation"] = rng.choice(["synthesize", "align", "upload", "list_voices", "delete", "tts", "x"])
        try:
            parse_request(raw, LIMITS)
        except InvalidInput as exc:
            assert exc.message.isprintable()
            for part in exc.message.split("; "):
                assert re.match(r"^[\w'\\.-]+: \S", part), (raw, exc.message)
