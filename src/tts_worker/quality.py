"""The quality guard's judge: does a take (one chunk's audio) say its text, cleanly?

`AsrJudge(aligner, ...)` is a judge: `judge(index, take, text) -> Verdict`, the
callable the retry loop (retakes.py) takes. It runs three kinds of checks, each
failing with a short reason code:

    asr_mismatch         the ASR round trip: the baked Whisper model's transcript of the take against
                         the text, both normalised the same way (`Comparison`: the worker's normaliser
                         for the job's language and lexicon, then `comparable`), word error rate by
                         jiwer, above `max_error_rate` (skipped without an ASR model; no speech found
                         = rate 1)
    unaligned_words      the forced aligner could not place words it has letters for
    squeezed_words       placed words of three or more letters lasting under NEAR_ZERO_SECONDS
    low_alignment_score  placed words the aligner scores under MIN_WORD_SCORE
    clipped_start/_end   the first/last word runs into the take's edge and the audio is still loud there
    non_finite           NaN or infinite samples (nothing else is judged), or no samples
    clipping             samples at full scale
    long_silence         a silence inside the speech longer than MAX_INNER_SILENCE_SECONDS
    duration             the speech lasts far shorter or longer than the text's expected duration

A take passes with no reason. `Verdict.score` ranks takes (higher is better; 0 is a perfect take), so the
best of several failed takes is well defined. `QualityRequest` / `AlignQualityRequest` are the request's
`quality` field; `Policy` is what a job runs with once the settings' defaults are filled in.

The judge never raises for bad audio. It raises what the aligner raises (ModelError; InvalidInput for a
language with no alignment model, which the job's own alignment would refuse too); a language the ASR
model does not know only skips the ASR round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from tts_worker.comparison import Comparison, NormalizeText, word_error_rate
from tts_worker.errors import InvalidInput
from tts_worker.settings import DEFAULT_MAX_ERROR_RATE, QualityMode
from tts_worker.words import WordTiming

if TYPE_CHECKING:
    from tts_worker.alignment import Aligner
    from tts_worker.engine import ChunkAudio, Reference
    from tts_worker.options import QualityRequest

logger = logging.getLogger(__name__)


# Thresholds. Chosen from published numbers and the signal's physics, not fitted here (no real weights on
# the development machines): revisit them with real takes. The default error rate a take may have is
# settings.DEFAULT_MAX_ERROR_RATE.
# whisperx's word score is the mean CTC probability of its letters: 0.4-0.9 on clean speech, under 0.1
# where the model found nothing that sounds like the word (the tiny random aligner scores ~0.03).
MIN_WORD_SCORE = 0.1
# wav2vec2 emits one frame per 20 ms; a word of 3+ letters in under 30 ms was squeezed in, not spoken.
NEAR_ZERO_SECONDS = 0.03
# Bad words (unplaced, squeezed or low-scored) a take may have, as a share of its words: one in five, so
# in a chunk of four words or fewer any bad word fails it.
MAX_BAD_WORD_SHARE = 0.2
FRAME_SECONDS = 0.02
# Silence: a frame 35 dB under the take's speech level (95th percentile frame RMS), and never above -80 dBFS.
SILENCE_DB_BELOW_SPEECH = 35.0
SILENCE_FLOOR = 1e-4
# F5-TTS leaves 0.3-0.8 s between sentences; upstream's remove_silence treats a pause over 1 s as too long.
MAX_INNER_SILENCE_SECONDS = 1.5
CLIP_LEVEL = 0.999
MAX_CLIPPED_SHARE = 0.001  # 24 samples per second of audio at full scale
# A word that ends naturally decays; speech still within 12 dB of its level in the last 20 ms was cut off.
EDGE_SECONDS = 0.02
EDGE_LEVEL = 0.25
# Speech span against the text's expected duration (the reference's characters per second): under 0.4 x it
# swallowed words; over 2.5 x it babbled or repeated.
MIN_RATE_RATIO = 0.4
MAX_RATE_RATIO = 2.5
# F5-TTS's short-text failures: chunks of up to four words get at least this long. Upstream gives texts
# under 10 bytes 3.3 x their time (a 9-byte text at a typical 10 bytes/s: 2.7 s) and leaves the rest at
# their natural length (a four-word text of 12 bytes: 1.2 s); 2 s gives those about 1.7 x, below upstream's.
SHORT_INPUT_WORDS = 4
MIN_SHORT_SECONDS = 2.0
# Ranking penalty per failed check besides the error rate (non-finite audio is never preferred).
REASON_PENALTY = 0.25
NON_FINITE_PENALTY = 100.0


@dataclass(frozen=True)
class Policy:
    mode: QualityMode = "off"
    max_attempts: int = 1
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE

    @classmethod
    def of(cls, req: QualityRequest | None, default_mode: QualityMode, default_attempts: int) -> Policy:
        """The request's fields over the settings' defaults (`settings.resolved_quality_mode(device)`,
        `settings.quality_max_attempts`). Only `retry` makes more than one attempt."""
        if req is None:
            return cls(mode=default_mode, max_attempts=default_attempts if default_mode == "retry" else 1)
        mode = req.mode or default_mode
        attempts = (req.max_attempts or default_attempts) if mode == "retry" else 1
        return cls(mode=mode, max_attempts=attempts, max_error_rate=req.max_error_rate)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    error_rate: float | None  # the ASR word error rate, capped at 1; None when it was not measured
    transcript: str | None
    reasons: tuple[str, ...]
    score: float  # higher is better: minus the (uncapped) error rate, minus REASON_PENALTY per other reason

    @classmethod
    def of(cls, reasons: list[str], wer: float | None = None, transcript: str | None = None) -> Verdict:
        reasons = list(dict.fromkeys(reasons))
        penalty = sum(
            NON_FINITE_PENALTY if r == "non_finite" else REASON_PENALTY for r in reasons if r != "asr_mismatch"
        )
        return cls(
            passed=not reasons,
            error_rate=None if wer is None else round(min(wer, 1.0), 4),
            transcript=transcript,
            reasons=tuple(reasons),
            score=round(-(wer or 0.0) - penalty, 6),
        )


# -- audio ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loudness:
    """Frame RMS of a take (20 ms frames) and what follows from it."""

    rms: np.ndarray
    level: float  # speech level: the 95th percentile frame RMS
    silent: np.ndarray

    @classmethod
    def of(cls, wave: np.ndarray, rate: int) -> Loudness:
        frame = max(1, int(rate * FRAME_SECONDS))
        n = max(1, len(wave) // frame)
        padded = np.zeros(n * frame, dtype=np.float64)
        padded[: min(len(wave), n * frame)] = wave[: n * frame]
        rms = np.sqrt(np.mean(np.square(padded.reshape(n, frame)), axis=1))
        level = float(np.percentile(rms, 95))
        silent = rms < max(SILENCE_FLOOR, level * 10 ** (-SILENCE_DB_BELOW_SPEECH / 20))
        return cls(rms=rms, level=level, silent=silent)

    def speech_frames(self) -> tuple[int, int] | None:
        """[first, last) frames from the first to the last non-silent frame; None when all is silent."""
        loud = np.flatnonzero(~self.silent)
        return (int(loud[0]), int(loud[-1]) + 1) if loud.size else None

    def longest_inner_silence(self) -> float:
        span = self.speech_frames()
        if span is None:
            return 0.0
        longest = run = 0
        for quiet in self.silent[span[0] : span[1]]:
            run = run + 1 if quiet else 0
            longest = max(longest, run)
        return longest * FRAME_SECONDS

    def loud_at(self, edge: Literal["start", "end"]) -> bool:
        rms = self.rms[0] if edge == "start" else self.rms[-1]
        return bool(self.level > SILENCE_FLOOR and rms >= EDGE_LEVEL * self.level)


def short_input_speed(text: str, chars_per_second: float, speed: float) -> float:
    """The speed a chunk is generated at when the guard is on. F5-TTS drops the first word of, or makes
    noise for, texts of one to four words given little time: a chunk of SHORT_INPUT_WORDS words or fewer
    is slowed so it gets at least MIN_SHORT_SECONDS. Texts under SHORT_TEXT_BYTES keep `speed`: the
    engine gives them 3.3 x the time whatever the speed. Other chunks keep `speed`."""
    from tts_worker.tts import SHORT_TEXT_BYTES

    n = len(" ".join(text.split()).encode("utf-8"))
    if len(text.split()) > SHORT_INPUT_WORDS or n < SHORT_TEXT_BYTES:
        return speed
    return min(speed, n / chars_per_second / MIN_SHORT_SECONDS)


def reference_rate(ref: Reference) -> float:
    """The reference's UTF-8 bytes of text per second of audio: the rate F5-TTS sizes a generation by."""
    return len(ref.text.encode("utf-8")) / ref.seconds


def expected_seconds(text: str, chars_per_second: float, speed: float = 1.0) -> float:
    """How long F5-TTS is given to speak `text` with the guard on: its UTF-8 bytes at the reference's rate
    over the speed (the engine's rule in tts.generate_batch, short texts' extra time included)."""
    from tts_worker.tts import SHORT_TEXT_BYTES, SHORT_TEXT_SPEED

    n = len(" ".join(text.split()).encode("utf-8"))
    speed = SHORT_TEXT_SPEED if n < SHORT_TEXT_BYTES else short_input_speed(text, chars_per_second, speed)
    return n / chars_per_second / speed


def audio_reasons(wave: np.ndarray, expected: float | None, loudness: Loudness) -> list[str]:
    """Sanity of finite samples: clipping, long silences inside the speech, duration (when `expected`)."""
    reasons = []
    if np.mean(np.abs(wave) >= CLIP_LEVEL) > MAX_CLIPPED_SHARE:
        reasons.append("clipping")
    if loudness.longest_inner_silence() > MAX_INNER_SILENCE_SECONDS:
        reasons.append("long_silence")
    span = loudness.speech_frames()
    if expected is not None and expected > 0:
        speech = 0.0 if span is None else (span[1] - span[0]) * FRAME_SECONDS
        if not MIN_RATE_RATIO * expected <= speech <= MAX_RATE_RATIO * expected:
            reasons.append("duration")
    return reasons


def alignment_reasons(
    words: list[WordTiming], duration: float, placeable: Callable[[str], bool], loudness: Loudness
) -> list[str]:
    """What the forced alignment of a take says: unplaced, squeezed or low-scored words, clipped edges.
    Words the aligner has no letters for (digits, symbols) are interpolated by design and not counted."""
    judged = [w for w in words if placeable(w["word"])]
    if not judged:
        return []
    placed = [w for w in judged if not w["interpolated"]]
    reasons = []
    limit = MAX_BAD_WORD_SHARE * len(judged)
    if len(judged) - len(placed) > limit:
        reasons.append("unaligned_words")
    squeezed = [
        w for w in placed if w["end"] - w["start"] < NEAR_ZERO_SECONDS and sum(map(str.isalpha, w["word"])) >= 3
    ]
    if len(squeezed) > limit:
        reasons.append("squeezed_words")
    scores = [w["score"] for w in placed if w["score"] is not None and np.isfinite(w["score"])]
    if sum(s < MIN_WORD_SCORE for s in scores) > limit:
        reasons.append("low_alignment_score")
    if placed and placed[0] is judged[0] and placed[0]["start"] <= EDGE_SECONDS and loudness.loud_at("start"):
        reasons.append("clipped_start")
    if placed and placed[-1] is judged[-1] and placed[-1]["end"] >= duration - EDGE_SECONDS and loudness.loud_at("end"):
        reasons.append("clipped_end")
    return reasons


# -- the judge --------------------------------------------------------------------------------------


class AsrJudge:
    """Judges takes with the worker's Aligner (its ASR model and forced aligner), for one job.

    `compare` is the form its text comparison folds both sides into: `Comparison(language, normalizer,
    lexicon)` with the worker's normaliser and the request's lexicon (default: `comparable` alone).
    `chars_per_second` (the reference's: `len(ref.text.encode()) / ref.seconds`) and `speed` turn on the
    duration check; without them (existing audio) it is skipped.
    """

    def __init__(
        self,
        aligner: Aligner,
        *,
        language: str = "en",
        max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
        compare: NormalizeText | None = None,
        chars_per_second: float | None = None,
        speed: float = 1.0,
        sample_rate: int = 24_000,
    ) -> None:
        self.aligner = aligner
        self.sample_rate = sample_rate  # of the takes it is given (the engine's)
        self.language = language
        self.max_error_rate = max_error_rate
        self.normalize = compare or Comparison(language)
        self.chars_per_second = chars_per_second
        self.speed = speed

    def __call__(self, index: int, take: ChunkAudio, text: str) -> Verdict:
        return self.judge(take.wave, self.sample_rate, text)

    def judge(self, wave: np.ndarray, rate: int, text: str) -> Verdict:
        samples = np.asarray(wave, dtype=np.float32).reshape(-1)
        if samples.size == 0 or not np.isfinite(samples).all():
            return Verdict.of(
                ["non_finite"], 1.0 if self.aligner.has_asr else None, "" if self.aligner.has_asr else None
            )
        loudness = Loudness.of(samples, rate)
        expected = expected_seconds(text, self.chars_per_second, self.speed) if self.chars_per_second else None
        reasons = audio_reasons(samples, expected, loudness)
        wer = transcript = None
        if self.aligner.has_asr:
            try:
                # "" when the ASR's voice activity detection finds no speech (noise): an error rate of 1
                transcript = self.aligner.transcribe(samples, rate, self.language)
            except InvalidInput:  # a language the baked ASR model does not know: the other checks still run
                logger.info("quality: the ASR model does not know %r; no ASR round trip", self.language)
            else:
                wer = word_error_rate(text, transcript, self.normalize)
                if min(wer, 1.0) > self.max_error_rate:
                    reasons.append("asr_mismatch")
        words = self.aligner.align(samples, rate, text, [], language=self.language)
        duration = len(samples) / rate
        reasons += alignment_reasons(words, duration, lambda w: self.aligner.alignable(w, self.language), loudness)
        return Verdict.of(reasons, wer, transcript)


def check_audio(judge: AsrJudge, wave: np.ndarray, rate: int, text: str) -> dict[str, object]:
    """The `align` operation's check of audio the user has, against its whole text: its result's `quality`."""
    verdict = judge.judge(wave, rate, text)
    return {
        "mode": "check",
        "passed": verdict.passed,
        "error_rate": verdict.error_rate,
        "transcript": verdict.transcript,
        "reasons": list(verdict.reasons),
    }
