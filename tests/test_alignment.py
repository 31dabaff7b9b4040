"""The alignment plumbing on the tiny random models `bake_models.py --tiny` writes, loaded by the
worker's own loader. Random weights make timings meaningless, so these check structure: one timing
per input word in order, original spellings, bounds, chunk ranges, interpolation flags, errors.
Timing accuracy is tested on real speech with known word boundaries (tests/test_subtitles.py).
Every test here runs with outbound connections refused."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from tts_worker import audio
from tts_worker.alignment import Aligner, checked_components
from tts_worker.chunking import split_text
from tts_worker.errors import InvalidInput, ModelDirError, ModelError
from tts_worker.manifest import load_verified

SR = 24_000
TEXT = "Hello, World! I have 42 cats & 2 dogs — café déjà-vu. Don’t stop 東京 now."


def _refuse(*args: object, **kwargs: object) -> None:
    raise OSError("network access in a test")


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    """Any outbound connection fails loudly: loading and running must not touch the network."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        yield


@pytest.fixture(scope="module")
def aligner(tiny_model_dir: Path, offline: None) -> Aligner:
    return Aligner.load(tiny_model_dir, load_verified(tiny_model_dir), "cpu")


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def chunks_for(text: str, cut: int, sample_cut: int, n_samples: int) -> list[tuple[int, int, int, int]]:
    """Two chunks split at character `cut` (a space) and sample `sample_cut`, as the synthesis records them."""
    return [(0, cut, 0, sample_cut), (cut + 1, len(text), sample_cut, n_samples)]


def assert_well_formed(timings: list, text: str, duration: float) -> None:
    assert [t["word"] for t in timings] == text.split()
    previous_end = 0.0
    for t in timings:
        assert 0.0 <= t["start"] <= t["end"] <= duration, t
        assert t["start"] >= previous_end, t
        previous_end = t["end"]


def test_one_timing_per_word_in_order_with_original_spelling(aligner: Aligner, offline: None) -> None:
    wave = noise(6.0)
    cut = TEXT.index(" 2 dogs")
    timings = aligner.align(wave, SR, TEXT, chunks_for(TEXT, cut, 3 * SR, len(wave)))

    assert_well_formed(timings, TEXT, 6.0)
    assert {t["word"] for t in timings} >= {"Hello,", "World!", "café", "déjà-vu.", "Don’t", "東京"}


def test_unplaceable_tokens_are_interpolated_and_flagged(aligner: Aligner, offline: None) -> None:
    wave = noise(6.0)
    timings = {t["word"]: t for t in aligner.align(wave, SR, TEXT, [])}

    for word in ("42", "&", "2", "—", "東京"):
        assert timings[word]["interpolated"] is True, word
        assert timings[word]["score"] is None
    # letters the English aligner knows, also behind punctuation, accents and curly apostrophes
    for word in ("Hello,", "cats", "café", "déjà-vu.", "Don’t"):
        assert timings[word]["interpolated"] is False, word
        assert isinstance(timings[word]["score"], float)


def test_words_stay_inside_their_chunk(aligner: Aligner, offline: None) -> None:
    text = "one two three four five six seven eight nine"
    wave = noise(9.0)
    four, seven = text.index("four"), text.index("seven")
    chunks = [(0, four - 1, 0, 3 * SR), (four, seven - 1, 3 * SR, 6 * SR), (seven, len(text), 6 * SR, 9 * SR)]
    timings = aligner.align(wave, SR, text, chunks)

    assert_well_formed(timings, text, 9.0)
    bounds = [(0.0, 3.0)] * 3 + [(3.0, 6.0)] * 3 + [(6.0, 9.0)] * 3
    for t, (lo, hi) in zip(timings, bounds, strict=True):
        assert lo <= t["start"] <= t["end"] <= hi, t


def test_a_chunk_is_aligned_from_its_own_samples_only(aligner: Aligner, offline: None) -> None:
    """Lengthening the first chunk by half a second moves the second chunk's words by exactly that:
    errors in one chunk never accumulate into the next."""
    text = "first chunk here second chunk words"
    cut = text.index(" second")
    second = noise(3.0, seed=2)
    short = np.concatenate([noise(2.0, seed=1), second])
    long = np.concatenate([noise(2.5, seed=3), second])

    a = aligner.align(short, SR, text, chunks_for(text, cut, 2 * SR, len(short)))
    b = aligner.align(long, SR, text, chunks_for(text, cut, int(2.5 * SR), len(long)))

    for ta, tb in zip(a[3:], b[3:], strict=True):
        assert tb["start"] == pytest.approx(ta["start"] + 0.5, abs=0.0015)
        assert tb["end"] == pytest.approx(ta["end"] + 0.5, abs=0.0015)


def test_a_chunk_with_nothing_to_align_is_spread_over_its_range(aligner: Aligner, offline: None) -> None:
    text = "Call 555 0199 & ask for Bob"
    cut = text.index(" ask")
    wave = noise(4.0)
    timings = aligner.align(wave, SR, text, chunks_for(text, cut, 2 * SR, len(wave)))

    assert_well_formed(timings, text, 4.0)
    digits = timings[1:4]
    assert all(t["interpolated"] for t in digits)
    assert digits[-1]["end"] <= 2.0
    assert all(t["end"] > t["start"] for t in digits)  # each gets some time, none is zero-length


def test_a_word_cut_across_chunks_is_timed_across_them(aligner: Aligner, offline: None) -> None:
    """A 300-character run with no space is cut over several chunks by the chunker: its timing starts in
    the first of them and ends in the last, and the words after it stay in order inside their own chunk.
    It used to be timed inside its first chunk only."""
    long = "https://example.com/" + "abcdefghij" * 28
    text = f"Please open {long} and read the page."
    cut = split_text(text, 120)
    chunks = [(c.start, c.end, 2 * i * SR, 2 * (i + 1) * SR) for i, c in enumerate(cut)]  # 2 s each
    wave = noise(2.0 * len(cut))
    timings = aligner.align(wave, SR, text, chunks)

    assert_well_formed(timings, text, 2.0 * len(cut))
    index = text.split().index(long)
    reached = [i for i, c in enumerate(cut) if c.start < text.index(long) + len(long) and c.end > text.index(long)]
    assert len(reached) == 3
    word = timings[index]
    assert 2.0 * reached[0] <= word["start"] <= 2.0 * (reached[0] + 1)
    assert 2.0 * reached[-1] < word["end"] <= 2.0 * (reached[-1] + 1)  # inside the last chunk it reaches
    for t in timings[index + 1 :]:  # "and read the page." share that last chunk
        assert 2.0 * reached[-1] <= t["start"] <= t["end"] <= 2.0 * (reached[-1] + 1), t


def test_whole_audio_is_one_chunk_without_chunks(aligner: Aligner, offline: None) -> None:
    wave = noise(3.0)
    timings = aligner.align(wave, SR, "  just   some\nwords\t", [])

    assert_well_formed(timings, "just some words", 3.0)
    assert aligner.align(wave, SR, "   ", []) == []


def test_unbaked_language_is_invalid_input_naming_the_field(aligner: Aligner, offline: None) -> None:
    with pytest.raises(InvalidInput, match=r"^language: .*'de'.*baked: en"):
        aligner.align(noise(1.0), SR, "hallo welt", [], language="de")
    with pytest.raises(InvalidInput, match=r"^language: "):
        aligner.transcribe(noise(1.0), SR, language="xx")


def test_a_failure_in_the_model_is_a_model_error(aligner: Aligner, offline: None, monkeypatch) -> None:
    import whisperx

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(whisperx, "align", broken)
    with pytest.raises(ModelError) as info:
        aligner.align(noise(1.0), SR, "hello", [])
    assert info.value.refresh_worker
    assert "CUDA" not in info.value.message


def test_transcribe_speech_offline(aligner: Aligner, offline: None) -> None:
    data = files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav").read_bytes()
    samples, rate = audio.decode(data, field="voice")

    detected = aligner.transcribe(samples, rate)  # language detection on the multilingual model
    english = aligner.transcribe(samples, rate, language="en")

    assert isinstance(detected, str) and isinstance(english, str)
    assert english == " ".join(english.split())  # random words, but one clean line
    assert aligner.transcribe(np.zeros(SR, dtype=np.float32), SR, language="en") == ""  # VAD: no speech


def test_every_baked_alignment_file_is_in_the_manifest(tiny_model_dir: Path) -> None:
    manifest = load_verified(tiny_model_dir, checksums=True)
    components = checked_components(manifest)
    dirs = [spec.dir for spec in components.align.values()] + [components.nltk_data.dir]
    dirs += [components.asr.dir] if components.asr else []
    on_disk = {str(p.relative_to(tiny_model_dir)) for d in dirs for p in (tiny_model_dir / d).rglob("*") if p.is_file()}

    assert on_disk <= set(manifest.files)
    assert f"{components.asr.dir}/tokenizer.json" in on_disk  # else faster-whisper fetches one


def test_missing_punkt_data_for_a_language_stops_the_worker(tiny_model_dir: Path) -> None:
    manifest = load_verified(tiny_model_dir)
    align = dict(manifest.components.align)
    align["de"] = align["en"]
    broken = manifest.model_copy(update={"components": manifest.components.model_copy(update={"align": align})})

    with pytest.raises(ModelDirError, match=r"punkt_tab.*german"):
        checked_components(broken)


def test_loading_speech_recognition_leaves_torch_threads_alone(tiny_model_dir: Path, offline: None):
    """CTranslate2 resized torch's thread pool on load, slowing synthesis in that thread."""
    import torch

    from tts_worker.alignment import _load_asr, checked_components

    components = checked_components(load_verified(tiny_model_dir))
    assert components.asr is not None
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _load_asr(tiny_model_dir, components.asr, "cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
