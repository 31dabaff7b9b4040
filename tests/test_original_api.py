"""The original API's requests and buckets as people bring them, through the runpod SDK's real local API
(`WorkerAPI` under TestClient) on tiny models, with storage on a real SeaweedFS where storage is involved:
`audio_url` as the output's place, named outputs, the file downloader, errors in the names the user sent,
voices in the original layout, and files inline when there is no bucket to link to."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pysubs2
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from runpod.serverless.modules.rp_fastapi import WorkerAPI

from s3server import BUCKET, SeaweedS3, s3_server, s3_settings
from test_voices import encode, speech_like
from tts_worker import outputs
from tts_worker.fetch import Fetcher
from tts_worker.handler import make_handler
from tts_worker.pipeline import Worker
from tts_worker.s3 import S3Storage
from tts_worker.settings import Settings
from tts_worker.storage import LocalStorage

__all__ = ["s3_server"]

FAST = {"nfe_steps": 4, "seed": 5}
EXTRA = "bucket"  # the original request's bucket, listed in S3_EXTRA_BUCKETS
REFERENCE_TEXT = "This is the reference clip of my voice."
ORIGINAL = {
    "audio_url": "s3://bucket/input.wav",
    "voice_reference_url": "s3://bucket/reference.wav",
    "text": "Text to synthesize",
    "options": {"create_subtitles": True, "subtitle_format": "ass"},
}


def api(worker: Worker) -> TestClient:
    return TestClient(WorkerAPI({"handler": make_handler(worker)}).rp_app)


def ok(client: TestClient, job_input: dict[str, Any]) -> dict[str, Any]:
    reply = client.post("/runsync", json={"input": job_input}).json()
    assert reply["status"] == "COMPLETED", reply
    return reply["output"]


def failed(client: TestClient, job_input: dict[str, Any]) -> str:
    reply = client.post("/runsync", json={"input": job_input}).json()
    assert reply["status"] == "FAILED" and "output" not in reply, reply
    assert "Traceback" not in reply["error"]
    return reply["error"]


def duration_of(data: bytes) -> float:
    samples, rate = sf.read(io.BytesIO(data))
    return len(samples) / rate


def ensure_bucket(server: SeaweedS3, name: str) -> str:
    with contextlib.suppress(Exception):  # another module of the session made it already
        server.create_bucket(name)
    return name


def local_worker(worker: Worker, root: Path, **settings: Any) -> Worker:
    values = worker.settings.model_dump()
    values.update(storage_dir=root, **settings)
    s = Settings(**values)
    storage = LocalStorage(root)
    return Worker(s, worker.engine, worker.aligner, storage, Fetcher(s, storage))


def s3_worker(worker: Worker, server: SeaweedS3, **settings: Any) -> Worker:
    s = s3_settings(server, s3_extra_buckets=EXTRA, s3_max_attempts=1, **settings)
    storage = S3Storage.from_settings(s)
    return Worker(s, worker.engine, worker.aligner, storage, Fetcher(s, storage))


@pytest.fixture(scope="module")
def s3(worker, s3_server: SeaweedS3):
    ensure_bucket(s3_server, EXTRA)
    client = s3_server.client()
    client.put_object(Bucket=EXTRA, Key="reference.wav", Body=encode(speech_like(3.0)))
    client.put_object(Bucket=EXTRA, Key="reference.txt", Body=REFERENCE_TEXT.encode())
    w = s3_worker(worker, s3_server)
    return SimpleNamespace(worker=w, client=api(w), server=s3_server, boto=client)


@pytest.fixture
def local(worker, tmp_path):
    w = local_worker(worker, tmp_path / "storage")
    return SimpleNamespace(worker=w, client=api(w), root=tmp_path / "storage")


def stored_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# -- 1. the original request, verbatim -----------------------------------------------------------------


def test_the_original_request_works_as_written(s3):
    out = ok(s3.client, ORIGINAL)
    assert {"audio_url", "subtitles_url", "word_timings", "processing_time"} <= set(out)
    assert isinstance(out["processing_time"], float) and out["processing_time"] > 0
    assert sum(out["processing_stages"].values()) <= out["processing_time"]
    assert out["voice"] == "voice_url"
    # Stored where audio_url says, in the bucket it names; the subtitles next to it with the same stem.
    assert (out["audio"]["bucket"], out["audio"]["key"]) == (EXTRA, "input.wav")
    assert (out["subtitles"]["ass"]["bucket"], out["subtitles"]["ass"]["key"]) == (EXTRA, "input.ass")
    audio = httpx.get(out["audio_url"], timeout=10)
    assert audio.status_code == 200 and duration_of(audio.content) == pytest.approx(out["duration"], abs=1e-3)
    assert s3.boto.get_object(Bucket=EXTRA, Key="input.wav")["Body"].read() == audio.content
    ass = pysubs2.SSAFile.from_string(httpx.get(out["subtitles_url"], timeout=10).text)
    assert " ".join(e.plaintext.replace("\n", " ") for e in ass.events).split() == ORIGINAL["text"].split()
    assert [w["word"] for w in out["word_timings"]] == ORIGINAL["text"].split()


def test_a_named_output_replaces_what_was_there_and_a_failed_job_leaves_nothing(s3):
    """The original API overwrote an existing object; a job that fails after writing removes its files,
    in the other bucket too."""
    first = ok(s3.client, {**ORIGINAL, "audio_url": "s3://bucket/again/take.wav", "seed": 1, "nfe_steps": 4})
    before = s3.boto.get_object(Bucket=EXTRA, Key="again/take.wav")["Body"].read()
    second = ok(s3.client, {**ORIGINAL, "audio_url": "s3://bucket/again/take.wav", "seed": 2, "nfe_steps": 4})
    after = s3.boto.get_object(Bucket=EXTRA, Key="again/take.wav")["Body"].read()
    assert first["audio"]["key"] == second["audio"]["key"] == "again/take.wav" and before != after

    keys = set(s3.server.keys(EXTRA))
    # The audio and subtitles are stored, then the video's background is refused: the job fails.
    job = {
        **ORIGINAL,
        "audio_url": "s3://bucket/failed/attempt.wav",
        "video": {"background": "https://127.0.0.1/b.png"},
    }
    assert failed(s3.client, {**job, **FAST}).startswith("invalid_input: video.background: 127.0.0.1 is a loopback")
    assert set(s3.server.keys(EXTRA)) == keys


def test_output_url_in_the_workers_own_bucket(s3):
    out = ok(s3.client, {"text": "Into my own bucket.", "output_url": f"s3://{BUCKET}/stories/one.mp3", **FAST})
    assert out["audio"]["key"] == "stories/one.mp3" and "bucket" not in out["audio"] and out["format"] == "mp3"
    assert sf.info(io.BytesIO(httpx.get(out["audio_url"], timeout=10).content)).format == "MP3"


@pytest.mark.parametrize(
    ("audio_url", "error"),
    [
        ("https://example.com/out.wav", "invalid_input: audio_url: should be an s3:// URL to store the audio at"),
        ("s3://elsewhere/out.wav", "invalid_input: audio_url: bucket 'elsewhere' is not one this worker writes to"),
        (f"s3://{BUCKET}/voices/narrator.wav", "invalid_input: audio_url: voices/ holds the voice library"),
        ("s3://bucket/../up.wav", "invalid_input: audio_url: is not a valid key"),
        ("s3://bucket/a..b.wav", "invalid_input: audio_url: must not contain '..'"),
        ("s3://bucket/out.docx", "invalid_input: audio_url: must end in the audio format's extension"),
        ("s3://bucket/out.mp3", "invalid_input: audio_url: ends in .mp3, but output_format is wav"),
    ],
)
def test_an_audio_url_the_worker_cannot_store_at_is_refused_naming_audio_url(s3, audio_url, error):
    job = {**ORIGINAL, "audio_url": audio_url, **FAST}
    if audio_url.endswith(".mp3"):
        job["output_format"] = "wav"
    assert failed(s3.client, job).startswith(error)


def test_an_s3_audio_url_needs_s3_storage(local):
    error = failed(local.client, {"text": "Hi there.", "audio_url": "s3://bucket/input.wav"})
    assert error.startswith("invalid_input: audio_url: storing at an s3:// URL needs S3 storage")


# -- output_key / output_prefix ----------------------------------------------------------------------------


def test_output_key_and_output_prefix_place_every_file_of_the_job(local):
    out = ok(local.client, {"text": "Chapter one.", "output_key": "output/stories/chapter-1.mp3",
                            "subtitles": {"formats": ["srt", "vtt"]}, **FAST})  # fmt: skip
    assert out["format"] == "mp3" and out["audio"]["key"] == "output/stories/chapter-1.mp3"
    assert {f["key"] for f in out["subtitles"].values()} == {
        "output/stories/chapter-1.srt",
        "output/stories/chapter-1.vtt",
    }
    assert duration_of((local.root / "output/stories/chapter-1.mp3").read_bytes()) == pytest.approx(
        out["duration"], abs=0.06
    )
    srt = pysubs2.SSAFile.from_string((local.root / "output/stories/chapter-1.srt").read_text(), format_="srt")
    assert " ".join(e.plaintext for e in srt.events).split() == ["Chapter", "one."]

    out = ok(local.client, {"text": "A prefix.", "output_prefix": "output/project-7", "subtitles": {"formats": "vtt"},
                            **FAST})  # fmt: skip
    stem = out["audio"]["key"].removeprefix("output/project-7/").removesuffix(".wav")
    assert len(stem) == 32 and out["subtitles"]["vtt"]["key"] == f"output/project-7/{stem}.vtt"


@pytest.mark.parametrize(
    ("job", "error"),
    [
        ({"output_key": "stories/x.wav"}, "output_key: should be a key under output/"),
        ({"output_key": "output/../voices/x.wav"}, "output_key: is not a valid key"),
        ({"output_key": "output/a..b.wav"}, "output_key: must not contain '..'"),
        ({"output_key": "output/x"}, "output_key: must end in the audio format's extension"),
        ({"output_prefix": "timings/"}, "output_prefix: should be a prefix under output/"),
        ({"output_prefix": "output/a b/"}, "output_prefix: is not a valid prefix"),
        ({"output_key": "output/x.wav", "output_prefix": "output/y/"}, "output_prefix: give the output's place once"),
    ],
)
def test_bad_output_places_are_refused_naming_the_field(local, job, error):
    assert failed(local.client, {"text": "Hi there.", **job}).startswith(f"invalid_input: {error}")
    assert stored_files(local.root) == set()


# -- the file downloader -------------------------------------------------------------------------------


def test_download_by_key_and_by_path_on_local_storage(local):
    out = ok(local.client, {"text": "Download me.", "subtitles": {"formats": ["srt"]}, **FAST})
    key = out["audio"]["key"]
    got = ok(local.client, {"endpoint": "download", "key": key})
    assert isinstance(got.pop("processing_time"), float)
    assert got == {"status": "success", "operation": "download", "key": key, "url": out["audio_url"],
                   "expires_in": None, "size": out["audio"]["size"], "content_type": "audio/wav",
                   "storage": "local"}  # fmt: skip
    inline = ok(local.client, {"operation": "download", "url": out["subtitles_url"], "inline": True})
    srt = base64.b64decode(inline["base64"])
    assert srt == (local.root / out["subtitles"]["srt"]["key"]).read_bytes() and inline["content_type"].startswith(
        "application/x-subrip"
    )
    assert pysubs2.SSAFile.from_string(srt.decode(), format_="srt").events


def test_download_refusals_name_the_field(local, monkeypatch):
    out = ok(local.client, {"text": "Refusals.", **FAST})
    (local.root / "secret.txt").write_text("not for clients")
    cases = [
        ({"key": "secret.txt"}, "invalid_input: key: only files under output/, timings/, voices/ are served"),
        ({"key": "../etc/passwd"}, "invalid_input: key: is not a valid storage key"),
        ({"key": "output/nothing-here.wav"}, "invalid_input: key: there is no file 'output/nothing-here.wav'"),
        ({"url": str(local.root / "secret.txt")}, "invalid_input: url: only files under output/"),
        ({"url": "/etc/passwd"}, "invalid_input: url: is not a URL this worker returned"),
        ({"url": "https://example.com/output/x.wav"}, "invalid_input: url: is not a URL this worker returned"),
        ({}, "invalid_input: input: give the file exactly once: key or url"),
    ]
    for job, error in cases:
        assert failed(local.client, {"operation": "download", **job}).startswith(error), job
    monkeypatch.setattr("tts_worker.downloads.INLINE_MAX_BYTES", 1000)
    error = failed(local.client, {"operation": "download", "key": out["audio"]["key"], "inline": True})
    assert error.startswith("invalid_input: inline: output/") and "fetch its url instead" in error


def test_download_renews_an_expired_presigned_url(worker, s3_server: SeaweedS3):
    w = s3_worker(worker, s3_server, s3_presign_expiry_seconds=1)
    client = api(w)
    out = ok(client, {"text": "Expires soon.", "word_timings": False, **FAST})
    time.sleep(2.5)
    assert httpx.get(out["audio_url"], timeout=10).status_code == 403  # expired
    got = ok(client, {"endpoint": "download", "url": out["audio_url"]})
    assert got["key"] == out["audio"]["key"] and got["expires_in"] == 1 and got["storage"] == "s3"
    fresh = httpx.get(got["url"], timeout=10)
    assert fresh.status_code == 200 and duration_of(fresh.content) == pytest.approx(out["duration"], abs=1e-3)
    inline = ok(client, {"endpoint": "download", "key": out["audio"]["key"], "inline": True})
    assert base64.b64decode(inline["base64"]) == fresh.content and inline["content_type"] == "audio/wav"
    # An object of another bucket, or at another endpoint, is not this worker's to hand out.
    foreign = out["audio_url"].replace(f"/{BUCKET}/", f"/{EXTRA}/")
    assert failed(client, {"endpoint": "download", "url": foreign}).startswith("invalid_input: url: is not a URL")


def test_key_of_maps_public_and_presigned_urls_back_to_keys(s3_server: SeaweedS3):
    public = S3Storage.from_settings(s3_settings(s3_server, s3_public_base_url="https://cdn.example.com/media/"))
    assert public.key_of("https://cdn.example.com/media/output/a%20b.wav") is None  # not a key the worker makes
    assert public.key_of("https://CDN.example.com/media/output/ab.wav?v=2") == "output/ab.wav"
    assert public.key_of("https://cdn.example.com/other/output/ab.wav") is None
    assert public.key_of(public.url("timings/x.srt")) == "timings/x.srt"
    signed = S3Storage.from_settings(s3_settings(s3_server))
    url = signed.url("output/x.wav")
    assert signed.key_of(url) == "output/x.wav" and signed.key_of(url.replace("127.0.0.1", "127.0.0.2")) is None


# -- errors name the field the user sent --------------------------------------------------------------


def test_errors_name_the_field_as_it_was_sent(local):
    clip = base64.b64encode(encode(speech_like(10.0))).decode()
    silent = base64.b64encode(encode(np.zeros(48_000, np.float32))).decode()
    cases = [
        ({"text": "Hi.", "local_voice": "nobody.wav"}, "voice_not_found: local_voice: no voice named 'nobody'"),
        ({"text": "Hi.", "voice_reference_url": "https://127.0.0.1/x.wav"},
         "invalid_input: voice_reference_url: 127.0.0.1 is a loopback address"),
        ({"text": "Hi.", "local_voice": "https://127.0.0.1/x.wav"},
         "invalid_input: local_voice: 127.0.0.1 is a loopback address"),
        ({"text": "Hi.", "voice_reference_url": "s3://b/x.wav", "voice_base64": clip},
         "invalid_input: voice_base64: give the voice once"),
        ({"text": "Hi.", "voice_base64": clip, "reference_text": "Hi"},
         "invalid_input: reference_text: 2 characters for 10.0 s of reference audio is too short"),
        ({"text": "Hi.", "return_word_timings": "yes"},
         "invalid_input: return_word_timings: should be a valid boolean"),
        ({"text": "Hi.", "options": {"create_subtitles": True, "subtitle_format": "doc"}},
         "invalid_input: options.subtitle_format: should be 'ass'"),
        ({"endpoint": "upload", "name": "default", "voice_file": clip, "reference_text": "x" * 40},
         "invalid_input: name: 'default' is the built-in voice's name"),
        ({"endpoint": "upload", "name": "quiet", "voice_file": silent, "reference_text": "Nothing at all."},
         "invalid_audio: voice_file: the clip is silent"),
        ({"endpoint": "upload", "name": "web", "voice_file_url": "https://127.0.0.1/x.wav", "reference_text": "Hey."},
         "invalid_input: voice_file_url: 127.0.0.1 is a loopback address"),
        ({"endpoint": "upload", "name": "terse", "voice_file": clip, "reference_text": "Hi"},
         "invalid_input: reference_text: 2 characters for 10.0 s"),
        ({"endpoint": "delete", "name": "nobody"}, "voice_not_found: name: no voice named 'nobody'"),
    ]  # fmt: skip
    for job, error in cases:
        assert failed(local.client, job).startswith(error), job
    assert stored_files(local.root) == set()


# -- 2. existing buckets --------------------------------------------------------------------------------


def test_a_bucket_in_the_original_layout_is_a_voice_library_as_it_is(s3):
    name = f"seed-{uuid.uuid4().hex[:8]}"
    wav, txt = encode(speech_like(3.0, 16_000), 16_000), b"Once upon a time, in a land far away.\n"
    s3.boto.put_object(Bucket=BUCKET, Key=f"voices/{name}.wav", Body=wav)
    s3.boto.put_object(Bucket=BUCKET, Key=f"voices/{name}.txt", Body=txt)
    listed = ok(s3.client, {"endpoint": "list_voices", "limit": 200})
    entry = next(v for v in listed["voices"] if v["name"] == name)
    assert entry["ref_text"] == "Once upon a time, in a land far away." and entry["sha256"] is None
    assert (entry["voice_file"], entry["text_file"]) == (f"{name}.wav", f"{name}.txt")
    out = ok(s3.client, {"text": "Spoken in the seed voice.", "local_voice": f"{name}.wav", **FAST})
    assert out["voice"] == name
    hits = s3.worker.prompts.cache.hits
    ok(s3.client, {"text": "Again, prepared once.", "local_voice": name, **FAST})
    assert s3.worker.prompts.cache.hits == hits + 1  # keyed by the clip's content: prepared once
    audio = httpx.get(out["audio_url"], timeout=10).content
    assert duration_of(audio) == pytest.approx(out["duration"], abs=1e-3)
    # Nothing rewrote the original files, and no sidecar appeared.
    assert sorted(s3.server.keys(BUCKET, f"voices/{name}")) == [f"voices/{name}.txt", f"voices/{name}.wav"]
    assert s3.boto.get_object(Bucket=BUCKET, Key=f"voices/{name}.wav")["Body"].read() == wav
    assert s3.boto.get_object(Bucket=BUCKET, Key=f"voices/{name}.txt")["Body"].read() == txt


def test_list_voices_claims_only_the_text_files_that_exist(s3):
    name = f"up-{uuid.uuid4().hex[:8]}"
    clip = base64.b64encode(encode(speech_like(3.0))).decode()
    up = ok(s3.client, {"endpoint": "upload", "voice_name": name, "voice_file": clip,
                        "reference_text": "The clip says this sentence."})  # fmt: skip
    assert up["warnings"] == [] and up["voice"]["ref_text_source"] == "given"
    txt = s3.boto.get_object(Bucket=BUCKET, Key=f"voices/{name}.txt")["Body"].read()
    assert txt == b"The clip says this sentence.\n"  # readable by the original API's tools

    def listed() -> dict[str, Any]:
        return next(v for v in ok(s3.client, {"endpoint": "list_voices", "limit": 200})["voices"] if v["name"] == name)

    assert listed()["text_file"] == f"{name}.txt"
    s3.boto.delete_object(Bucket=BUCKET, Key=f"voices/{name}.txt")  # as an earlier version stored it
    assert listed()["text_file"] is None and listed()["ref_text"] == "The clip says this sentence."
    ok(s3.client, {"endpoint": "delete", "voice_name": name})


# -- 3. results without a bucket -------------------------------------------------------------------------


def test_on_runpod_without_a_bucket_files_come_inline(worker, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep-test")
    assert Settings().on_runpod()  # what RunPod's environment looks like to the worker
    with caplog.at_level(logging.WARNING, logger="tts_worker.outputs"):
        w = local_worker(worker, tmp_path / "disk", runpod_endpoint_id="ep-test")
    assert "runs on RunPod without a bucket" in caplog.text and "S3_BUCKET" in caplog.text
    client = api(w)
    out = ok(client, {"text": "Inline, please.", "subtitles": {"formats": ["srt", "vtt"]}, **FAST})
    audio = base64.b64decode(out["audio"]["base64"])
    assert audio == (tmp_path / "disk" / out["audio"]["key"]).read_bytes()
    assert duration_of(audio) == pytest.approx(out["duration"], abs=1e-3)
    vtt = base64.b64decode(out["subtitles"]["vtt"]["base64"]).decode()
    assert vtt.startswith("WEBVTT") and pysubs2.SSAFile.from_string(vtt, format_="vtt").events

    before = stored_files(tmp_path / "disk")
    monkeypatch.setattr(outputs, "RESULT_MAX_BYTES", 20_000)
    error = failed(client, {"text": "Now this is too long to come back inline.", **FAST})
    assert error.startswith("result_too_large: result: with its files inline the result is 0.")
    assert "more than the 0.02 MB RunPod answers with" in error and "configure a bucket" in error
    assert "S3_BUCKET" in error and "BUCKET_ENDPOINT_URL" in error
    assert stored_files(tmp_path / "disk") == before  # nothing of the failed job is left


def test_return_base64_asks_for_the_content_as_well_as_the_urls(s3, monkeypatch):
    out = ok(s3.client, {"text": "Both, please.", "return_base64": True, "subtitles": {"formats": ["srt"]}, **FAST})
    audio = httpx.get(out["audio_url"], timeout=10).content
    assert base64.b64decode(out["audio"]["base64"]) == audio
    assert base64.b64decode(out["subtitles"]["srt"]["base64"]) == httpx.get(out["subtitles_url"], timeout=10).content
    plain = ok(s3.client, {"text": "Links only.", **FAST})
    assert "base64" not in plain["audio"]
    monkeypatch.setattr(outputs, "RESULT_MAX_BYTES", 20_000)
    keys = set(s3.server.keys(BUCKET, "output/"))
    error = failed(s3.client, {"text": "Too much inline.", "return_base64": True, **FAST})
    assert error.startswith("result_too_large: return_base64: with its files inline the result is")
    assert "leave return_base64 out and fetch the files from their URLs" in error
    assert set(s3.server.keys(BUCKET, "output/")) == keys


def test_a_runpod_worker_with_a_bucket_links_its_files(worker, s3_server: SeaweedS3):
    w = s3_worker(worker, s3_server, runpod_endpoint_id="ep-test")
    assert w.inline is None
    out = ok(api(w), {"text": "Links.", **FAST})
    assert "base64" not in out["audio"] and httpx.get(out["audio_url"], timeout=10).status_code == 200


def test_a_streamed_job_with_a_named_output_keeps_its_chunks_beside_it(local):
    from tts_worker.handler import make_streaming_handler

    client = TestClient(
        WorkerAPI({"handler": make_streaming_handler(local.worker), "return_aggregate_stream": True}).rp_app
    )
    parts = ok(client, {"text": "Live from the studio.", "stream": True, "output_key": "output/live/show.flac", **FAST})
    *chunks, whole = parts
    assert [c["audio"]["key"] for c in chunks] == [f"output/live/show/chunk-{i:03d}.flac" for i in range(len(chunks))]
    assert chunks and whole["type"] == "result" and whole["audio"]["key"] == "output/live/show.flac"
    assert duration_of((local.root / "output/live/show.flac").read_bytes()) == pytest.approx(
        whole["duration"], abs=1e-3
    )


def test_align_returns_its_files_inline_when_asked(local):
    clip = base64.b64encode(encode(speech_like(2.0))).decode()
    out = ok(local.client, {"operation": "align", "text": "Two seconds.", "audio_base64": clip,
                            "subtitles": {"formats": ["json"]}, "return_base64": True})  # fmt: skip
    stored = (local.root / out["subtitles"]["json"]["key"]).read_bytes()
    assert base64.b64decode(out["subtitles"]["json"]["base64"]) == stored
    assert [w["word"] for w in json.loads(stored)] == ["Two", "seconds."]


def test_the_old_name_of_s3_extra_buckets_still_works(monkeypatch):
    monkeypatch.delenv("S3_EXTRA_BUCKETS", raising=False)
    monkeypatch.setenv("S3_FETCH_BUCKETS", "voices-archive, shared ")
    assert Settings().extra_buckets() == ["voices-archive", "shared"]
    monkeypatch.setenv("S3_EXTRA_BUCKETS", "new-name")
    assert Settings().extra_buckets() == ["new-name"]


def test_streamed_chunks_count_towards_the_inline_limit(worker, tmp_path, monkeypatch):
    """With return_aggregate_stream, RunPod answers the partial results and the result in one list."""
    from tts_worker.handler import make_streaming_handler

    w = local_worker(worker, tmp_path / "disk", runpod_endpoint_id="ep-test")
    client = TestClient(WorkerAPI({"handler": make_streaming_handler(w), "return_aggregate_stream": True}).rp_app)
    job = {"text": "Streamed and inline.", "stream": True, "word_timings": False, **FAST}
    *chunks, whole = ok(client, job)
    assert chunks and all("base64" in c["audio"] for c in chunks) and "base64" in whole["audio"]
    alone = len(json.dumps(whole))
    monkeypatch.setattr(outputs, "RESULT_MAX_BYTES", alone + 100)  # the result fits, not with its chunks
    reply = client.post("/runsync", json={"input": job}).json()
    # The local API lists a generator's yields, the error last (on RunPod the job is FAILED).
    error = reply["output"][-1]["error"] if reply.get("output") else reply["error"]
    assert error.startswith("result_too_large: result: with its files inline the result with the chunks streamed")
