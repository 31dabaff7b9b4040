"""Every operation through the handler, end to end on tiny models: synthesis with word timings and
subtitles, align, the voice library, remote voices over https, and S3 storage on a real SeaweedFS."""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pysubs2
import pytest
import soundfile as sf

from s3server import BUCKET, SeaweedS3, s3_server, s3_settings
from test_fetch import self_signed
from tts_worker import subtitles
from tts_worker.fetch import Fetcher
from tts_worker.handler import make_handler
from tts_worker.pipeline import Worker
from tts_worker.s3 import S3Storage
from tts_worker.storage import LocalStorage

__all__ = ["s3_server"]

FAST = {"nfe_steps": 4, "seed": 11}
TEXT = "Hello, world! The year is 2025 and we're testing subtitles."


def wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), rate,
             format="WAV")  # fmt: skip
    return buf.getvalue()


@pytest.fixture(scope="module")
def handler(worker):
    return make_handler(worker)


def ok(handler, job_input):
    result = handler({"id": "op-test", "input": job_input})
    assert "error" not in result, result
    return result


def error(handler, job_input, code):
    result = handler({"id": "op-test", "input": job_input})
    assert set(result) <= {"error", "refresh_worker"} and result["error"].startswith(f"{code}: "), result
    return result["error"]


def check_timings(words, text, duration):
    assert [w["word"] for w in words] == text.split()  # one per word, original spelling
    assert all(0 <= w["start"] <= w["end"] <= duration + 1e-3 for w in words)
    assert all(a["end"] <= b["start"] + 1e-3 for a, b in itertools.pairwise(words))


# -- synthesis with timings and subtitles -------------------------------------------------------------


def test_original_api_subtitle_request(handler, worker):
    out = ok(handler, {"text": TEXT, "options": {"create_subtitles": True, "subtitle_format": "ass"}, **FAST})
    check_timings(out["word_timings"], TEXT, out["duration"])
    assert set(out["subtitles"]) == {"ass"} and out["subtitles_url"] == out["subtitles"]["ass"]["url"]
    ass = pysubs2.SSAFile.from_string(worker.storage.get(out["subtitles"]["ass"]["key"]).decode())
    spoken = " ".join(e.plaintext.replace("\n", " ") for e in ass.events)
    assert spoken.split() == TEXT.split()
    assert ass.events[0].start >= 0 and ass.events[-1].end <= round(out["duration"] * 1000) + 10
    assert {"alignment", "subtitles"} <= set(out["processing_stages"])


def test_every_subtitle_format_is_stored_and_parses(handler, worker):
    req = {"text": TEXT, "subtitles": {"formats": ["ass", "srt", "vtt", "json", "csv"], "karaoke": "kf",
                                       "resolution": "vertical", "highlight_colour": "#FF0000"}, **FAST}  # fmt: skip
    out = ok(handler, req)
    files = {fmt: worker.storage.get(meta["key"]).decode() for fmt, meta in out["subtitles"].items()}
    assert all(meta["key"].startswith("timings/") for meta in out["subtitles"].values())
    ass = pysubs2.SSAFile.from_string(files["ass"])
    assert ass.info["PlayResX"] == "1080" and "\\kf" in ass.events[0].text
    for fmt in ("srt", "vtt"):
        subs = pysubs2.SSAFile.from_string(files[fmt], format_=fmt)
        assert " ".join(e.plaintext.replace("\n", " ") for e in subs.events).split() == TEXT.split()
    assert json.loads(files["json"]) == out["word_timings"]
    rows = list(csv.DictReader(io.StringIO(files["csv"])))
    assert [r["word"] for r in rows] == TEXT.split()
    assert [float(r["start"]) for r in rows] == [w["start"] for w in out["word_timings"]]


def test_timings_can_be_turned_off(handler):
    out = ok(handler, {"text": "Audio only, please.", "word_timings": False, **FAST})
    assert "word_timings" not in out and "subtitles" not in out
    assert "alignment" not in out["processing_stages"]


def test_bad_subtitle_options_name_the_field(handler):
    msg = error(handler, {"text": "a", "subtitles": {"primary_colour": "red"}}, "invalid_input")
    assert msg.startswith("invalid_input: subtitles.primary_colour: must be a colour")
    msg = error(
        handler, {"text": "a", "options": {"subtitle_format": "docx", "create_subtitles": True}}, "invalid_input"
    )
    assert msg.startswith("invalid_input: options.subtitle_format: should be 'ass', ")  # the field as it was sent
    assert "language:" in error(handler, {"text": "a", "language": "klingon"}, "invalid_input")


def test_unbaked_alignment_language_is_refused(handler):
    assert error(handler, {"text": "Hola.", "language": "es", **FAST}, "invalid_input").startswith(
        "invalid_input: language: "
    )


# -- align --------------------------------------------------------------------------------------------


def test_align_existing_audio_by_key_and_base64(handler, worker):
    synth = ok(handler, {"text": TEXT, "word_timings": False, **FAST})
    by_key = ok(handler, {"operation": "align", "text": TEXT, "audio_key": synth["audio"]["key"],
                          "subtitles": {"formats": ["srt"]}})  # fmt: skip
    assert by_key["duration"] == pytest.approx(synth["duration"], abs=1e-3)
    check_timings(by_key["word_timings"], TEXT, by_key["duration"])
    srt = pysubs2.SSAFile.from_string(worker.storage.get(by_key["subtitles"]["srt"]["key"]).decode(), format_="srt")
    assert len(srt.events) >= 1
    clip = base64.b64encode(wav_bytes(3.0)).decode()
    by_b64 = ok(handler, {"operation": "align", "text": "Three seconds of tone.", "audio_base64": clip})
    assert by_b64["duration"] == pytest.approx(3.0, abs=1e-3)
    check_timings(by_b64["word_timings"], "Three seconds of tone.", 3.0)


def test_align_errors(handler):
    assert "exactly once" in error(handler, {"operation": "align", "text": "x"}, "invalid_input")
    assert error(
        handler, {"operation": "align", "text": "x", "audio_key": "../etc/passwd"}, "invalid_input"
    ).startswith("invalid_input: audio_key: ")
    assert "no object" in error(handler, {"operation": "align", "text": "x", "audio_key": "output/none.wav"},
                                "invalid_input")  # fmt: skip


# -- the voice library --------------------------------------------------------------------------------


def test_voice_library_round_trip(handler):
    clip = base64.b64encode(wav_bytes(4.0)).decode()
    up = ok(handler, {"operation": "upload_voice", "voice_name": "narrator", "voice_base64": clip,
                      "ref_text": "This is the narrator speaking.", "language": "en"})  # fmt: skip
    assert up["voice"]["name"] == "narrator" and up["voice"]["sample_rate"] == 24_000
    assert up["voice"]["duration"] == pytest.approx(4.0, abs=0.01)
    again = {"operation": "upload_voice", "voice_name": "narrator", "voice_base64": clip, "ref_text": "Again."}
    assert "already exists" in error(handler, again, "invalid_input")
    listed = ok(handler, {"endpoint": "list_voices"})
    assert listed["status"] == "success" and "narrator" in [v["name"] for v in listed["voices"]]
    entry = next(v for v in listed["voices"] if v["name"] == "narrator")
    assert entry["voice_file"] == "narrator.wav" and entry["ref_text"] == "This is the narrator speaking."
    spoken = ok(handler, {"text": "Now in the narrator's voice.", "local_voice": "narrator.wav", **FAST})
    assert spoken["voice"] == "narrator"
    ok(handler, {"operation": "delete_voice", "voice_name": "narrator"})
    error(handler, {"text": "Gone.", "voice": "narrator", **FAST}, "voice_not_found")
    error(handler, {"operation": "delete_voice", "voice_name": "narrator"}, "voice_not_found")


def test_list_voices_paginates(handler):
    clip = base64.b64encode(wav_bytes(2.0)).decode()
    for name in ("page-a", "page-b", "page-c"):
        ok(handler, {"operation": "upload_voice", "voice_name": name, "voice_base64": clip, "ref_text": "Hi there."})
    first = ok(handler, {"operation": "list_voices", "limit": 2})
    names = [v["name"] for v in first["voices"]]
    rest = ok(handler, {"operation": "list_voices", "limit": 200, "cursor": first["next_cursor"]})
    assert first["count"] == 2 and not set(names) & {v["name"] for v in rest["voices"]}
    assert {"page-a", "page-b", "page-c"} <= set(names) | {v["name"] for v in rest["voices"]}


def test_every_operation_answers_its_processing_time(handler):
    """`processing_time` (seconds, a number) is on every operation's result, not only synthesize/align's."""
    synth = ok(handler, {"text": "Timed.", "word_timings": False, **FAST})
    clip = base64.b64encode(wav_bytes(2.0)).decode()
    upload = {"operation": "upload_voice", "voice_name": "timed", "voice_base64": clip, "ref_text": "Hi there."}
    results = {
        "synthesize": synth,
        "align": ok(handler, {"operation": "align", "text": "Timed.", "audio_key": synth["audio"]["key"]}),
        "upload_voice": ok(handler, upload),
        "list_voices": ok(handler, {"operation": "list_voices"}),
        "delete_voice": ok(handler, {"operation": "delete_voice", "voice_name": "timed"}),
        "download": ok(handler, {"operation": "download", "key": synth["audio"]["key"]}),
    }
    for operation, result in results.items():
        seconds = result.get("processing_time")
        assert result["operation"] == operation and isinstance(seconds, float) and 0 <= seconds < 600, result


# -- remote voices over https (a loopback server stands in for the internet) ---------------------------


class _Site(BaseHTTPRequestHandler):
    clip = wav_bytes(3.0)

    def log_message(self, format, *args):  # type: ignore[no-untyped-def]
        pass

    def do_GET(self) -> None:
        body = self.clip if self.path == "/voice.wav" else b"nope"
        self.send_response(200 if self.path == "/voice.wav" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[str, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ssl.create_default_context(cafile=str(cert))
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def web_handler(worker, site, tmp_path_factory):
    """The worker with a fetcher for which loopback counts as the internet (test-only bypass)."""
    storage = LocalStorage(tmp_path_factory.mktemp("web-storage"))
    fetcher = Fetcher(worker.settings, storage, verify=site[1], allow_addresses=["127.0.0.1/32"])
    return make_handler(Worker(worker.settings, worker.engine, worker.aligner, storage, fetcher))


def test_original_api_upload_from_url_then_synthesize(web_handler, site):
    url = f"{site[0]}/voice.wav"
    up = ok(web_handler, {"endpoint": "upload", "voice_file_url": url, "voice_name": "my-voice.wav",
                          "reference_text": "A voice from the web."})  # fmt: skip
    assert up["status"] == "Voice 'my-voice.wav' and reference text uploaded successfully."
    out = ok(web_handler, {"text": "Speaking as my voice.", "local_voice": "my-voice.wav", "speed": 1.0, **FAST})
    assert out["voice"] == "my-voice"


def test_synthesize_with_a_voice_url(web_handler, site):
    out = ok(web_handler, {"text": "Cloned from a link.", "voice_url": f"{site[0]}/voice.wav",
                           "ref_text": "A voice from the web.", **FAST})  # fmt: skip
    assert out["voice"] == "voice_url"
    assert "voice_url:" in error(web_handler, {"text": "x", "voice_url": f"{site[0]}/missing"}, "invalid_input")


def test_production_fetcher_refuses_loopback(handler, site):
    msg = error(handler, {"text": "x", "local_voice": f"{site[0]}/voice.wav", "ref_text": "t"}, "invalid_input")
    assert msg.startswith("invalid_input: local_voice: ") and "loopback" in msg  # named as it was sent


# -- S3 storage ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_worker(worker, s3_server: SeaweedS3):
    settings = s3_settings(s3_server, s3_max_attempts=1)
    storage = S3Storage.from_settings(settings)
    return Worker(settings, worker.engine, worker.aligner, storage, Fetcher(settings, storage))


def test_s3_job_returns_working_presigned_urls(s3_worker, s3_server):
    out = ok(make_handler(s3_worker), {"text": TEXT, "subtitles": {"formats": ["vtt"]}, **FAST})
    assert out["storage"] == "s3" and out["audio"]["key"].startswith("output/")
    audio = httpx.get(out["audio_url"], timeout=10)
    assert audio.status_code == 200
    samples, rate = sf.read(io.BytesIO(audio.content))
    assert rate == 24_000 and abs(len(samples) / rate - out["duration"]) < 1e-3
    vtt = httpx.get(out["subtitles_url"], timeout=10)
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")


def wait_until_writable(server: SeaweedS3, timeout: float = 60.0) -> None:
    """SeaweedFS answers S3 calls before its volume server takes writes: wait for a write to go through."""
    client, deadline = server.client(max_attempts=1), time.monotonic() + timeout
    while True:
        try:
            client.put_object(Bucket=BUCKET, Key="probe/ready", Body=b"x")
            client.delete_object(Bucket=BUCKET, Key="probe/ready")
            return
        except Exception:
            assert time.monotonic() < deadline, "SeaweedFS did not take writes after a restart"
            time.sleep(0.5)


def test_s3_outage_mid_job_leaves_nothing_and_the_next_job_succeeds(s3_worker, s3_server, monkeypatch):
    """The audio is uploaded, then storage goes away before the subtitles: a clear storage error, and once
    the server is back the audio that was written is removed before the next job runs."""
    handler = make_handler(s3_worker)
    before = set(s3_server.keys(BUCKET))
    real_build = subtitles.build

    def build_then_stop(*args, **kwargs):
        s3_server.stop()
        return real_build(*args, **kwargs)

    monkeypatch.setattr(subtitles, "build", build_then_stop)
    try:
        msg = error(handler, {"text": TEXT, "subtitles": {"formats": ["srt"]}, **FAST}, "storage_error")
        assert "timings/" in msg and "127.0.0.1" not in msg and "secret" not in msg.lower()
    finally:
        monkeypatch.undo()
        s3_server.start()
        wait_until_writable(s3_server)
    out = ok(handler, {"text": "Back again.", "word_timings": False, **FAST})
    after = set(s3_server.keys(BUCKET))
    assert after - before == {out["audio"]["key"]}


def test_upload_errors_name_the_field_the_clip_came_in(handler):
    silent = io.BytesIO()
    sf.write(silent, np.zeros(32_000, np.float32), 16_000, format="WAV")
    job = {"operation": "upload_voice", "voice_name": "quiet", "ref_text": "Nothing.",
           "voice_base64": base64.b64encode(silent.getvalue()).decode()}  # fmt: skip
    assert error(handler, job, "invalid_audio") == "invalid_audio: voice_base64: the clip is silent"
