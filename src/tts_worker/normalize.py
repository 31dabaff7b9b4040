"""Text normalisation: the written text becomes the text that is spoken ("$3.50" -> "three dollars
fifty cents"), and everything said about the spoken text maps back to the written words.

    norm = normalizer.normalize(text, language, lexicon)   # Normalized: written, spoken, words
    chunks = split_spoken(norm, max_bytes)                  # synthesise chunk.text; chunk.start/end: written
    timings = aligner.align(wave, rate, norm.spoken, [(c.spoken_start, c.spoken_end, s0, s1), ...])
    words = written_timings(norm, timings)                  # one entry per written word, as written

Contract of `Normalized`: `words` holds one `WordSpan` per whitespace-separated written word, in
order; `spoken` is the written text with each word replaced by its spoken form (the white space
between words is kept), so the whitespace-separated words of `spoken` are the words of each span's
`spoken`, in order. A word whose spoken form equals its written form maps character for character;
one that changed maps as a whole. `Normalized.identity(text)` is the unnormalised text (`normalize:
false`): spoken == written.

What is normalised (per language, by the grammars `bake_models.py` compiled into MODEL_DIR; English
adds `tts_worker.normalize_en`): only words with digits, symbols or inner dots, short capitalised
abbreviations ("St.") and the grammars' whitelisted words reach them, each with `CONTEXT_WORDS`
neighbour per side inside its sentence (beside a number, only a word that changes how it reads:
a unit, a month, "million", "pm"...).
A request's `lexicon` is applied first and wins: a written word it names is spoken as its entry says,
unchanged. Languages without grammars get the lexicon only. The grammars never fail a job: on a text
they cannot read, it is spoken as written.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tts_worker import normalize_en
from tts_worker.chunking import split_text
from tts_worker.errors import ModelDirError
from tts_worker.manifest import BAKE_HINT, Manifest, NormalizerSpec
from tts_worker.normalize_grammar import Grammar, check_versions, quiet_library_logs
from tts_worker.readiness import Readiness
from tts_worker.words import WordTiming

logger = logging.getLogger(__name__)

# The grammars' cost grows with the length of what they read (about 1-4 ms a character on one CPU
# core), so they read only the words that need them, each with one neighbour per side: the context
# a reading depends on ("5 km", "$5 million", "March 3rd"), within a sentence.
CONTEXT_WORDS = 1
MAX_RUN_WORDS = 12  # longest run of words given to the grammars at once

_WORD = re.compile(r"\S+")
_HYPHENATED = re.compile(r"(?<=\w)-(?=\w)")
_SYMBOLS = set("&@%+#$€£¥₹=~°/\\*<>|^")
_SENTENCE_END = re.compile(r"[a-z]{3,}[.][\"'”’)\]]*$")  # "here." ends a sentence; "Jan." or "5." may not


@dataclass(frozen=True)
class WordSpan:
    """One whitespace-separated written word and what is spoken for it."""

    written: str
    start: int  # [start, end) in the written text
    end: int
    spoken: str  # "" only when nothing is spoken for it
    spoken_start: int  # [spoken_start, spoken_end) in the spoken text
    spoken_end: int

    @property
    def changed(self) -> bool:
        return self.spoken != self.written


@dataclass(frozen=True)
class Normalized:
    written: str
    spoken: str
    words: tuple[WordSpan, ...]

    @classmethod
    def identity(cls, text: str) -> Normalized:
        """The text spoken as written (`normalize: false`)."""
        matches = list(_WORD.finditer(text))
        return _assemble(text, [m.span() for m in matches], [m.group() for m in matches])

    def spoken_range(self, char_start: int, char_end: int) -> tuple[int, int]:
        """The spoken text of a written range; a changed word touched by the range is taken whole."""
        return self._map(char_start, False, "floor"), self._map(char_end, False, "ceil")

    def written_range(self, spoken_start: int, spoken_end: int) -> tuple[int, int]:
        """The written text a spoken range was made from; a changed word touched by it is taken whole."""
        return self._map(spoken_start, True, "floor"), self._map(spoken_end, True, "ceil")

    def _map(self, pos: int, from_spoken: bool, mode: str) -> int:
        """An offset in one text mapped to the other: exact outside changed words; inside one, its
        start (`floor`) or its end (`ceil`)."""
        spans = self.words
        starts = [w.spoken_start if from_spoken else w.start for w in spans]
        k = bisect.bisect_right(starts, pos) - 1
        if k < 0:
            return pos  # leading white space is the same in both texts
        w = spans[k]
        src = (w.spoken_start, w.spoken_end) if from_spoken else (w.start, w.end)
        dst = (w.start, w.end) if from_spoken else (w.spoken_start, w.spoken_end)
        if pos >= src[1]:
            return dst[1] + (pos - src[1])  # white space after the word, the same in both
        if not w.changed:
            return dst[0] + (pos - src[0])
        return dst[0] if pos == src[0] or mode == "floor" else dst[1]

    def part(self, start: int, end: int) -> Normalized:
        """The written words inside [start, end) (a chunk's range), normalised as they are here."""
        words = [w for w in self.words if start <= w.start and w.end <= end]
        return _assemble(
            self.written[start:end], [(w.start - start, w.end - start) for w in words], [w.spoken for w in words]
        )

    def spoken_word_ranges(self) -> list[tuple[int, int]]:
        """For each written word, the [first, last) indices of its words among `spoken.split()`."""
        out, k = [], 0
        for w in self.words:
            n = len(w.spoken.split())
            out.append((k, k + n))
            k += n
        return out


def _assemble(text: str, spans: list[tuple[int, int]], spoken: list[str]) -> Normalized:
    parts: list[str] = []
    words: list[WordSpan] = []
    pos = length = 0
    for (start, end), form in zip(spans, spoken, strict=True):
        gap = text[pos:start]
        parts.append(gap)
        length += len(gap)
        form = " ".join(form.split())
        parts.append(form)
        words.append(WordSpan(text[start:end], start, end, form, length, length + len(form)))
        length += len(form)
        pos = end
    parts.append(text[pos:])
    return Normalized(text, "".join(parts), tuple(words))


@dataclass(frozen=True)
class SpokenChunk:
    """One generation's text: `text` (spoken) is synthesised; [start, end) is its place in the written text."""

    text: str
    spoken_start: int
    spoken_end: int
    start: int
    end: int


def split_spoken(norm: Normalized, max_bytes: int) -> list[SpokenChunk]:
    """`chunking.split_text` on the spoken text, never cutting inside one written word's spoken form
    unless that form alone is longer than `max_bytes`; each chunk maps back to its written range.
    On `Normalized.identity(text)` the chunks are split_text's own."""
    protected = list(norm.spoken)
    for w in norm.words:
        if w.changed:  # its spoken words are one unit: no break between them
            for k in range(w.spoken_start, w.spoken_end):
                if protected[k].isspace():
                    protected[k] = "_"  # one byte, as a space: the byte budget is unchanged
    chunks = []
    for c in split_text("".join(protected), max_bytes):
        start = norm._map(c.start, True, "ceil")  # a word cut by a chunk belongs to the chunk it starts in
        end = max(norm._map(c.end, True, "ceil"), start)
        while start < end and norm.written[start].isspace():
            start += 1
        chunks.append(SpokenChunk(norm.spoken[c.start : c.end], c.start, c.end, start, end))
    return chunks


def written_timings(norm: Normalized, spoken: list[WordTiming]) -> list[WordTiming]:
    """Timings of the spoken words (one per whitespace-separated word of `norm.spoken`, as the aligner
    gives them) as timings of the written words: one per written word, spelled as written, with
    `spoken` where what was said differs; it spans all of its spoken words and is interpolated only if
    all of them were. A word nothing was spoken for takes no time, at the end of the word before it."""
    ranges = norm.spoken_word_ranges()
    total = ranges[-1][1] if ranges else 0
    if len(spoken) != total:
        raise ValueError(f"{len(spoken)} timings for {total} spoken words")
    out: list[WordTiming] = []
    last = spoken[0]["start"] if spoken else 0.0
    for w, (a, b) in zip(norm.words, ranges, strict=True):
        parts = spoken[a:b]
        if parts:
            scores = [p["score"] for p in parts if p["score"] is not None]
            entry = WordTiming(
                word=w.written,
                start=parts[0]["start"],
                end=parts[-1]["end"],
                score=round(sum(scores) / len(scores), 3) if scores else None,
                interpolated=all(p["interpolated"] for p in parts),
            )
            last = parts[-1]["end"]
        else:
            entry = WordTiming(word=w.written, start=last, end=last, score=None, interpolated=True)
        if w.changed:
            entry["spoken"] = w.spoken
        out.append(entry)
    return out


# --- lexicon: per-request pronunciations (validated in sanitize.py) ----------------------------


def _lexicon_form(word: str, lexicon: Mapping[str, str], folded: Mapping[str, str]) -> str | None:
    if word in lexicon:
        return lexicon[word]
    lead, core, trail = normalize_en.split_punctuation(word)
    for candidate, rest in ((core + trail[:1], trail[1:]), (core, trail)):
        hit = lexicon.get(candidate) or folded.get(candidate.casefold())
        if candidate and hit:
            return lead + hit + rest
    return None


# --- the normaliser -----------------------------------------------------------------------------


class Normalizer:
    """The baked grammars of each language, loaded once; `normalize` is safe to call from threads."""

    def __init__(self, grammars: dict[str, Grammar], *, pending: bool = False) -> None:
        self._grammars = grammars
        self._source: tuple[Path, NormalizerSpec] | None = None
        self.readiness = Readiness("the normalisation grammars", pending=pending)

    @classmethod
    def load(cls, model_dir: Path, spec: NormalizerSpec, *, deferred: bool = False) -> Normalizer:
        """Restore what bake prepared (`components.normalize`); never compiles or downloads. `deferred`:
        check the library versions now, restore in `load_grammars` later (in the background); every
        `normalize` waits until it has."""
        check_versions(spec.version, spec.pynini)
        normalizer = cls({}, pending=deferred)
        normalizer._source = (model_dir, spec)
        if not deferred:
            normalizer.load_grammars()
        return normalizer

    def load_grammars(self) -> None:
        if self._source is None:
            return
        model_dir, spec = self._source
        quiet_library_logs()
        root = model_dir / spec.dir
        self._grammars = {
            lang: Grammar.load(root / lang, lang, spec.input_case, files) for lang, files in spec.grammars.items()
        }

    @classmethod
    def from_manifest(cls, model_dir: Path, manifest: Manifest, *, deferred: bool = False) -> Normalizer:
        spec = manifest.components.normalize
        if spec is None:
            raise ModelDirError(f"MODEL_DIR {model_dir} has no text normalisation grammars; {BAKE_HINT}")
        return cls.load(model_dir, spec, deferred=deferred)

    @property
    def languages(self) -> list[str]:
        return sorted(self._source[1].grammars if self._source else self._grammars)

    def normalize(self, text: str, language: str, lexicon: Mapping[str, str] | None = None) -> Normalized:
        """`text` as spoken, each written word mapped to its spoken form."""
        self.readiness.wait()
        matches = list(_WORD.finditer(text))
        words = [m.group() for m in matches]
        forms: list[str | None] = [None] * len(words)  # decided spoken forms
        reads = list(words)  # what the grammar reads for the undecided ones
        folded = {k.casefold(): v for k, v in (lexicon or {}).items()}
        for i, word in enumerate(words):
            if lexicon and (hit := _lexicon_form(word, lexicon, folded)) is not None:
                forms[i] = hit
            elif language == "en" and (rule := normalize_en.rewrite(words, i)) is not None:
                if rule.final:
                    forms[i] = rule.text
                else:
                    reads[i] = rule.text
        grammar = self._grammars.get(language)
        if grammar is not None:
            needs = [f is None and _needs_grammar(r, grammar) for f, r in zip(forms, reads, strict=True)]
            for run in _runs(needs, forms, words, grammar.context):
                for i, spoken in zip(run, self._speak(grammar, [reads[i] for i in run], language), strict=True):
                    forms[i] = spoken
        spoken_forms = [word if form is None else form for word, form in zip(words, forms, strict=True)]
        return _assemble(text, [m.span() for m in matches], spoken_forms)

    def spoken_text(self, text: str, language: str, lexicon: Mapping[str, str] | None = None) -> str:
        """Plain text in, spoken text out: for reference transcripts (`ref_text`, ASR output, library voices)."""
        return self.normalize(text, language, lexicon).spoken

    @staticmethod
    def _speak(grammar: Grammar, reads: list[str], language: str) -> list[str]:
        """Spoken forms of a run of adjacent written words (each read as one or more tokens)."""
        owner = [i for i, read in enumerate(reads) for _ in read.split()]
        tokens = [t for read in reads for t in read.split()]
        shares = grammar.speak(tokens, lambda token: _needs_grammar(token, grammar))
        spoken: list[list[str]] = [[] for _ in reads]
        for i, token, share in zip(owner, tokens, shares, strict=True):
            if share != [token]:
                share = [w for word in share for w in _HYPHENATED.sub(" ", word).split()]
                if language == "en":
                    share = [normalize_en.spell_capitals(w) for w in share]
            spoken[i].extend(share)
        return [" ".join(s) for s in spoken]


def _core(word: str) -> str:
    return normalize_en.split_punctuation(word)[1]


def _needs_grammar(word: str, grammar: Grammar) -> bool:
    """Whether a written word is more than letters and punctuation, as far as the grammar is concerned."""
    if any(c.isdigit() or c in _SYMBOLS for c in word):
        return True
    _, core, trail = normalize_en.split_punctuation(word)
    if "." in core or core + trail[:1] in grammar.abbreviations or core in grammar.abbreviations:
        return True
    return trail.startswith(".") and core[:1].isupper() and len(core) <= 4  # "St.", "Jan.", "Ft."


def _runs(
    needs: list[bool], forms: list[str | None], words: list[str], context: frozenset[str] | None
) -> list[list[int]]:
    """Index runs for the grammar: each word that needs it with up to CONTEXT_WORDS undecided neighbours
    each side in its sentence (only words in `context`, when given), touching runs merged within a
    sentence, none longer than MAX_RUN_WORDS."""
    ends_sentence = [
        w.rstrip("\"'”’)]").endswith(("!", "?", "…")) or _SENTENCE_END.search(w) is not None for w in words
    ]
    digits = [any(c.isdigit() for c in w) for w in words]
    take = [False] * len(needs)
    for i, need in enumerate(needs):
        if not need:
            continue
        take[i] = True
        for step in (-1, 1):
            j = i + step
            while (
                0 <= j < len(needs)
                and abs(j - i) <= CONTEXT_WORDS
                and forms[j] is None
                and not ends_sentence[j - 1 if step > 0 else j]
                and (context is None or needs[j] or not digits[i] or _core(words[j]).lower().rstrip(".") in context)
            ):
                take[j] = True
                j += step
    runs: list[list[int]] = []
    for i, taken in enumerate(take):
        if not taken:
            continue
        if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < MAX_RUN_WORDS and not ends_sentence[i - 1]:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs
