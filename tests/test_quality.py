"""The quality guard at both levels the issue asks for.

The retry loop (retakes.Retakes) with deterministic judges passed in: retry counts, the seed schedule,
the best take, reproducibility, check/retry/off, cancellation, streaming's per-chunk variant, and the
real Batcher on the tiny engine. The real judge (quality.AsrJudge) on the tiny random models, whose ASR
transcribes noise, so every chunk fails: fields, bounded attempts, progress. The judge's parts on known
input: text comparison on real text pairs, audio sanity on synthetic waves, alignment signals on
synthetic word timings.
"""

from __future__ import annotations

import time
from concurrent.futures import Future

import numpy as np
import pytest
import torch

from tts_worker import audio, quality, tts
from tts_worker.batching import Batcher
from tts_worker.comparison import Comparison, comparable, word_error_rate
from tts_worker.options import QualityRequest
from tts_worker.quality import AsrJudge, Loudness, Policy, Verdict
from tts_worker.retakes import Retakes, attempt_seed
from tts_worker.settings import DEFAULT_MAX_ERROR_RATE, Settings
from tts_worker.voices import default_voice
from tts_worker.words import WordTiming

SR = tts.SAMPLE_RATE
PARAMS = tts.SamplingParams(nfe_steps=2)
# Long enough (over four words) that the short-input rule leaves their speed alone.
TEXTS = ["The first chunk has a few words.", "A second chunk, with some more words.", "The third and last one."]


# -- helpers ----------------------------------------------------------------------------------------


def fake_ref() -> tts.Reference:
    return tts.Reference(audio=torch.zeros(1, SR), text="Ten bytes. ", rms=0.1, seconds=1.0)


def fake_gens(seed: int, texts: list[str] = TEXTS) -> list[tts.Generation]:
    return [tts.Generation(fake_ref(), text, PARAMS, (seed + i) % 2**32) for i, text in enumerate(texts)]


def take_of(gen: tts.Generation) -> tts.ChunkAudio:
    """A take that is a function of its generation: its wave holds the seed (two exact 16-bit halves)."""
    return tts.ChunkAudio(np.array([gen.seed >> 16, gen.seed & 0xFFFF], dtype=np.float32), 0.0, 0.0)


def seed_in(take: tts.ChunkAudio) -> int:
    return int(take.wave[0]) << 16 | int(take.wave[1])


class Submitter:
    """A submit function whose futures resolve at once (or never, with `hold`); records what it got."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[list[tts.Generation]] = []
        self.futures: list[Future[tts.ChunkAudio]] = []
        self.hold = hold

    def __call__(self, gens: list[tts.Generation]) -> list[Future[tts.ChunkAudio]]:
        self.calls.append(list(gens))
        out = []
        for g in gens:
            future: Future[tts.ChunkAudio] = Future()
            if not self.hold:
                future.set_result(take_of(g))
            out.append(future)
        self.futures += out
        return out

    def seeds(self) -> list[list[int]]:
        return [[g.seed for g in call] for call in self.calls]


class SeedJudge:
    """Fails the seeds it is told to (with the given error rates, default 1), passes the rest."""

    def __init__(self, fail: dict[int, float] | set[int]) -> None:
        self.fail = fail if isinstance(fail, dict) else dict.fromkeys(fail, 1.0)
        self.calls: list[tuple[int, int]] = []

    def __call__(self, index: int, take: tts.ChunkAudio, text: str) -> Verdict:
        seed = seed_in(take)
        self.calls.append((index, seed))
        if seed in self.fail:
            return Verdict.of(["asr_mismatch"], self.fail[seed], "wrong words")
        return Verdict.of([], 0.0, text)


def retry(attempts: int = 3, max_error_rate: float = 0.2) -> Policy:
    return Policy(mode="retry", max_attempts=attempts, max_error_rate=max_error_rate)


# -- the loop with a deterministic judge --------------------------------------------------------------


def test_a_failed_chunk_is_sampled_again_until_a_take_passes():
    submit, judge, updates = Submitter(), SeedJudge({1, 2}), []
    loop = Retakes(fake_gens(1, TEXTS[:1]), submit, judge, retry(5), updates.append)
    (take,) = loop.settle_all()
    assert submit.seeds() == [[1], [2], [3]]  # one chunk: the schedule is seed, seed + 1, seed + 2
    assert (take.attempt, take.seed, take.accepted) == (3, 3, True)
    assert np.array_equal(take.audio.wave, take_of(loop.generation(0, 3)).wave)
    assert loop.records() == [
        {"attempts": 3, "seed": 3, "error_rate": 0.0, "transcript": TEXTS[0], "passed": True, "reasons": []}
    ]
    assert [u["attempt"] for u in updates] == [1, 2, 3]
    assert updates[1] == {"stage": "synthesis", "chunk": 1, "chunks": 1, "attempt": 2, "passed": False}
    assert loop.summary() == {
        "mode": "retry", "passed": True, "worst_error_rate": 0.0, "retried_chunks": 1, "failed_chunks": [],
    }  # fmt: skip


def test_seed_schedule_never_reuses_another_chunks_first_seed():
    submit = Submitter()
    base = 2**32 - 2  # wraps around
    loop = Retakes(fake_gens(base), submit, SeedJudge(set()), retry(3))
    firsts = [loop.generation(i, 1).seed for i in range(3)]
    assert firsts == [(base + i) % 2**32 for i in range(3)]  # attempt 1 is today's seed + chunk index
    every = [loop.generation(i, a).seed for i in range(3) for a in (1, 2, 3)]
    assert len(set(every)) == 9
    assert [loop.generation(1, a).seed for a in (1, 2, 3)] == [2**32 - 1, 2, 5]
    assert attempt_seed(7, 2, 3) == 10


def test_all_failing_chunks_keep_their_best_take_and_stop_at_max_attempts():
    # chunk 0 (seeds 10, 13, 16): best is the second take; chunk 1 (11, 14, 17): a tie keeps the earlier
    fail = {10: 0.9, 13: 0.3, 16: 0.5, 11: 0.4, 14: 0.4, 17: 0.8, 12: 0.7, 15: 0.1}
    submit = Submitter()
    loop = Retakes(fake_gens(10), submit, SeedJudge(fail), retry(3))
    takes = loop.settle_all()
    assert [(t.seed, t.accepted) for t in takes] == [(13, False), (11, False), (18, True)]
    assert [r["attempts"] for r in loop.records()] == [3, 3, 3]
    assert [r["error_rate"] for r in loop.records()] == [0.3, 0.4, 0.0]
    assert loop.summary() == {
        "mode": "retry", "passed": False, "worst_error_rate": 0.4, "retried_chunks": 3, "failed_chunks": [0, 1],
    }  # fmt: skip
    # first takes in one call, then each round's retries of all the chunks that failed in one call
    assert submit.seeds() == [[10, 11, 12], [13, 14, 15], [16, 17, 18]]


def test_the_loop_applies_max_error_rate_to_takes_the_judge_passed():
    class Lenient:
        def __call__(self, index: int, take: tts.ChunkAudio, text: str) -> Verdict:
            return Verdict(passed=True, error_rate=0.3, transcript=text, reasons=(), score=-0.3)

    loop = Retakes(fake_gens(0, TEXTS[:1]), Submitter(), Lenient(), retry(2, max_error_rate=0.25))
    loop.settle_all()
    assert loop.records()[0]["attempts"] == 2 and loop.records()[0]["passed"] is False
    loop = Retakes(fake_gens(0, TEXTS[:1]), Submitter(), Lenient(), retry(2, max_error_rate=0.3))
    assert loop.settle_all()[0].attempt == 1 and loop.records()[0]["passed"] is True


def test_the_same_inputs_give_the_same_choices_and_audio():
    fail = {5: 1.0, 6: 0.5, 8: 0.25}
    runs = []
    for _ in range(2):
        loop = Retakes(fake_gens(5), Submitter(), SeedJudge(fail), retry(3))
        runs.append((loop.settle_all(), loop.records()))
    (a, ra), (b, rb) = runs
    assert ra == rb
    assert all(np.array_equal(x.audio.wave, y.audio.wave) for x, y in zip(a, b, strict=True))


def test_check_judges_every_chunk_once_and_never_resamples():
    submit, judge, updates = Submitter(), SeedJudge({20, 22}), []
    loop = Retakes(fake_gens(20), submit, judge, Policy(mode="check", max_attempts=1), updates.append)
    takes = loop.settle_all()
    assert submit.seeds() == [[20, 21, 22]] and sorted(judge.calls) == [(0, 20), (1, 21), (2, 22)]
    assert [t.accepted for t in takes] == [False, True, False]
    assert [u["passed"] for u in sorted(updates, key=lambda u: u["chunk"])] == [False, True, False]
    assert loop.summary()["passed"] is False and loop.summary()["retried_chunks"] == 0


def test_off_never_calls_the_judge_and_submits_the_generations_as_given():
    def no_judge(index: int, take: tts.ChunkAudio, text: str) -> Verdict:
        raise AssertionError("off must not judge")

    gens = fake_gens(3, ["Hi there you.", *TEXTS])  # a short chunk too: off does not lengthen it
    submit, updates = Submitter(), []
    loop = Retakes(gens, submit, no_judge, Policy(mode="off", max_attempts=5), updates.append)
    takes = loop.settle_all()
    assert all(sent is given for sent, given in zip(submit.calls[0], gens, strict=True))
    assert [t.seed for t in takes] == [3, 4, 5, 6]
    assert sorted(updates, key=lambda u: u["chunk"])[0] == {"stage": "synthesis", "chunk": 1, "chunks": 4}
    assert loop.records()[0] == {
        "attempts": 1, "seed": 3, "error_rate": None, "transcript": None, "passed": None, "reasons": [],
    }  # fmt: skip
    assert loop.summary() == {
        "mode": "off", "passed": None, "worst_error_rate": None, "retried_chunks": 0, "failed_chunks": [],
    }  # fmt: skip


def test_short_chunks_get_a_minimum_duration_only_with_the_guard_on():
    ref = fake_ref()  # 11 bytes per second
    gens = [tts.Generation(ref, text, PARAMS, 0) for text in ("Yes, I do it.", "Hi.", TEXTS[0])]
    on = Retakes(gens, Submitter(), SeedJudge(set()), retry())
    assert on.generation(0, 1).params.speed == pytest.approx(13 / 11 / quality.MIN_SHORT_SECONDS)
    assert quality.expected_seconds("Yes, I do it.", 11, 1.0) == pytest.approx(quality.MIN_SHORT_SECONDS)
    assert on.generation(1, 1).params == PARAMS  # under 10 bytes: the engine's own 3.3 x already applies
    assert on.generation(2, 1).params == PARAMS
    off = Retakes(gens, Submitter(), SeedJudge(set()), Policy())
    assert off.generation(0, 1) is gens[0]


def test_a_failing_job_cancels_the_takes_still_queued():
    submit = Submitter(hold=True)

    def broken(index: int, take: tts.ChunkAudio, text: str) -> Verdict:
        raise RuntimeError("the judge broke")

    loop = Retakes(fake_gens(0), submit, broken, retry())
    loop.start()
    submit.futures[0].set_result(take_of(submit.calls[0][0]))
    with pytest.raises(RuntimeError, match="judge broke"):
        loop.settle_all()
    assert [f.cancelled() for f in submit.futures] == [False, True, True]

    submit = Submitter(hold=True)
    with pytest.raises(KeyError), Retakes(fake_gens(0), submit, SeedJudge(set()), retry()) as loop:
        loop.start([0, 1])
        raise KeyError("storage failed while streaming")
    assert all(f.cancelled() for f in submit.futures)


def test_streaming_settles_each_chunk_before_the_next_and_prefetches_one():
    submit, judge = Submitter(), SeedJudge({30, 33})
    loop = Retakes(fake_gens(30, TEXTS[:2]), submit, judge, retry(3))
    loop.start([0])
    first = loop.settle(0, prefetch=1)
    # chunk 1's first take went out as soon as chunk 0's first take was back, before chunk 0's retries
    assert submit.seeds() == [[30], [31], [32]]
    assert (first.seed, first.accepted) == (32, True) and judge.calls == [(0, 30), (0, 32)]
    second = loop.settle(1)
    assert (second.seed, second.accepted) == (31, True)
    assert loop.summary()["retried_chunks"] == 1


# -- the loop on the real Batcher and tiny engine --------------------------------------------------------


@pytest.fixture(scope="module")
def ref(worker) -> tts.Reference:
    data, text = default_voice()
    samples, rate = audio.decode(data, field="voice")
    return worker.engine.prepare_reference(audio.resample(samples, rate, SR), text, max_seconds=12)


class FailFirstTakes:
    """Fails the first take of the chunks it is told to and passes every other; keeps what it judged.
    It takes a moment, as a real judge does, so a whole batch is back before the first retry goes out."""

    def __init__(self, chunks: set[int]) -> None:
        self.chunks = chunks
        self.takes: dict[int, list[tts.ChunkAudio]] = {}

    def __call__(self, index: int, take: tts.ChunkAudio, text: str) -> Verdict:
        time.sleep(0.05)
        self.takes.setdefault(index, []).append(take)
        if index in self.chunks and len(self.takes[index]) == 1:
            return Verdict.of(["asr_mismatch"], 1.0, "")
        return Verdict.of([], 0.0, text)


def test_retries_go_through_the_batcher_and_batch_together(worker, ref):
    batcher = Batcher(worker.engine, max_size=4, wait_seconds=0.0)
    gens = [tts.Generation(ref, text, PARAMS, 40 + i) for i, text in enumerate(TEXTS)]
    runs = []
    for _ in range(2):
        judge = FailFirstTakes({0, 2})
        loop = Retakes(gens, batcher.submit, judge, retry(3))
        runs.append((loop.settle_all(), loop.records(), judge))
    (takes, records, judge), (again, records_again, _) = runs
    assert [r["seed"] for r in records] == [43, 41, 45] and [r["attempts"] for r in records] == [2, 1, 2]
    assert records == records_again
    assert [t.audio.batch_size for t in takes] == [2, 3, 2]  # first takes: one batch; both retries: another
    for t, u in zip(takes, again, strict=True):
        assert np.abs(t.audio.wave - u.audio.wave).max() < 1e-5
    # the kept retake is what its seed gives alone, and not what the first take was
    alone = worker.engine.generate(ref, TEXTS[0], PARAMS, 43)
    assert np.abs(takes[0].audio.wave - alone.wave).max() < 1e-5
    first = judge.takes[0][0].wave
    assert np.abs(first[: len(alone.wave)] - alone.wave).max() > 0.01


def test_a_short_chunk_is_generated_at_least_min_short_seconds(worker, ref):
    gens = [tts.Generation(ref, "Yes, I do it.", PARAMS, 0)]
    on = Retakes(gens, worker.batcher.submit, lambda i, t, x: Verdict.of([]), retry(1)).settle_all()[0]
    off = Retakes(gens, worker.batcher.submit, lambda i, t, x: Verdict.of([]), Policy()).settle_all()[0]
    assert len(on.audio.wave) / SR >= quality.MIN_SHORT_SECONDS - 256 / SR
    assert len(off.audio.wave) / SR < 1.5  # 13 bytes at the voice's 9.6 bytes/s


# -- the real judge on the tiny models ---------------------------------------------------------------


def test_the_asr_judge_fails_tiny_noise_with_bounded_attempts(worker, ref):
    updates: list[dict] = []
    judge = AsrJudge(worker.aligner, chars_per_second=quality.reference_rate(ref), speed=1.0)
    gens = [tts.Generation(ref, text, PARAMS, 7 + i) for i, text in enumerate(TEXTS[:2])]
    loop = Retakes(gens, worker.batcher.submit, judge, retry(2), updates.append)
    takes = loop.settle_all()
    records = loop.records()
    assert [r["attempts"] for r in records] == [2, 2]
    assert all(r["seed"] in (7 + i, 9 + i) for i, r in enumerate(records))
    for r in records:
        assert r["passed"] is False and r["error_rate"] == 1.0 and isinstance(r["transcript"], str)
        assert "asr_mismatch" in r["reasons"] and "low_alignment_score" in r["reasons"]  # random aligner: ~0.03
    assert all(t.verdict is not None and t.verdict.score <= -1.0 for t in takes)
    assert sorted((u["chunk"], u["attempt"]) for u in updates) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert loop.summary() == {
        "mode": "retry", "passed": False, "worst_error_rate": 1.0, "retried_chunks": 2, "failed_chunks": [0, 1],
    }  # fmt: skip


def test_check_audio_judges_existing_audio_against_its_text(worker):
    data, text = default_voice()
    samples, rate = audio.decode(data, field="audio")
    result = quality.check_audio(AsrJudge(worker.aligner), samples, rate, text)
    assert result["mode"] == "check" and result["passed"] is False and result["error_rate"] == 1.0
    assert "asr_mismatch" in result["reasons"] and "duration" not in result["reasons"]  # no rate to expect


def test_the_judge_reports_non_finite_audio_without_running_the_models(worker):
    wave = np.full(SR, 0.1, dtype=np.float32)
    wave[100] = np.nan
    verdict = AsrJudge(worker.aligner).judge(wave, SR, "Some words.")
    assert verdict.reasons == ("non_finite",) and verdict.transcript == "" and not verdict.passed
    assert verdict.score < Verdict.of(["asr_mismatch", "clipping", "long_silence"], 5.0).score


# -- text comparison on real text pairs -----------------------------------------------------------------

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.mark.parametrize(
    ("transcript", "rate"),
    [
        ("the quick brown fox jumps over the lazy dog", 0.0),  # case and punctuation do not count
        ("The quick fox jumps over the lazy dog.", 1 / 9),  # a skipped word
        ("The quick brown fox fox jumps over the lazy dog.", 1 / 9),  # a repeated word
        ("The quick brown box jumps over the hazy dog.", 2 / 9),  # substituted words
        ("The quick brown fox.", 5 / 9),  # the end swallowed
        ("", 1.0),  # no speech found
    ],
)
def test_word_error_rate_of_real_text_pairs(transcript, rate):
    assert word_error_rate(TEXT, transcript, comparable) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("text", "transcript"),
    [
        ("I am twenty five years old.", "I am 25 years old."),
        ("twenty-five", "25"),
        ("It was nineteen ninety-nine.", "It was 1999."),
        ("one thousand five hundred people", "1,500 people"),
        ("one hundred and twenty-five", "125"),
        ("Take the 3rd exit.", "Take the third exit."),
        ("Pi is about 3.14", "pi is about three point one four"),
        ("Don't stop - it's late!", "do not stop, it is late"),
        ("O’Brien’s well-known café", "o'brien's well known café"),
    ],
)
def test_the_same_words_written_differently_compare_equal(text, transcript):
    assert comparable(text) == comparable(transcript)
    assert word_error_rate(text, transcript, comparable) == 0.0


def test_numbers_that_differ_still_count():
    # "twenty five" against "twenty six": one of six words
    assert word_error_rate("I am 25 years old.", "I am 26 years old.", comparable) == pytest.approx(1 / 6)


def test_a_normaliser_can_be_plugged_in(worker):
    def spell_out(text: str) -> str:
        return comparable(text.replace("&", " and "))

    assert word_error_rate("cats & dogs", "cats and dogs", comparable) > 0
    assert word_error_rate("cats & dogs", "cats and dogs", spell_out) == 0.0
    assert AsrJudge(worker.aligner, compare=spell_out).normalize is spell_out


# -- the comparison the worker's judge makes: the normaliser on both sides, then `comparable` ---------------


@pytest.fixture(scope="module")
def normalizer(worker):
    return worker.normalizer  # the real English grammars the tiny bake compiled


def chunk_error_rate(normalizer, written: str, transcript: str, lexicon: dict[str, str] | None = None) -> float:
    """The judge's error rate for a correct chunk: the chunk's text is what the worker speaks for `written`."""
    spoken = normalizer.spoken_text(written, "en", lexicon)
    return word_error_rate(spoken, transcript, Comparison("en", normalizer, lexicon))


SENTENCE = "It costs $3.50 at 7:30 pm, Dr. Smith said."  # compared: 13 words ("P M" is one: "pm")
# (what the user wrote, what Whisper writes for a take that says it right)
WHISPER_SPELLINGS = [
    (SENTENCE, "It costs $3.50 at 7:30 p.m., Dr. Smith said."),
    (SENTENCE, "It costs three dollars and fifty cents at 7.30pm. Doctor Smith said."),
    ("Prices rose 50% last year.", "Prices rose 50 percent last year."),
    ("Prices rose 50% last year.", "Prices rose 50 per cent last year."),
    ("Prices rose fifty percent last year.", "Prices rose 50% last year."),
    ("The FBI agent left.", "The FBI agent left."),
    ("The FBI agent left.", "The F.B.I. agent left."),
    ("The FBI agent left.", "the f.b.i. agent left"),
    ("The FBI agent left.", "The F B I agent left."),
    ("I am a U.S. citizen.", "I'm a US citizen."),
    ("Meet me at 9am on Jan. 5, 2025.", "Meet me at 9 a.m. on January 5th, 2025."),
    ("We drove 5 km to St. Louis.", "We drove five kilometers to Saint Louis."),
    ("It weighs 12kg.", "It weighs 12 kg."),
    ("Salt & pepper, e.g. this one.", "Salt and pepper, for example this one."),
    ("In 1999 there were 1,234 people.", "In 1999, there were one thousand two hundred and thirty-four people."),
    ("Call 555-123-4567 now.", "Call 555-123-4567 now."),
]


@pytest.mark.parametrize(("written", "transcript"), WHISPER_SPELLINGS)
def test_a_correct_reading_compares_equal_however_whisper_writes_it(normalizer, written, transcript):
    assert chunk_error_rate(normalizer, written, transcript) == pytest.approx(0.0)


def test_without_the_normaliser_whisper_spellings_would_fail_correct_takes(normalizer):
    """The defect the Comparison fixes: the chunk's text is spoken ("three dollars fifty cents"), Whisper
    writes "$3.50" and "7:30 p.m.": `comparable` alone reads "3.50" as "three point five zero"."""
    for written, transcript in WHISPER_SPELLINGS[:2]:
        spoken = normalizer.spoken_text(written, "en")
        assert word_error_rate(spoken, transcript, comparable) > DEFAULT_MAX_ERROR_RATE
        assert word_error_rate(spoken, transcript, Comparison("en", normalizer)) == 0.0


@pytest.mark.parametrize(
    ("written", "transcript", "rate"),
    [
        (SENTENCE, "It costs $3.50 at 7:30 p.m., Smith said.", 1 / 13),  # a skipped word
        (SENTENCE, "It costs $3.50 at 7:30 p.m., Dr. Dr. Smith said.", 1 / 13),  # a repeated word
        (SENTENCE, "It costs $4.50 at 7:30 p.m., Dr. Smith said.", 1 / 13),  # a wrong amount
        (SENTENCE, "It costs $3.50 at 8:45 p.m., Dr. Smith said.", 3 / 13),  # a wrong time: eight forty five
        (SENTENCE, "It costs $3.50 at 7:30 a.m., Dr. Smith said.", 1 / 13),  # pm read as am
        (SENTENCE, "It costs $3.50.", 7 / 13),  # the end swallowed
        (SENTENCE, "It cost three fifty at seven, Smith said.", 6 / 13),  # a garbled reading
        ("Prices rose 50% last year.", "Prices rose 15% last year.", 1 / 6),
        ("The FBI agent left.", "The CIA agent left.", 1 / 4),
        ("The FBI agent left.", "The FB agent left.", 1 / 4),
        ("The FBI agent left.", "", 1.0),
    ],
)
def test_a_wrong_reading_still_counts(normalizer, written, transcript, rate):
    assert chunk_error_rate(normalizer, written, transcript) == pytest.approx(rate)


def test_spelled_letters_compare_equal_and_single_letter_words_stay_words():
    assert comparable("F B I") == comparable("FBI") == comparable("f.b.i.") == comparable("F.B.I.") == "fbi"
    assert comparable("at seven thirty P M, doctor") == comparable("at seven thirty PM doctor")
    assert comparable("I saw a U S ship") == "i saw a us ship"  # "I" and "a" are words
    assert comparable("A B, C") == "ab c"  # punctuation ends a run


def test_the_lexicon_is_applied_to_the_transcript_too(normalizer):
    lexicon = {"GIF": "jif"}
    # the chunk says "jif"; Whisper writes the word as "GIF" or as it sounds
    assert chunk_error_rate(normalizer, "The GIF was small.", "The GIF was small.", lexicon) == 0.0
    assert chunk_error_rate(normalizer, "The GIF was small.", "The jif was small.", lexicon) == 0.0
    assert chunk_error_rate(normalizer, "The GIF was small.", "The gift was small.", lexicon) == pytest.approx(1 / 4)


def test_error_rate_is_capped_at_one_but_the_score_still_ranks_babble_lower():
    babble = Verdict.of(["asr_mismatch"], word_error_rate("Hello.", "la la la la", comparable))
    nothing = Verdict.of(["asr_mismatch"], word_error_rate("Hello.", "", comparable))
    assert babble.error_rate == nothing.error_rate == 1.0
    assert babble.score < nothing.score


# -- audio sanity on synthetic waves ----------------------------------------------------------------------


def speech(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    """A stand-in for speech: a 180 Hz tone whose loudness moves at a syllable rate, never silent."""
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * (0.4 + 0.6 * np.abs(np.sin(2 * np.pi * 3 * t))) * np.sin(2 * np.pi * 180 * t)).astype(
        np.float32
    )


def reasons(wave: np.ndarray, expected: float | None) -> list[str]:
    return quality.audio_reasons(wave, expected, Loudness.of(wave, SR))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def test_clean_speech_passes_the_audio_checks():
    assert reasons(speech(3.0), expected=3.0) == []
    assert reasons(np.concatenate([silence(0.3), speech(1.0), silence(0.8), speech(1.0), silence(0.5)]), 3.0) == []


def test_a_long_silence_inside_the_speech_fails_but_not_one_at_the_ends():
    assert reasons(np.concatenate([speech(1.0), silence(2.0), speech(1.0)]), expected=4.0) == ["long_silence"]
    assert reasons(np.concatenate([silence(2.0), speech(2.0), silence(2.0)]), expected=4.0) == []


def test_clipped_audio_fails():
    loud = np.clip(speech(2.0) * 10, -1.0, 1.0)
    assert reasons(loud, expected=2.0) == ["clipping"]
    assert reasons(speech(2.0, amplitude=0.95), expected=2.0) == []


def test_speech_far_shorter_or_longer_than_its_text_fails():
    assert reasons(np.concatenate([speech(1.0), silence(3.0)]), expected=4.0) == ["duration"]  # swallowed
    assert reasons(speech(6.0), expected=2.0) == ["duration"]  # babble
    assert reasons(silence(2.0), expected=2.0) == ["duration"]  # nothing said
    assert reasons(speech(6.0), expected=None) == []


# -- alignment signals on synthetic word timings ------------------------------------------------------


def words(*spec: tuple[str, float, float, float | None, bool]) -> list[WordTiming]:
    return [WordTiming(word=w, start=s, end=e, score=p, interpolated=i) for w, s, e, p, i in spec]


def has_letters(word: str) -> bool:
    return any(c.isalpha() for c in word)


def align_reasons(timings: list[WordTiming], wave: np.ndarray | None = None) -> list[str]:
    wave = np.concatenate([silence(0.2), speech(2.6), silence(0.2)]) if wave is None else wave
    return quality.alignment_reasons(timings, len(wave) / SR, has_letters, Loudness.of(wave, SR))


# Four words: any bad one fails the take.
GOOD = [("Hello", 0.2, 0.6, 0.8, False), ("there,", 0.7, 1.1, 0.7, False), ("how", 1.3, 1.9, 0.9, False),
        ("you", 2.0, 2.8, 0.85, False)]  # fmt: skip


def test_well_placed_words_pass():
    assert align_reasons(words(*GOOD)) == []


def test_unplaced_words_fail_but_words_without_letters_do_not_count():
    unplaced = [*GOOD[:2], ("how", 1.3, 1.9, None, True), GOOD[3]]
    assert align_reasons(words(*unplaced)) == ["unaligned_words"]
    with_number = [*GOOD, ("42", 2.8, 2.9, None, True)]
    assert align_reasons(words(*with_number)) == []


def test_one_bad_word_in_ten_passes_one_in_four_fails():
    long = [(f"word{i}", 0.2 + i * 0.25, 0.4 + i * 0.25, 0.8, False) for i in range(10)]
    long[4] = ("word4", 1.2, 1.4, 0.02, False)
    assert align_reasons(words(*long)) == []
    assert align_reasons(words(*long[:3], long[4])) == ["low_alignment_score"]


def test_squeezed_words_fail_but_short_words_may_be_short():
    squeezed = [*GOOD[:2], ("how", 1.3, 1.31, 0.9, False), GOOD[3]]
    assert align_reasons(words(*squeezed)) == ["squeezed_words"]
    tiny = [*GOOD[:2], ("a", 1.3, 1.31, 0.9, False), GOOD[3]]
    assert align_reasons(words(*tiny)) == []


def test_a_last_word_cut_off_at_the_edge_is_clipped():
    cut = np.concatenate([silence(0.2), speech(2.8)])  # ends loud
    ending = [*GOOD[:3], ("you", 2.0, 3.0, 0.85, False)]
    assert align_reasons(words(*ending), cut) == ["clipped_end"]
    faded = np.concatenate([silence(0.2), speech(2.8) * np.linspace(1, 0, int(2.8 * SR), dtype=np.float32) ** 4])
    assert align_reasons(words(*ending), faded) == []  # reaches the edge but has died away
    starting = [("Hello", 0.0, 0.6, 0.8, False), *GOOD[1:]]
    assert align_reasons(words(*starting), np.concatenate([speech(2.8), silence(0.2)])) == ["clipped_start"]


# -- request field, settings, policy ----------------------------------------------------------------------


def test_settings_default_the_mode_by_device_and_attempts_to_three(tmp_path, monkeypatch):
    settings = Settings(model_dir=tmp_path)
    assert settings.resolved_quality_mode("cuda") == "retry"
    assert settings.resolved_quality_mode("cpu") == "off"
    assert settings.quality_max_attempts == 3
    monkeypatch.setenv("QUALITY_MODE", "check")
    monkeypatch.setenv("QUALITY_MAX_ATTEMPTS", "5")
    assert Settings(model_dir=tmp_path).resolved_quality_mode("cuda") == "check"
    assert Settings(model_dir=tmp_path).quality_max_attempts == 5
    monkeypatch.setenv("QUALITY_MAX_ATTEMPTS", "6")
    with pytest.raises(ValueError, match="quality_max_attempts"):
        Settings(model_dir=tmp_path)


def test_policy_fills_the_request_from_the_defaults():
    assert Policy.of(None, "retry", 3) == Policy("retry", 3, DEFAULT_MAX_ERROR_RATE)
    req = QualityRequest(max_attempts=5, max_error_rate=0.5)
    assert Policy.of(req, "retry", 3) == Policy("retry", 5, 0.5)
    assert Policy.of(QualityRequest(mode="check", max_attempts=4), "retry", 3).max_attempts == 1
    assert Policy.of(None, "off", 3) == Policy("off", 1, DEFAULT_MAX_ERROR_RATE)


def test_the_quality_field_is_validated_with_named_errors():
    from tts_worker.errors import InvalidInput
    from tts_worker.parsing import parse_request
    from tts_worker.schemas import Limits

    limits = Limits(max_text_chars=100)
    req = parse_request({"text": "Hi.", "quality": {"mode": "retry", "max_attempts": 2, "max_error_rate": 0}}, limits)
    assert req.quality == QualityRequest(mode="retry", max_attempts=2, max_error_rate=0.0)
    bad = {
        "quality.mode: should be 'off', 'check' or 'retry'": {"mode": "again"},
        "quality.max_attempts: should be less than or equal to 5": {"max_attempts": 6},
        "quality.max_error_rate: should be less than or equal to 1": {"max_error_rate": 1.5},
        "quality.extra: unknown field": {"extra": True},
    }
    for message, value in bad.items():
        with pytest.raises(InvalidInput, match=message):
            parse_request({"text": "Hi.", "quality": value}, limits)
    align = {"operation": "align", "text": "Hi.", "audio_key": "output/a.wav"}
    assert parse_request({**align, "quality": {}}, limits).quality.mode == "check"
    with pytest.raises(InvalidInput, match="quality.mode: should be 'off' or 'check'"):
        parse_request({**align, "quality": {"mode": "retry"}}, limits)


# -- end to end through the worker (the minimal hook in pipeline._speak / align) -------------------------

TWO_CHUNKS = (
    "This first sentence is long enough that the whole text cannot fit in one generation of the model. "
    "And this second sentence makes sure that the text is split into at least two separate chunks."
)


def run_job(worker, job_input: dict, updates: list | None = None) -> dict:
    from tts_worker.handler import make_handler

    def progress(job: dict, update: dict) -> None:
        if updates is not None:
            updates.append(update)

    result = make_handler(worker, progress=progress)({"id": "q1", "input": job_input})
    assert "error" not in result, result
    return result


def stored_wave(worker, result: dict) -> np.ndarray:
    import io

    import soundfile as sf

    data = worker.storage.get(result["audio"]["key"])
    assert data is not None
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SR and len(samples) == result["samples"]
    return samples


def test_worker_off_is_byte_identical_and_check_keeps_the_audio(worker):
    job = {"text": TWO_CHUNKS, "seed": 11, "nfe_steps": 2, "word_timings": False}
    plain = run_job(worker, job)
    off = run_job(worker, {**job, "quality": {"mode": "off"}})
    checked = run_job(worker, {**job, "quality": {"mode": "check"}})
    assert worker.storage.get(plain["audio"]["key"]) == worker.storage.get(off["audio"]["key"])
    assert plain["quality"] == {  # the CPU default is off
        "mode": "off", "passed": None, "worst_error_rate": None, "retried_chunks": 0, "failed_chunks": [],
    }  # fmt: skip
    assert [c["quality"]["seed"] for c in plain["chunks"]] == [11, 12]
    # check judges and reports, never re-samples: long chunks come out as they did
    assert worker.storage.get(checked["audio"]["key"]) == worker.storage.get(plain["audio"]["key"])
    assert checked["quality"]["mode"] == "check" and checked["quality"]["passed"] is False
    assert all(c["quality"]["attempts"] == 1 and c["quality"]["passed"] is False for c in checked["chunks"])
    assert "quality" in checked["processing_stages"] and "quality" not in plain["processing_stages"]


def test_worker_retry_reports_every_chunk_and_completes_when_chunks_still_fail(worker):
    updates: list[dict] = []
    job = {"text": TWO_CHUNKS, "seed": 20, "nfe_steps": 2, "quality": {"mode": "retry", "max_attempts": 2}}
    result = run_job(worker, job, updates)
    assert result["status"] == "completed" and len(result["chunks"]) == 2
    for i, chunk in enumerate(result["chunks"]):
        q = chunk["quality"]
        assert q["attempts"] == 2 and q["seed"] in (20 + i, 22 + i) and q["passed"] is False
        assert q["error_rate"] == 1.0 and isinstance(q["transcript"], str) and "asr_mismatch" in q["reasons"]
    assert result["quality"] == {
        "mode": "retry", "passed": False, "worst_error_rate": 1.0, "retried_chunks": 2, "failed_chunks": [0, 1],
    }  # fmt: skip
    synthesis = [(u["chunk"], u["attempt"]) for u in updates if u["stage"] == "synthesis"]
    assert sorted(synthesis) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(u["chunks"] == 2 for u in updates if u["stage"] == "synthesis")
    # the kept takes are what the result's audio is made of: its length is theirs joined
    assert len(stored_wave(worker, result)) == result["chunks"][-1]["end_sample"]


def test_worker_streams_each_chunk_after_its_retries(worker):
    from tts_worker.parsing import parse_request
    from tts_worker.schemas import Limits

    partials: list[dict] = []
    job = {"text": TWO_CHUNKS, "seed": 5, "nfe_steps": 2, "stream": True, "word_timings": False,
           "quality": {"mode": "retry", "max_attempts": 2}}  # fmt: skip
    final = worker.run(parse_request(job, Limits(5000)), "s1", emit=partials.append)
    assert [p["quality"]["attempts"] for p in partials] == [2, 2]
    assert [p["quality"] for p in partials] == [c["quality"] for c in final["chunks"]]


def test_align_checks_existing_audio_against_its_text(worker):
    made = run_job(worker, {"text": "Hello there, this is a check.", "seed": 1, "nfe_steps": 2, "word_timings": False})
    align = {"operation": "align", "text": "Hello there, this is a check.", "audio_key": made["audio"]["key"]}
    checked = run_job(worker, {**align, "quality": {"mode": "check"}})
    assert checked["quality"]["mode"] == "check" and checked["quality"]["passed"] is False
    assert checked["quality"]["error_rate"] == 1.0 and "asr_mismatch" in checked["quality"]["reasons"]
    assert "quality" not in run_job(worker, align)


def test_the_workers_judge_compares_through_the_normaliser_and_the_jobs_lexicon(worker, monkeypatch):
    """Synthesis and align judge with the worker's normaliser and the job's lexicon: a take that Whisper
    writes as "$3.50 ... 7:30 p.m." says its chunk. The tiny ASR transcribes noise, so a stand-in
    answers as Whisper would for a correct take."""
    written = "The GIF cost $3.50 at 7:30 pm, Dr. Smith said."
    heard = "The GIF cost $3.50 at 7:30 p.m., Dr. Smith said."
    monkeypatch.setattr(worker.aligner, "transcribe", lambda wave, rate, language=None: heard)
    request = {"text": written, "lexicon": {"GIF": "jif"}, "quality": {"mode": "check"}}
    made = run_job(worker, {**request, "seed": 2, "nfe_steps": 2, "word_timings": False})
    (chunk,) = made["chunks"]
    assert chunk["spoken_text"] == "The jif cost three dollars fifty cents at seven thirty P M, doctor Smith said."
    assert chunk["quality"]["transcript"] == heard and chunk["quality"]["error_rate"] == 0.0
    assert "asr_mismatch" not in chunk["quality"]["reasons"]
    checked = run_job(worker, {**request, "operation": "align", "audio_key": made["audio"]["key"]})
    assert checked["quality"]["error_rate"] == 0.0 and "asr_mismatch" not in checked["quality"]["reasons"]
