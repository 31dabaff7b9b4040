"""How the quality judge compares a chunk's text with what the ASR model heard: both sides folded into
one form, then jiwer's word error rate.

`Comparison(language, normalizer, lexicon)` is that form: the worker's normaliser for the job's
language and lexicon ("$3.50" -> "three dollars fifty cents", "Dr." -> "doctor", "FBI" -> "F B I"),
then `comparable` (lower case, numbers as words, spelled letters joined, contractions expanded, no
punctuation). Whisper writes digits and symbols, the chunk's text is spoken words: without the same
folding on both sides a correct take of "$3.50" would count as wrong words. No torch, no grammars
imported here (the normaliser is passed in).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import jiwer

NormalizeText = Callable[[str], str]
"""Text -> the form two texts are compared in (lower case, no punctuation, numbers as words)."""


class SpokenText(Protocol):
    """What the judge needs of the worker's `normalize.Normalizer` (not imported: it loads grammars)."""

    def spoken_text(self, text: str, language: str, lexicon: Mapping[str, str] | None = None) -> str: ...


_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?!\w)", re.IGNORECASE)
# "and" inside an amount, which the normaliser leaves out and a transcript may write: "one hundred and
# five", "three dollars and fifty cents"
_NUMBER_AND = re.compile(r"\b(hundred|thousand|million|billion|trillion|dollars?|euros?|pounds?) and\b")
_PER_CENT = re.compile(r"\bper cent\b")  # British spelling; the normaliser writes "percent"
_DASHES = jiwer.SubstituteRegexes({r"[-\u2010-\u2015/]": " ", r"[\u2018\u2019\u02bc]": "'"})
# Letters with dots between them: "F.B.I.", "f.b.i", "U.S." (not "e.g" inside a longer word).
_DOTTED_LETTERS = re.compile(r"(?<![\w.])[^\W\d_](?:\.[^\W\d_])+\.?(?!\w)")
_EDGE_PUNCTUATION = "\"'“”‘’«»()[]{}.,;:!?…"


def _spoken_number(match: re.Match[str], language: str) -> str:
    from num2words import num2words

    whole, fraction, suffix = match.group(1).replace(",", ""), match.group(2), match.group(3)
    try:
        if fraction is not None:
            words = num2words(Decimal(f"{whole}.{fraction}"), lang=language)
        elif suffix:
            words = num2words(int(whole), lang=language, to="ordinal")
        elif language == "en" and len(whole) == 4 and "," not in match.group(1) and 1100 <= int(whole) <= 2099:
            words = num2words(int(whole), lang=language, to="year")  # "1999": nineteen ninety-nine
        else:
            words = num2words(int(whole), lang=language)
    except (NotImplementedError, OverflowError, ValueError):
        return match.group(0)  # a language num2words does not speak: compare the digits as they are
    # "one hundred and twenty-five" and "one hundred twenty five" are the same number
    return " ".join(w for w in words.replace(",", " ").replace("-", " ").split() if w != "and")


def _spelled_letters(text: str) -> str:
    """Letter sequences as one word: "F.B.I." -> "FBI", and runs of two or more single capital letters,
    as the normaliser spells initialisms ("F B I", "P M,"), joined ("FBI", "PM,"). Capitals only, so
    the words "a" and "I" beside other words stay words; a run ends at punctuation."""
    text = _DOTTED_LETTERS.sub(lambda m: m.group(0).replace(".", ""), text)
    out: list[str] = []
    run = 0  # single capitals at the end of `out` that may still be joined
    for token in text.split():
        core = token.rstrip(_EDGE_PUNCTUATION)
        if len(core) == 1 and core.isupper():
            if run:
                out[-1] += token
            else:
                out.append(token)
            run = 0 if core != token else run + 1
        else:
            out.append(token)
            run = 0
    return " ".join(out)


def comparable(text: str, language: str = "en") -> str:
    """The judge's folding: spelled letters joined ("F B I" = "FBI" = "f.b.i."), lower case, numbers as
    words (num2words: "25" -> "twenty five", "1999" -> "nineteen ninety nine", "3rd" -> "third"),
    dashes as spaces, English contractions expanded, no punctuation, single spaces. Both sides of a
    comparison go through the same function (after the worker's normaliser: `Comparison`)."""
    text = _DASHES(_spelled_letters(text).lower())
    text = _NUMBER.sub(lambda m: _spoken_number(m, language), text)
    steps: list[jiwer.AbstractTransform] = []
    if language == "en":
        text = _PER_CENT.sub("percent", _NUMBER_AND.sub(r"\1", text))
        steps.append(jiwer.ExpandCommonEnglishContractions())
    steps += [jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
    return str(jiwer.Compose(steps)(text))


@dataclass(frozen=True)
class Comparison:
    """The form the judge compares a chunk's text and its transcript in: each goes through the worker's
    normaliser for the job's language and lexicon ("$3.50" -> "three dollars fifty cents", "7:30 p.m."
    -> "seven thirty P M", "Dr." -> "doctor", "FBI" -> "F B I"), then `comparable`. The chunk's text
    is spoken text already (the normaliser leaves it as it is); the transcript is written the way Whisper
    writes, digits and symbols included, so without the normaliser a correct take of "$3.50" would
    count as wrong words. Without a normaliser (`None`), `comparable` alone."""

    language: str = "en"
    normalizer: SpokenText | None = None
    lexicon: Mapping[str, str] | None = None

    def __call__(self, text: str) -> str:
        if self.normalizer is not None:
            text = self.normalizer.spoken_text(text, self.language, self.lexicon)
        return comparable(text, self.language)


def word_error_rate(text: str, transcript: str, normalize: NormalizeText) -> float:
    """jiwer's WER of `transcript` against `text` after `normalize`; 0 when the text has no words."""
    reference, hypothesis = normalize(text), normalize(transcript)
    if not reference.split():
        return 0.0
    return float(jiwer.process_words(reference, hypothesis).wer)
