"""Word timings for known text, and speech recognition: the only module that imports whisperx.

`Aligner.load(model_dir, manifest, device)` loads, once and offline, what the
manifest's components describe (explicit local directories, never the hub; the
spec types live in `tts_worker.manifest`):

    components.align[<lang>]   wav2vec2 CTC model per language: `AlignModelSpec`
    components.nltk_data       NLTK data dir holding punkt_tab (whisperx.align needs it): `NltkSpec`
    components.asr             faster-whisper (CTranslate2) model + tokenizer.json: `AsrSpec` (optional)

`Aligner.align(wave, rate, text, chunks)` gives one `WordTiming` per
whitespace-separated word of `text`, in order, non-overlapping, inside
[0, duration]. It aligns chunk by chunk inside the sample ranges the synthesis
recorded, so an error in one chunk never shifts the next; a word cut across
chunks (one longer than a chunk) is timed in each chunk it was spoken in and
spans them all (the bookkeeping is placement.py's). Words keep the user's
spelling; the aligner only sees their letters (lower-cased, accents
folded). A word with no letter the model knows (numbers, symbols, other
scripts) gets times interpolated between its neighbours and
`interpolated=True`; it is never dropped.

`Aligner.transcribe(wave, rate, language)` runs whisperx ASR (pyannote VAD from
the whisperx package, faster-whisper model from the manifest) and returns text.

Errors: an unbaked language is `InvalidInput` naming `language`; a failure
inside a model is `ModelError`; a missing or broken component at load is
`ModelDirError`.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tts_worker.audio import resample
from tts_worker.errors import InvalidAudio, InvalidInput, ModelDirError, ModelError
from tts_worker.manifest import BAKE_HINT, AlignModelSpec, AsrSpec, Components, Manifest
from tts_worker.placement import Chunk, Part, Placed, chunk_spans, join, place, split_words
from tts_worker.readiness import Readiness
from tts_worker.words import WordTiming

logger = logging.getLogger(__name__)

ALIGN_SAMPLE_RATE = 16_000  # whisperx (wav2vec2 and Whisper) input rate
DEFAULT_LANGUAGE = "en"
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'"}


def checked_components(manifest: Manifest) -> Components:
    """The manifest's alignment components, or `ModelDirError` when the worker cannot align with them."""
    comps = manifest.components
    if not comps.align or comps.nltk_data is None:
        raise ModelDirError(f"the manifest has no alignment model or no NLTK data; {BAKE_HINT}")
    from whisperx.utils import PUNKT_LANGUAGES  # a small module: whisperx's package imports lazily

    # whisperx.align loads punkt_tab for the language (English when it has none) and downloads it when
    # missing: every aligned language's punkt model must be baked.
    missing = {PUNKT_LANGUAGES.get(lang, "english") for lang in comps.align} - set(comps.nltk_data.punkt_tab)
    if missing:
        raise ModelDirError(f"the baked NLTK data lacks punkt_tab {sorted(missing)}; {BAKE_HINT}")
    return comps


@dataclass(frozen=True)
class _LoadedAligner:
    model: Any
    metadata: dict[str, Any]
    alignable: frozenset[str]  # single characters the model can place (no blank, no word separator)


class Aligner:
    """Forced alignment (and ASR) from a baked MODEL_DIR. Load once; call from one job at a time per model."""

    def __init__(
        self, model_dir: Path, components: Components, device: str, *, tiny: bool = False, pending: bool = False
    ) -> None:
        self.model_dir = model_dir
        self.components = components
        self.device = device
        self.tiny = tiny
        self.readiness = Readiness("the aligner and speech recognition models", pending=pending)
        self._aligners: dict[str, _LoadedAligner] = {}
        self._asr: Any = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, manifest: Manifest, device: str, *, deferred: bool = False) -> Aligner:
        """Load the default language's aligner and the ASR model (when baked); `ModelDirError` when they can't be.
        `deferred`: only check the manifest now; `load_models` loads them later (in the background) and every
        call that needs them waits until it has."""
        components = checked_components(manifest)
        aligner = cls(model_dir, components, device, tiny=manifest.tiny, pending=deferred)
        if not deferred:
            aligner.load_models()
        return aligner

    def load_models(self) -> None:
        components = self.components
        assert components.nltk_data is not None  # checked_components
        _use_nltk_data(self.model_dir / components.nltk_data.dir, components.nltk_data.punkt_tab)
        self._aligner(DEFAULT_LANGUAGE if DEFAULT_LANGUAGE in components.align else next(iter(components.align)))
        if components.asr is not None:
            self._asr = _load_asr(self.model_dir, components.asr, self.device)
        logger.info(
            "alignment ready on %s: languages %s, ASR %s%s",
            self.device,
            ", ".join(sorted(components.align)),
            components.asr.name if components.asr else "none",
            " -- TINY RANDOM WEIGHTS: timings and transcripts are meaningless" if self.tiny else "",
        )

    @classmethod
    def load_asr(cls, model_dir: Path, manifest: Manifest, device: str) -> Aligner:
        """Only the speech recognition model, for `transcribe` (the voice import command): no aligner, no
        NLTK data. `ModelDirError` when none is baked or it can't be loaded."""
        components = manifest.components
        if components.asr is None:
            raise ModelDirError(f"MODEL_DIR {model_dir}: no speech recognition model is baked; {BAKE_HINT}")
        aligner = cls(model_dir, components, device)
        aligner._asr = _load_asr(model_dir, components.asr, device)
        return aligner

    @property
    def languages(self) -> list[str]:
        return sorted(self.components.align)

    @property
    def has_asr(self) -> bool:
        return self.components.asr is not None

    def align(
        self,
        wave: np.ndarray,
        sample_rate: int,
        text: str,
        chunks: list[tuple[int, int, int, int]],
        *,
        language: str = DEFAULT_LANGUAGE,
    ) -> list[WordTiming]:
        """One timing per whitespace-separated word of `text`, aligned inside each chunk's sample range.

        `chunks` are `(char_start, char_end, start_sample, end_sample)` at `sample_rate`, as the synthesis
        records them; an empty list aligns the whole audio as one chunk.
        """
        self.readiness.wait()
        loaded = self._aligner(language)
        wave = _mono(wave, sample_rate)
        duration = len(wave) / sample_rate
        spans = chunk_spans(chunks, len(wave), sample_rate, len(text))
        words, parts = split_words(text, spans, lambda s: _clean(s, loaded.alignable))
        if not words:
            return []
        placed: list[Placed | None] = [None] * len(parts)
        for k, span in enumerate(spans):
            idx = [i for i, p in enumerate(parts) if p.chunk == k]
            if idx:
                for i, p in zip(
                    idx, self._align_chunk(loaded, wave, sample_rate, span, [parts[i] for i in idx]), strict=True
                ):
                    placed[i] = p
        return join(words, parts, place(parts, placed, spans), duration)

    def alignable(self, word: str, language: str = DEFAULT_LANGUAGE) -> bool:
        """Whether `align` can place `word` at all (it has a letter the language's model knows); the others
        are always interpolated."""
        self.readiness.wait()
        return bool(_clean(word, self._aligner(language).alignable))

    def transcribe(self, wave: np.ndarray, sample_rate: int, language: str | None = None) -> str:
        """What is said in `wave` (whisperx ASR with VAD); "" when no speech is found."""
        self.readiness.wait()
        if self._asr is None:
            raise InvalidInput(
                "reference text: this worker has no speech recognition model baked; give the reference text"
            )
        supported = self._asr.model.supported_languages
        if language is not None and language not in supported:
            raise InvalidInput(f"language: {language!r} is not a language the speech recognition model knows")
        if language is None and not self._asr.model.model.is_multilingual:
            language = "en"  # an English-only model cannot detect languages
        audio16 = _resample(_mono(wave, sample_rate), sample_rate)
        try:
            with self._lock:  # the pipeline swaps its tokenizer per language
                result = self._asr.transcribe(audio16, batch_size=1, language=language)
        except RuntimeError as exc:
            logger.exception("speech recognition failed")
            raise ModelError("speech recognition failed in the model; the worker will restart") from exc
        return " ".join(" ".join(seg["text"].split()) for seg in result["segments"]).strip()

    def _aligner(self, language: str) -> _LoadedAligner:
        if language not in self.components.align:
            raise InvalidInput(
                f"language: no alignment model for {language!r} in this worker (baked: {', '.join(self.languages)})"
            )
        with self._lock:
            if language not in self._aligners:
                try:
                    self._aligners[language] = _load_aligner(
                        self.model_dir, language, self.components.align[language], self.device
                    )
                except ModelDirError as exc:
                    if not self._aligners:
                        raise  # at start: the worker must not come up
                    logger.error("%s", exc)
                    raise ModelError(f"language: the {language!r} alignment model failed to load") from exc
            return self._aligners[language]

    def _align_chunk(
        self, loaded: _LoadedAligner, wave: np.ndarray, sample_rate: int, span: Chunk, words: list[Part]
    ) -> list[Placed | None]:
        """Place the chunk's alignable words (parts of words) inside the chunk; None for the rest.
        Only the chunk's own samples reach the model, so a chunk's timings never depend on its neighbours."""
        import whisperx

        known = [w for w in words if w.clean]
        if not known or span.last <= span.first:
            return [None] * len(words)
        segment = _resample(wave[span.first : span.last], sample_rate)
        transcript = [{"start": 0.0, "end": len(segment) / ALIGN_SAMPLE_RATE, "text": " ".join(w.clean for w in known)}]
        try:
            result = whisperx.align(transcript, loaded.model, loaded.metadata, segment, self.device)
        except RuntimeError as exc:
            logger.exception("alignment failed")
            raise ModelError("alignment failed in the model; the worker will restart") from exc
        except (ValueError, KeyError, IndexError):
            # whisperx's pandas bookkeeping on degenerate input: interpolate this chunk rather than fail the job
            logger.warning("alignment of a chunk failed; its word times are interpolated", exc_info=True)
            return [None] * len(words)
        found = _group_word_segments(result["word_segments"], known, loaded.metadata["language"])
        if found is None:
            logger.warning(
                "the aligner returned %d words for %d; chunk interpolated", len(result["word_segments"]), len(known)
            )
            return [None] * len(words)
        for p in found:  # whisperx times are relative to the segment: move them to the chunk's place
            if p is not None:
                p.start += span.start
                p.end += span.start
        it = iter(found)
        return [next(it) if w.clean else None for w in words]


def _load_aligner(model_dir: Path, language: str, spec: AlignModelSpec, device: str) -> _LoadedAligner:
    import whisperx

    path = model_dir / spec.dir
    try:
        if spec.format == "torchaudio":
            model, metadata = whisperx.load_align_model(language, device, model_name=spec.bundle, model_dir=str(path))
        else:
            model, metadata = whisperx.load_align_model(language, device, model_name=str(path), model_cache_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelDirError(
            f"MODEL_DIR {model_dir}: the {language!r} alignment model in {spec.dir} failed to load "
            f"({exc.__class__.__name__}: {str(exc)[:200]}); {BAKE_HINT}"
        ) from exc
    dictionary: dict[str, int] = metadata["dictionary"]
    blank = next((dictionary[k] for k in ("[pad]", "<pad>") if k in dictionary), 0)  # as whisperx.align picks it
    alignable = frozenset(c for c, i in dictionary.items() if len(c) == 1 and c != "|" and i != blank)
    logger.info("loaded the %s aligner from %s (%d characters)", language, spec.dir, len(alignable))
    return _LoadedAligner(model=model, metadata=metadata, alignable=alignable)


def _load_asr(model_dir: Path, spec: AsrSpec, device: str) -> Any:
    import torch
    import whisperx
    from pyannote.audio.telemetry import set_telemetry_metrics

    set_telemetry_metrics(False)  # pyannote's VAD reports usage to its servers unless told not to
    path = model_dir / spec.dir
    if not (path / "tokenizer.json").is_file():
        # faster-whisper would fetch one from the hub
        raise ModelDirError(f"MODEL_DIR {model_dir}: {spec.dir} has no tokenizer.json; {BAKE_HINT}")
    # CTranslate2 defaults to 4 CPU threads and, loading, leaves torch's OpenMP pool in this thread at
    # that size: on a 2-core machine synthesis then ran ~12 % slower. Same count as torch, and restored.
    torch_threads = torch.get_num_threads()
    try:
        asr = whisperx.load_model(
            str(path),
            device,
            compute_type=spec.compute_type,
            vad_method="pyannote",
            local_files_only=True,
            threads=torch_threads,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelDirError(
            f"MODEL_DIR {model_dir}: the speech recognition model in {spec.dir} failed to load "
            f"({exc.__class__.__name__}: {str(exc)[:200]}); {BAKE_HINT}"
        ) from exc
    finally:
        torch.set_num_threads(torch_threads)
    if asr.model.model.is_multilingual != spec.multilingual:
        logger.warning(
            "%s: the manifest says multilingual=%s, ctranslate2 says %s; language detection follows ctranslate2",
            spec.name,
            spec.multilingual,
            asr.model.model.is_multilingual,
        )
    logger.info("loaded speech recognition %s from %s", spec.name, spec.dir)
    return asr


def _use_nltk_data(path: Path, languages: list[str]) -> None:
    """Put the baked NLTK data first on NLTK's search path and check punkt_tab loads from it:
    whisperx.align calls `nltk.download` (network) when it is missing."""
    import nltk
    from nltk.tokenize import PunktTokenizer

    if str(path) not in nltk.data.path:
        nltk.data.path.insert(0, str(path))
    for lang in languages:
        try:
            PunktTokenizer(lang)
        except (LookupError, OSError, ValueError) as exc:
            raise ModelDirError(f"NLTK punkt_tab {lang!r} does not load from {path}: {exc}; {BAKE_HINT}") from exc


def _mono(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate <= 0:
        raise InvalidAudio(f"audio: invalid sample rate {sample_rate}")
    samples = np.asarray(wave, dtype=np.float32)
    if samples.ndim != 1:
        raise InvalidAudio(f"audio: expected mono samples, got an array of shape {samples.shape}")
    return samples


def _resample(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    return np.ascontiguousarray(resample(wave, sample_rate, ALIGN_SAMPLE_RATE), dtype=np.float32)


def _clean(word: str, alignable: frozenset[str]) -> str:
    """The characters of `word` the aligner knows: lower-cased, curly apostrophes straightened, accents folded."""
    out = []
    for ch in word.lower():
        ch = _APOSTROPHES.get(ch, ch)
        if ch in alignable:
            out.append(ch)
        elif (base := unicodedata.normalize("NFKD", ch)[:1]) in alignable:
            out.append(base)
    return "".join(out)


def _group_word_segments(
    segments: list[dict[str, Any]], known: list[Part], language: str
) -> list[Placed | None] | None:
    """whisperx's word segments regrouped to our words: one each, or one per character for languages
    whisperx aligns without spaces. None when the counts disagree."""
    from whisperx.alignment import LANGUAGES_WITHOUT_SPACES

    sizes = [len(w.clean) if language in LANGUAGES_WITHOUT_SPACES else 1 for w in known]
    if sum(sizes) != len(segments):
        return None
    out: list[Placed | None] = []
    pos = 0
    for size in sizes:
        group = segments[pos : pos + size]
        pos += size
        starts = [float(g["start"]) for g in group if "start" in g and np.isfinite(g["start"])]
        ends = [float(g["end"]) for g in group if "end" in g and np.isfinite(g["end"])]
        scores = [float(g["score"]) for g in group if "score" in g and np.isfinite(g["score"])]
        if not starts or not ends:
            out.append(None)
            continue
        out.append(Placed(min(starts), max(ends), round(sum(scores) / len(scores), 3) if scores else None))
    return out
