"""The voice library's storage operations, on local storage and on a real S3 server (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3server import SeaweedS3, s3_server, s3_settings
from tts_worker import voice_import
from tts_worker.audio import trim_at_pause
from tts_worker.errors import InvalidAudio, InvalidInput, StorageError, VoiceNotFound
from tts_worker.references import ReferenceCache
from tts_worker.s3 import S3Storage
from tts_worker.storage import LocalStorage, StoredObject
from tts_worker.voice_import import import_seed
from tts_worker.voices import VoiceLibrary, reference_key

__all__ = ["s3_server"]

pytestmark = pytest.mark.timeout(60)

RATE = 24_000


def speech_like(
    seconds: float, rate: int = RATE, *, word: float = 1.5, gap: float = 0.3, channels: int = 1
) -> np.ndarray:
    """Tone bursts ("words") of `word` s separated by `gap` s of near-silence: pauses at known places."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.mod(t, word + gap) < word)
    wave = wave + 1e-4 * np.random.default_rng(0).standard_normal(len(t))  # room noise in the pauses
    wave = wave.astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def encode(wave: np.ndarray, rate: int = RATE, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt)
    return buf.getvalue()


def pauses_at(seconds: float, *, word: float = 1.5, gap: float = 0.3) -> list[tuple[float, float]]:
    period = word + gap
    return [(k * period + word, (k + 1) * period) for k in range(int(seconds / period) + 1)]


@pytest.fixture(scope="module")
def voices_bucket(s3_server: SeaweedS3) -> str:
    return s3_server.create_bucket(f"voices-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path: Path):
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    s3 = S3Storage.from_settings(s3_settings(server, bucket=request.getfixturevalue("voices_bucket")))
    s3.delete_many(o.key for o in s3.list(""))  # an empty library per test
    return s3


@pytest.fixture
def library(storage) -> VoiceLibrary:
    return VoiceLibrary(storage)


# -- upload -------------------------------------------------------------------------------------------


def test_upload_converts_to_mono_24k_and_writes_a_sidecar(library: VoiceLibrary, storage):
    stereo_44k = encode(speech_like(4.0, 44_100, channels=2), 44_100, "FLAC")
    info = library.upload("my-voice.wav", stereo_44k, "  Hello   there, world. ", "en")
    assert info.name == "my-voice" and info.ref_text == "Hello there, world." and info.language == "en"
    assert info.sample_rate == RATE and info.duration == pytest.approx(4.0, abs=0.01) and info.trimmed_from is None

    wav = storage.get("voices/my-voice.wav")
    data, rate = sf.read(io.BytesIO(wav))
    assert rate == RATE and data.ndim == 1 and len(data) == pytest.approx(4.0 * RATE, abs=2)
    assert sf.info(io.BytesIO(wav)).subtype == "PCM_16"
    sidecar = json.loads(storage.get("voices/my-voice.json"))
    assert sidecar["sha256"] == hashlib.sha256(wav).hexdigest() == info.sha256
    assert sidecar["ref_text_source"] == "given" and sidecar["replaced_ref_text"] is None
    # The original layout's transcript too, so the original API's tools read the bucket as they did.
    assert storage.get("voices/my-voice.txt") == b"Hello there, world.\n"
    assert {k: sidecar[k] for k in ("ref_text", "language", "sample_rate")} == {
        "ref_text": "Hello there, world.",
        "language": "en",
        "sample_rate": RATE,
    }
    assert sidecar["created"].endswith("+00:00")

    voice = library.get("my-voice")  # the synthesis path reads it back
    assert voice.audio == wav and voice.ref_text == "Hello there, world."


def test_an_existing_name_is_replaced_only_when_asked(library: VoiceLibrary):
    first = library.upload("anna", encode(speech_like(3.0)), "First text.", "en")
    with pytest.raises(InvalidInput, match=r"^voice_name: a voice named 'anna' already exists; set replace"):
        library.upload("anna", encode(speech_like(5.0)), "The second text.", "en")
    assert library.get("anna").ref_text == "First text."
    second = library.upload("anna", encode(speech_like(5.0)), "The second text.", "de", replace=True)
    assert second.sha256 != first.sha256
    assert library.get("anna").ref_text == "The second text." and library.info("anna").language == "de"


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "", ".hidden", "x" * 65, "café", "default", "a..b"])
def test_bad_names_are_refused(tmp_path: Path, name: str):
    library = VoiceLibrary(LocalStorage(tmp_path))  # names are checked before storage is touched
    with pytest.raises(InvalidInput, match=r"^voice_name: "):
        library.upload(name, encode(speech_like(3.0)), "Text.", "en")


def test_unusable_audio_is_refused_and_nothing_stored(library: VoiceLibrary, storage):
    with pytest.raises(InvalidAudio, match=r"^voice_file: not a decodable audio file"):
        library.upload("junk", b"<html>not audio</html>" * 50, "Text.", "en")
    with pytest.raises(InvalidAudio, match=r"^voice_file: the clip is 0.50 s long; at least 1 s is needed"):
        library.upload("short", encode(speech_like(0.5)), "Text.", "en")
    with pytest.raises(InvalidAudio, match=r"^voice_file: the clip is silent"):
        library.upload("silent", encode(np.zeros(RATE * 2, dtype=np.float32)), "Text.", "en")
    with pytest.raises(InvalidInput, match=r"^ref_text: is 1001 characters long"):
        library.upload("wordy", encode(speech_like(3.0)), "x" * 1001, "en")
    assert storage.list("voices/") == []


# -- trimming -----------------------------------------------------------------------------------------


def test_trim_cuts_in_the_last_pause_before_the_limit():
    wave = speech_like(20.0)
    clip = trim_at_pause(wave, RATE, 12.0)
    end = len(clip) / RATE
    assert 10.0 < end <= 12.0
    assert any(a <= end <= b for a, b in pauses_at(20.0)), end  # inside a pause, not mid-"word"
    assert np.array_equal(clip, wave[: len(clip)])
    assert (
        trim_at_pause(wave[: 11 * RATE], RATE, 12.0) is not None
        and len(trim_at_pause(wave[: 11 * RATE], RATE)) == 11 * RATE
    )


def test_trim_without_a_pause_is_a_hard_cut_with_a_fade():
    t = np.arange(15 * RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    clip = trim_at_pause(tone, RATE, 12.0)
    assert len(clip) == 12 * RATE and abs(clip[-1]) < 1e-3


def test_a_trimmed_clip_refuses_its_old_text_without_a_transcriber(library: VoiceLibrary, storage):
    long_clip = encode(speech_like(20.0))
    with pytest.raises(InvalidInput) as caught:
        library.upload("long", long_clip, "The text of all twenty seconds.", "en")
    message = caught.value.message
    assert message.startswith("ref_text: the clip was trimmed from 20.0 s to 1")
    assert "no longer matches the audio; upload a clip of at most 12 s with its text" in message
    assert storage.list("voices/") == []


def test_a_trimmed_clip_is_transcribed_again(library: VoiceLibrary):
    heard: list[tuple[int, int]] = []

    def transcribe(samples: np.ndarray, rate: int) -> str:
        heard.append((len(samples), rate))
        return " what remains after the trim, spoken   calmly and clearly "

    info = library.upload("long", encode(speech_like(20.0)), "The stale text of all twenty seconds.", "en",
                          transcribe=transcribe)  # fmt: skip
    assert heard and heard[0][1] == RATE and heard[0][0] <= 12 * RATE
    assert info.ref_text == "what remains after the trim, spoken calmly and clearly"
    assert info.trimmed_from == pytest.approx(20.0)
    assert info.duration == pytest.approx(heard[0][0] / RATE, abs=1e-3)
    assert library.get("long").ref_text == "what remains after the trim, spoken calmly and clearly"
    # The replaced text is said and recorded, never silently dropped.
    assert info.ref_text_source == "transcribed"
    assert library.info("long").replaced_ref_text == "The stale text of all twenty seconds."
    [warning] = info.warnings()
    assert warning.startswith(f"ref_text: the clip was trimmed from 20 s to {info.duration:g} s at a pause")


def test_a_text_that_cannot_be_the_clips_is_refused_at_upload(library: VoiceLibrary, storage):
    """The rule synthesis applies to a reference (engine.check_reference_text), applied when the voice is
    stored: the library never holds a voice that every synthesis would refuse."""
    with pytest.raises(InvalidInput, match=r"^ref_text: 2 characters for 10.0 s of reference audio is too short"):
        library.upload("terse", encode(speech_like(10.0)), "Hi", "en")
    with pytest.raises(InvalidInput, match=r"^ref_text: .* is too long"):
        library.upload("wordy", encode(speech_like(2.0)), "word " * 100, "en")
    with pytest.raises(InvalidAudio, match=r"^voice_file: the speech recognition heard 2 characters in 10.0 s"):
        library.upload("misheard", encode(speech_like(10.0)), None, "en", transcribe=lambda s, r: "Hm")
    assert storage.list("voices/") == []


def test_missing_text_needs_a_transcriber(library: VoiceLibrary):
    with pytest.raises(InvalidInput, match=r"^ref_text: is required"):
        library.upload("quiet", encode(speech_like(3.0)), None, "en")
    assert (
        library.upload("quiet", encode(speech_like(3.0)), "", "en", transcribe=lambda s, r: "Heard it all.").ref_text
        == "Heard it all."
    )
    with pytest.raises(InvalidAudio, match="no speech was recognised"):
        library.upload("mute", encode(speech_like(3.0)), None, "en", transcribe=lambda s, r: "  ")


# -- nothing half-written -----------------------------------------------------------------------------


class SidecarFails:
    """A storage whose sidecar writes fail: the moment between audio and sidecar."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name

    def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        if key.endswith(".json"):
            raise StorageError(f"could not upload {key} (connection failed)")
        return self.inner.put(key, data, content_type)

    def __getattr__(self, attr: str):
        return getattr(self.inner, attr)


def test_a_failed_sidecar_write_leaves_no_usable_voice(storage):
    failing = VoiceLibrary(SidecarFails(storage))  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        failing.upload("half", encode(speech_like(3.0)), "Some text here.", "en")
    assert storage.list("voices/") == []  # the audio was removed again
    with pytest.raises(VoiceNotFound):
        VoiceLibrary(storage).get("half")

    # Replacing: the old voice is unpublished before the new audio lands, so old text never pairs with it.
    library = VoiceLibrary(storage)
    library.upload("both", encode(speech_like(3.0)), "The old text.", "en")
    with pytest.raises(StorageError):
        failing.upload("both", encode(speech_like(4.0)), "The new text.", "en", replace=True)
    with pytest.raises(VoiceNotFound):
        library.get("both")
    assert library.list().voices == []


# -- list, delete -------------------------------------------------------------------------------------


def test_list_is_paginated_with_metadata(library: VoiceLibrary, storage):
    for name in ["echo", "alpha", "delta", "charlie", "bravo"]:
        library.upload(name, encode(speech_like(2.0)), f"I am {name}.", "en")
    storage.put("voices/seed.wav", encode(speech_like(2.0)), "audio/wav")  # the original API's layout
    storage.put("voices/seed.txt", b"Seed text.\n", "text/plain")
    storage.put("voices/orphan.wav", encode(speech_like(2.0)), "audio/wav")  # audio without text: not a voice

    pages, cursor = [], None
    while True:
        page = library.list(limit=2, cursor=cursor)
        pages.append([v.name for v in page.voices])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == [["alpha", "bravo"], ["charlie", "delta"], ["echo", "seed"]]
    first = library.list(limit=1).voices[0]
    assert (first.ref_text, first.language, first.sample_rate) == ("I am alpha.", "en", RATE)
    assert first.duration == pytest.approx(2.0) and len(first.sha256 or "") == 64
    seed = library.info("seed")
    assert seed is not None and seed.ref_text == "Seed text." and seed.sha256 is None
    with pytest.raises(InvalidInput, match=r"^limit: "):
        library.list(limit=0)
    with pytest.raises(InvalidInput, match=r"^cursor: "):
        library.list(cursor="../x")


def test_delete_removes_the_voice(library: VoiceLibrary, storage):
    library.upload("gone", encode(speech_like(2.0)), "Bye for now.", "en")
    library.delete("gone.wav")
    assert storage.list("voices/") == []
    with pytest.raises(VoiceNotFound):
        library.get("gone")
    with pytest.raises(VoiceNotFound, match=r"^voice_name: no voice named 'gone'"):
        library.delete("gone")


# -- seed import --------------------------------------------------------------------------------------


def seed_dir(tmp_path: Path) -> Path:
    seed = tmp_path / "Voices"
    seed.mkdir(parents=True)
    (seed / "narrator.wav").write_bytes(encode(speech_like(3.0, 16_000), 16_000))
    (seed / "narrator.txt").write_text("Once upon a time.\n", encoding="utf-8")
    (seed / "host.wav").write_bytes(encode(speech_like(2.5)))
    (seed / "host.txt").write_text("Welcome back.", encoding="utf-8")
    (seed / "untold.wav").write_bytes(encode(speech_like(2.0)))  # no transcript
    (seed / "bad name!.wav").write_bytes(encode(speech_like(2.0)))
    (seed / "bad name!.txt").write_text("x", encoding="utf-8")
    (seed / "notes.md").write_text("ignored", encoding="utf-8")
    return seed


def test_import_seed_layout(library: VoiceLibrary, tmp_path: Path):
    report = import_seed(library, seed_dir(tmp_path), language="en")
    assert report.imported == ["host", "narrator"]
    assert set(report.failed) == {"bad name!.wav", "untold.wav"}
    assert report.failed["untold.wav"].startswith("ref_text: is required")
    assert library.get("narrator").ref_text == "Once upon a time."
    again = import_seed(library, seed_dir(tmp_path / "again"))
    assert "already exists" in again.failed["host.wav"]


def test_import_command(tmp_path: Path, monkeypatch):
    for name in ("S3_BUCKET", "AWS_ENDPOINT_URL", "BUCKET_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "no-models"))  # untold.wav has no text and no ASR to make one
    seed = seed_dir(tmp_path)
    assert voice_import.main(["import", str(seed)]) == 1  # two of the files can't be imported
    assert sorted(p.name for p in (tmp_path / "store" / "voices").iterdir()) == [
        "host.json",
        "host.txt",
        "host.wav",
        "narrator.json",
        "narrator.txt",
        "narrator.wav",
    ]
    for bad in ("bad name!", "untold"):
        (seed / f"{bad}.wav").unlink()
    assert voice_import.main(["import", str(seed), "--replace"]) == 0


def test_import_transcribes_clips_without_text_and_can_write_the_transcripts(library: VoiceLibrary, tmp_path: Path):
    seed = seed_dir(tmp_path)
    (seed / "bad name!.wav").unlink()
    heard: list[float] = []

    def transcribe(samples: np.ndarray, rate: int) -> str:
        heard.append(len(samples) / rate)
        return "A transcript of this clip."

    report = import_seed(library, seed, language="en", transcribe=transcribe, write_txt=True)
    assert report.imported == ["host", "narrator", "untold"] and report.failed == {}
    assert report.transcribed == ["untold"] and heard == [pytest.approx(2.0)]  # only the clip without text
    assert library.get("untold").ref_text == "A transcript of this clip."
    assert library.info("untold").ref_text_source == "transcribed"
    assert (seed / "untold.txt").read_text(encoding="utf-8") == "A transcript of this clip.\n"
    assert (seed / "host.txt").read_text(encoding="utf-8") == "Welcome back."  # the user's files are untouched


def _import_in_a_process(seed: Path, env: dict[str, str]) -> tuple[int, bool, str]:
    """`voice_import.main` in a fresh interpreter: (exit code, whether torch got imported, log)."""
    import subprocess
    import sys

    code = (
        "import sys; from tts_worker.voice_import import main; rc = main(['import', sys.argv[1]]); "
        "print('TORCH', 'torch' in sys.modules); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(seed)], env=env, capture_output=True, text=True, timeout=300)
    return out.returncode, "TORCH True" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_import_loads_the_baked_asr_model_only_when_a_clip_needs_it(tiny_model_dir: Path, tmp_path: Path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "AWS_", "BUCKET_"))}
    env.update(MODEL_DIR=str(tiny_model_dir), STORAGE_DIR=str(tmp_path / "store"), DEVICE="cpu")
    seed = seed_dir(tmp_path)
    (seed / "bad name!.wav").unlink()
    (seed / "untold.wav").rename(tmp_path / "untold.wav")
    rc, torch_loaded, log = _import_in_a_process(seed, env)
    assert rc == 0 and not torch_loaded, log  # every clip has its text: no model code at all

    (tmp_path / "untold.wav").rename(seed / "untold.wav")
    rc, torch_loaded, log = _import_in_a_process(seed, {**env, "STORAGE_DIR": str(tmp_path / "store2")})
    assert torch_loaded and "1 clips need a transcript: loading the speech recognition model" in log
    # The tiny random ASR hears nothing or babble, which the upload refuses; the real model's text is kept.
    assert rc == 1 and "untold.wav not imported: voice_file: " in log, log
    assert "no speech was recognised" in log or "the speech recognition heard" in log
    assert sorted(p.name for p in (tmp_path / "store2" / "voices").iterdir()) == [
        "host.json", "host.txt", "host.wav", "narrator.json", "narrator.txt", "narrator.wav"
    ]  # fmt: skip


# -- the reference cache ------------------------------------------------------------------------------


def test_reference_cache_is_a_bounded_lru():
    cache: ReferenceCache[str] = ReferenceCache(max_entries=2)
    made: list[str] = []

    def make(value: str):
        return lambda: made.append(value) or value

    assert cache.get_or_create("a", make("A")) == "A"
    assert cache.get_or_create("a", make("A again")) == "A"  # warm: not made again
    cache.get_or_create("b", make("B"))
    cache.get("a")  # a is now the most recently used
    cache.get_or_create("c", make("C"))  # evicts b, the least recently used
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C"
    assert made == ["A", "B", "C"]
    off: ReferenceCache[str] = ReferenceCache(max_entries=0)
    off.put("a", "A")
    assert off.get("a") is None and len(off) == 0


def test_cache_key_comes_from_the_sidecar_and_follows_content(library: VoiceLibrary, storage):
    info = library.upload("cached", encode(speech_like(2.0)), "Cache me.", "en")
    key = library.cache_key("cached")
    assert key == reference_key(info.sha256 or "", "Cache me.")
    assert library.cache_key(None) is None and library.cache_key("nobody") is None
    library.upload("cached", encode(speech_like(3.0)), "Cache me.", "en", replace=True)
    assert library.cache_key("cached") not in (None, key)  # new audio, new key: no stale reference
    assert reference_key("abc", "Some  text") == reference_key("abc", "Some text")
    assert reference_key("abc", "Some text") != reference_key("abc", "Other text")


def test_the_voice_import_command_does_not_import_torch():
    """`python -m tts_worker.voices import DIR` manages the library without loading model code."""
    import subprocess
    import sys

    heavy = "('torch', 'f5_tts.model', 'whisperx')"
    code = f"import sys, tts_worker.voice_import; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
