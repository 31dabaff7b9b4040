"""Uploads of one voice name at the same time: exactly one succeeds, the other is refused naming
`voice_name`, and the stored voice's audio and sidecar come from the same upload. Within one worker
(two threads, one library) and between workers (two libraries on one store), on local storage and on a
real S3 server (SeaweedFS on 127.0.0.1, which honours `If-None-Match: *`). Barriers inside the storage
hold the uploads until both are past the point they race at, so every round is a real race."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
import uuid
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from faultproxy import FaultProxy
from s3server import SeaweedS3, s3_server, s3_settings
from tts_worker.errors import InvalidInput, StorageError, VoiceNotFound
from tts_worker.fetch import Fetcher
from tts_worker.handler import make_handler
from tts_worker.pipeline import Worker
from tts_worker.s3 import S3Storage
from tts_worker.storage import LocalStorage, StoredObject
from tts_worker.voices import VoiceLibrary

__all__ = ["s3_server"]

pytestmark = pytest.mark.timeout(180)

ROUNDS = 10


def clip(seconds: float, pitch: float) -> bytes:
    t = np.arange(int(seconds * 24_000)) / 24_000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), 24_000, format="WAV")
    return buf.getvalue()


CLIPS = [clip(2.0, 180), clip(2.6, 240)]


class Meeting:
    """Where the racing uploads wait for each other: after the early existence check (both found the
    name free) and, between workers, just before the conditional create."""

    def __init__(self, parties: int, *, at_create: bool) -> None:
        self.checked = threading.Barrier(parties, timeout=30)
        self.creating = threading.Barrier(parties, timeout=30) if at_create else None
        self.seen = threading.local()


class Racing:
    """A storage (not a fake: every call goes to the real one) that stops each thread at the meeting
    (none: no stops)."""

    def __init__(self, inner, meeting: Meeting | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.meeting = meeting

    def exists(self, key: str) -> bool:
        found = self.inner.exists(key)
        meeting = self.meeting
        # the early check asks for .json, .wav, then .txt: all free for a new name
        if meeting is not None and key.endswith(".txt") and not getattr(meeting.seen, "checked", False):
            meeting.seen.checked = True
            meeting.checked.wait()
        return found

    def put_if_absent(self, key: str, data: bytes, content_type: str) -> StoredObject | None:
        if self.meeting is not None and self.meeting.creating is not None:
            self.meeting.creating.wait()
        return self.inner.put_if_absent(key, data, content_type)

    def __getattr__(self, attr: str):
        return getattr(self.inner, attr)


def race(calls) -> list[object]:
    """Run each call in its own thread at once; their results (or exceptions), in order."""
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results


def assert_one_voice(storage, name: str, winner_sha256: str, winner_text: str) -> None:
    """The stored audio and sidecar are the winner's, and nothing else of either upload is left."""
    wav, sidecar = storage.get(f"voices/{name}.wav"), storage.get(f"voices/{name}.json")
    assert wav is not None and sidecar is not None
    meta = json.loads(sidecar)
    assert hashlib.sha256(wav).hexdigest() == meta["sha256"] == winner_sha256
    assert meta["ref_text"] == winner_text
    assert sorted(o.key for o in storage.list("voices/") if o.key.startswith(f"voices/{name}.")) == [
        f"voices/{name}.json",
        f"voices/{name}.txt",  # the original layout's transcript, written with every upload
        f"voices/{name}.wav",
    ]


@pytest.fixture(params=["local", "s3"])
def stores(request, tmp_path: Path):
    """Two handles on one store, as two workers have: (first, second)."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store"), LocalStorage(tmp_path / "store")
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    bucket = server.create_bucket(f"race-{uuid.uuid4().hex[:12]}")
    settings = s3_settings(server, bucket=bucket)
    return S3Storage.from_settings(settings), S3Storage.from_settings(settings)


@pytest.mark.parametrize("workers", [1, 2])
def test_uploads_of_one_name_at_once_let_exactly_one_succeed(stores, workers: int):
    for r in range(ROUNDS):
        name = f"race-{r}"
        meeting = Meeting(2, at_create=workers == 2)
        if workers == 1:
            shared = VoiceLibrary(Racing(stores[0], meeting))
            libraries = [shared, shared]
        else:
            libraries = [VoiceLibrary(Racing(s, meeting)) for s in stores]
        same = r % 2 == 1  # odd rounds: the very same request twice
        texts = ["Both say this."] * 2 if same else ["Upload zero speaking.", "Upload one speaking."]
        clips = [CLIPS[0]] * 2 if same else CLIPS
        results = race([partial(libraries[i].upload, name, clips[i], texts[i], "en") for i in range(2)])

        won = [i for i, res in enumerate(results) if not isinstance(res, Exception)]
        assert len(won) == 1, results
        loser = results[1 - won[0]]
        assert isinstance(loser, InvalidInput), loser
        assert loser.message.startswith(f"voice_name: a voice named {name!r} already exists; set replace")
        winner = results[won[0]]
        assert_one_voice(stores[0], name, winner.sha256, texts[won[0]])
        assert VoiceLibrary(stores[1]).get(name).ref_text == texts[won[0]]


def test_replacing_uploads_in_one_worker_keep_audio_and_text_together(stores):
    """`replace: true` uploads of one name are serialised within a worker: the last one wins whole."""
    library = VoiceLibrary(stores[0])
    library.upload("both", CLIPS[0], "The first version.", "en")
    for _ in range(3):
        results = race(
            [lambda i=i: library.upload("both", CLIPS[i], f"Replacement {i}.", "en", replace=True) for i in range(2)]
        )
        assert all(not isinstance(r, Exception) for r in results), results
        voice = library.get("both")
        info = library.info("both")
        assert info is not None and hashlib.sha256(voice.audio).hexdigest() == info.sha256
        assert voice.ref_text in ("Replacement 0.", "Replacement 1.")
        assert {r.sha256: r.ref_text for r in results}[info.sha256] == voice.ref_text


def test_audio_and_text_from_different_uploads_are_never_used(stores):
    """Should replacing uploads in two workers interleave, the sidecar's sha256 gives them away."""
    storage = stores[0]
    library = VoiceLibrary(storage)
    library.upload("mixed", CLIPS[0], "Text of the first clip.", "en")
    storage.put("voices/mixed.wav", CLIPS[1], "audio/wav")  # the other upload's audio landed last
    with pytest.raises(VoiceNotFound, match=r"^voice: the stored audio and text of 'mixed' come from different"):
        library.get("mixed")
    library.upload("mixed", CLIPS[1], "Text of the second clip.", "en", replace=True)
    assert library.get("mixed").ref_text == "Text of the second clip."


class SidecarFails(Racing):
    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        if key.endswith(".json"):
            raise StorageError(f"could not upload {key} (connection failed)")
        return self.inner.put(key, data, content_type)


def test_a_failed_upload_does_not_keep_the_name(stores):
    """The winner's sidecar write fails: its audio (the claim) goes again, and the name is free."""
    with pytest.raises(StorageError):
        VoiceLibrary(SidecarFails(stores[0])).upload("freed", CLIPS[0], "Lost in the upload.", "en")
    assert stores[1].list("voices/") == []
    info = VoiceLibrary(stores[1]).upload("freed", CLIPS[1], "Kept in the library.", "en")
    assert_one_voice(stores[0], "freed", info.sha256, "Kept in the library.")


# -- put_if_absent ------------------------------------------------------------------------------------


def test_put_if_absent_creates_once(stores):
    first, second = stores
    created = first.put_if_absent("voices/once.wav", b"first", "audio/wav")
    assert created is not None and created.key == "voices/once.wav" and created.size == 5
    assert second.put_if_absent("voices/once.wav", b"second", "audio/wav") is None
    assert first.get("voices/once.wav") == b"first"
    first.delete("voices/once.wav")  # deleting frees the key again
    assert second.put_if_absent("voices/once.wav", b"third", "audio/wav") is not None
    assert first.get("voices/once.wav") == b"third"
    assert [o.key for o in first.list("voices/")] == ["voices/once.wav"]


def test_put_if_absent_is_atomic_on_local_disk(tmp_path: Path):
    """Eight racers: one file, no partial file left behind."""
    stores = [LocalStorage(tmp_path) for _ in range(8)]
    barrier = threading.Barrier(8, timeout=10)

    def create(i: int):
        barrier.wait()
        return stores[i].put_if_absent("voices/x.wav", f"writer {i}".encode() * 10_000, "audio/wav")

    results = race([lambda i=i: create(i) for i in range(8)])
    won = [i for i, r in enumerate(results) if r is not None]
    assert len(won) == 1, results
    assert (tmp_path / "voices" / "x.wav").read_bytes() == f"writer {won[0]}".encode() * 10_000
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == ["x.wav"]


def test_put_if_absent_without_hard_links_still_refuses_a_taken_key(tmp_path: Path, monkeypatch, caplog):
    import errno
    import os

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    storage = LocalStorage(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tts_worker.storage"):
        assert storage.put_if_absent("voices/y.wav", b"one", "audio/wav") is not None
    assert storage.put_if_absent("voices/y.wav", b"two", "audio/wav") is None
    assert storage.get("voices/y.wav") == b"one" and "no hard links" in caplog.text
    assert sorted(p.name for p in (tmp_path / "voices").iterdir()) == ["y.wav"]


def test_put_if_absent_sends_if_none_match_in_one_put(s3_server: SeaweedS3):
    storage = S3Storage.from_settings(s3_settings(s3_server, s3_multipart_threshold_mb=5))
    sent: list[tuple[str, bytes | None]] = []
    storage.client.meta.events.register(
        "before-send.s3", lambda request, **kw: sent.append((kw["event_name"], request.headers.get("If-None-Match")))
    )
    key = f"voices/big-{uuid.uuid4().hex}.wav"
    big = b"x" * (6 * 1024 * 1024)  # above the multipart threshold: still one conditional PUT
    assert storage.put_if_absent(key, big, "audio/wav") is not None
    assert [(e.rsplit(".", 1)[-1], h) for e, h in sent] == [("PutObject", b"*")]
    assert storage.put_if_absent(key, b"other", "audio/wav") is None
    assert storage.get(key) == big


def test_a_retried_create_whose_first_attempt_landed_is_ours(s3_server: SeaweedS3):
    """The store takes the PUT but its answer is lost; the retry gets 412 for the object we wrote."""
    with FaultProxy(s3_server.s3, delay=3.0) as proxy:
        settings = s3_settings(s3_server, aws_endpoint_url=proxy.endpoint, s3_max_attempts=3, s3_read_timeout=1.0)
        storage = S3Storage.from_settings(settings)
        puts: list[bytes] = []

        def first_put_slow(line: bytes) -> None:
            if line.startswith(b"PUT "):
                puts.append(line)
                proxy.set("delay" if len(puts) == 1 else "pass")

        proxy.on_request = first_put_slow
        key = f"voices/retried-{uuid.uuid4().hex}.wav"
        assert storage.put_if_absent(key, b"mine", "audio/wav") is not None
        assert len(puts) >= 2  # it was retried
        proxy.set("pass")
        other = S3Storage.from_settings(s3_settings(s3_server))
        assert other.put_if_absent(key, b"mine", "audio/wav") is None  # same bytes, someone else: taken


@pytest.mark.parametrize(("status", "code"), [(501, "NotImplemented"), (400, "InvalidArgument")])
def test_a_store_without_conditional_writes_falls_back_to_a_look_up(s3_server: SeaweedS3, caplog, status, code):
    """A store refusing the header: a look-up then a PUT, logged; uploads still work, and within one
    worker a taken name is still refused."""
    with FaultProxy(s3_server.s3) as proxy:
        proxy.deny_code, proxy.deny_status = code, status
        storage = S3Storage.from_settings(s3_settings(s3_server, aws_endpoint_url=proxy.endpoint))
        storage.client.meta.events.register(
            "before-send.s3",
            lambda request, **kw: proxy.set("deny" if request.headers.get("If-None-Match") else "pass"),
        )
        name = f"plain-{uuid.uuid4().hex[:8]}"
        library = VoiceLibrary(storage)
        with caplog.at_level(logging.WARNING, logger="tts_worker.storage"):
            library.upload(name, CLIPS[0], "On a plain store.", "en")
        assert storage.conditional_writes is False and f"refused If-None-Match on PutObject ({code})" in caplog.text
        assert library.get(name).ref_text == "On a plain store."
        results = race([lambda i=i: library.upload(name, CLIPS[i], f"Again {i}.", "en") for i in range(2)])
        assert all(isinstance(r, InvalidInput) and "already exists" in r.message for r in results)


# -- through the handler ------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def two_workers(request, worker, tmp_path: Path):
    """Two workers (own storage client, own library) on one store, sharing the loaded models; their
    storage is `Racing`, without a meeting until a test sets one."""
    if request.param == "local":
        stores = [LocalStorage(tmp_path / "store") for _ in range(2)]
        settings = worker.settings
    else:
        server: SeaweedS3 = request.getfixturevalue("s3_server")
        settings = s3_settings(server, bucket=server.create_bucket(f"jobs-{uuid.uuid4().hex[:12]}"))
        stores = [S3Storage.from_settings(settings) for _ in range(2)]
    return [Worker(settings, worker.engine, worker.aligner, Racing(s), Fetcher(settings, s)) for s in stores]


@pytest.mark.parametrize("same_worker", [True, False])
def test_upload_voice_jobs_of_one_name_at_once(two_workers, same_worker: bool):
    handlers = [make_handler(two_workers[0])] * 2 if same_worker else [make_handler(w) for w in two_workers]
    for r in range(ROUNDS):
        meeting = Meeting(2, at_create=not same_worker)
        for w in two_workers:
            w.storage.meeting = meeting
        jobs = [
            {"id": f"up-{r}-{i}", "input": {"operation": "upload_voice", "voice_name": f"job-race-{r}",
                                            "voice_base64": base64.b64encode(CLIPS[i]).decode(),
                                            "ref_text": f"Job {i} speaking.", "language": "en"}}
            for i in range(2)
        ]  # fmt: skip

        results = race([partial(handlers[i], jobs[i]) for i in range(2)])
        won = [i for i, res in enumerate(results) if "error" not in res]
        assert len(won) == 1, results
        error = results[1 - won[0]]["error"]
        assert error == (
            f"invalid_input: voice_name: a voice named 'job-race-{r}' already exists; set replace to true to "
            "overwrite it"
        )
        voice = results[won[0]]["voice"]
        assert_one_voice(two_workers[0].storage, f"job-race-{r}", voice["sha256"], f"Job {won[0]} speaking.")


def test_workers_keep_serving_after_a_refused_upload(two_workers):
    handler = make_handler(two_workers[1])
    job = {"operation": "upload_voice", "voice_name": "after", "ref_text": "Still here.",
           "voice_base64": base64.b64encode(CLIPS[0]).decode()}  # fmt: skip
    assert "error" not in handler({"id": "a", "input": job})
    assert handler({"id": "b", "input": job})["error"].startswith("invalid_input: voice_name: ")
    listed = handler({"id": "c", "input": {"operation": "list_voices"}})
    assert [v["name"] for v in listed["voices"]] == ["after"]
