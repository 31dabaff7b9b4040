"""English rules the normalisation grammars lack, decided per written word with its neighbours.

`rewrite(words, i)` returns what to do with `words[i]` (one whitespace-separated word) before the
grammars see it, or None to leave it to them:

- `Rewrite(text, final=True)`: `text` is the spoken form; the grammars never see the word.
  Initialisms spelled out ("FBI" -> "F B I", "U.S." -> "U S", "R&D" -> "R and D"), while those read
  as words stay words ("NASA", "UNESCO", emphasised "NOT"); regnal and numbered Roman numerals
  ("Louis XIV" -> "Louis the fourteenth", "World War II" -> "World War two"); decades ("2020s");
  "St." after a name ("Main St." -> "Main Street"); abbreviations the grammars keep ("Ave.", "Inc.");
  "am"/"pm" after a time ("7:30 pm" -> "7:30 P M").
- `Rewrite(text, final=False)`: `text` replaces the word in what the grammars read ("#1" ->
  "number 1", "~5" -> "approximately 5").

`spell_capitals(word)` spells a capitalised word the grammars produced ("PM", "HTTPS").
The choice of initialism versus word is a heuristic over curated lists; a request's lexicon
overrides it for any word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from num2words import num2words

LEADING = "\"'“‘«([{¿¡*_"
TRAILING = ".,;:!?\"'”’»)]}…*_"


@dataclass(frozen=True)
class Rewrite:
    text: str
    final: bool


# Read as words although written in capitals (acronyms, emphasised words). Anything else of two or
# three capitals is spelled; four and more are read as a word when they are pronounceable.
def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


WORDS = _set(
    """NASA NATO UNESCO UNICEF FIFA UEFA OPEC NAFTA ASEAN AIDS SARS MERS COVID LASER RADAR SONAR SCUBA
    IKEA LEGO FEMA OSHA DARPA NASDAQ CERN NOAA SWAT POTUS SCOTUS AWOL ASAP IMAX JSON YAML GIF JPEG PIN
    RAM ROM SIM ZIP ICE CAPTCHA ASCII BAFTA EFTA OK
    A I AM AN AS AT BE BY DO GO HE IF IN IS ME MY NO OF OH ON OR SO TO UP WE
    ALL AND ANY ARE BAD BIG BUT BUY CAN DAY DID END FOR FUN GET HAD HAS HER HIM HIS HOT HOW LET MAN NEW
    NOT NOW OFF OLD ONE OUR OUT OWN RUN SAD SAY SEE SHE THE TOO TOP TWO WAS WAY WHY WIN WON WOW YES YET
    YOU"""
)
SPELLED = _set("UCLA USDA USAF ACLU")
EXPANSIONS = {"OK": "okay"}

_VOWELS = set("AEIOU")
_ONSETS = _set("BL BR CH CL CR DR FL FR GL GR PH PL PR SC SH SK SL SM SN SP ST SW TH TR TW WH WR")
_CODAS = _set(
    "CH CK CS CT DS FT LD LF LK LM LP LS LT MP MS ND NG NK NS NT PS PT RB RD RF RK RM RN RP RS RT SH SK SP ST TH TS"
)

_CAPS = re.compile(r"^([A-Z]{2,})('s|’s|s)?$")
_DOTTED = re.compile(r"^(?:[A-Z]\.){2,}$")
_CAPS_AND = re.compile(r"^([A-Z]{1,3})&([A-Z]{1,3})$")
_ROMAN = re.compile(r"^(?=[MDCLXVI])M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})$")
_REGNAL = re.compile(r"^[IVX]{2,6}$")
_DECADE = re.compile(r"^(?:(\d{2})?(\d)0|'(\d)0)s$")
_NUMBER_SIGN = re.compile(r"^#(\d[\d,.]*)$")
_APPROX = re.compile(r"^~(\d.*)$")
_MERIDIEM = {"am": "A M", "pm": "P M", "a.m": "A M", "p.m": "P M"}

# A Roman numeral after these is a cardinal ("World War II" -> two); after another name, an ordinal.
CARDINAL_CUES = _set(
    "War Chapter Part Volume Vol Book Act Scene Section Article Phase Level Round Title Class Type Stage "
    "Episode Season Bowl Apollo Grade Mark Mk Gen Wave Schedule Appendix Annex Tier"
)
ABBREVIATIONS = {
    "Ave.": "Avenue",
    "Rd.": "Road",
    "Blvd.": "Boulevard",
    "Ln.": "Lane",
    "Sq.": "Square",
    "approx.": "approximately",
    "Approx.": "Approximately",
    "Corp.": "Corporation",
    "Inc.": "Incorporated",
    "Ltd.": "Limited",
    "Sen.": "Senator",
    "Rep.": "Representative",
    "Gen.": "General",
    "Capt.": "Captain",
    "Lt.": "Lieutenant",
    "Sgt.": "Sergeant",
    "Univ.": "University",
}
SPECIALS = {"24/7": "twenty four seven", "9/11": "nine eleven", "50/50": "fifty fifty", "AT&T": "A T and T"}


def split_punctuation(word: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation) of one written word."""
    core = word.lstrip(LEADING)
    lead = word[: len(word) - len(core)]
    stripped = core.rstrip(TRAILING)
    return lead, stripped, core[len(stripped) :]


def pronounceable(letters: str) -> bool:
    """Whether capitals read as an English-looking word: vowels between short consonant clusters."""
    up = letters.upper()
    kinds = "".join("v" if c in _VOWELS or (c == "Y" and i > 0) else "c" for i, c in enumerate(up))
    if "v" not in kinds or "ccc" in kinds or "vvv" in kinds:
        return False
    if kinds.startswith("cc") and up[:2] not in _ONSETS:
        return False
    return not (kinds.endswith("cc") and up[-2:] not in _CODAS)


def spell(letters: str) -> str:
    return " ".join(letters)


def _initialism(core: str) -> str | None:
    """The spoken form of a word in capitals, or None to read it as a word."""
    m = _CAPS.match(core)
    if not m:
        return None
    letters, suffix = m.group(1), m.group(2) or ""
    if letters in EXPANSIONS and not suffix:
        return EXPANSIONS[letters]
    if letters in WORDS or (letters not in SPELLED and len(letters) >= 4 and pronounceable(letters)):
        return None
    return spell(letters) + ("'s" if suffix else "")


def spell_capitals(word: str) -> str:
    """A capitalised word the grammars wrote ("PM", "HTTPS", a URL's "DOCS"): spelled, unless it reads
    as a word (then lower-cased, as the grammars wrote it only to mark it)."""
    lead, core, trail = split_punctuation(word)
    m = _CAPS.match(core)
    if not m or m.group(2) or m.group(1) in WORDS - {"AM"}:
        return word
    letters = m.group(1)
    if letters not in SPELLED and letters != "AM" and len(letters) >= 4 and pronounceable(letters):
        return lead + letters.lower() + trail
    return lead + spell(letters) + trail


def _roman(words: Sequence[str], i: int, core: str) -> str | None:
    if i == 0 or not _ROMAN.match(core):
        return None
    _, prev, prev_trail = split_punctuation(words[i - 1])
    if prev_trail or not prev[:1].isupper():
        return None
    value = _roman_value(core)
    if prev.rstrip(".") in CARDINAL_CUES:
        return str(num2words(value))
    if _REGNAL.match(core) and prev.isalpha() and not prev.isupper():
        return "the " + str(num2words(value, to="ordinal"))
    return None


def _roman_value(numeral: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for a, b in zip(numeral, [*numeral[1:], ""], strict=True):
        total += -values[a] if b and values[b] > values[a] else values[a]
    return total


def _decade(core: str) -> str | None:
    m = _DECADE.match(core)
    if not m:
        return None
    if m.group(3):  # '90s
        words = str(num2words(int(m.group(3)) * 10)).split()
    elif m.group(1):
        words = str(num2words(int(m.group(1) + m.group(2) + "0"), to="year")).replace("-", " ").split()
    else:
        words = str(num2words(int(m.group(2)) * 10)).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " ".join(words)


def _street(words: Sequence[str], i: int, core: str, trail: str) -> str | None:
    """ "St." after a capitalised word and before a lower-case one (or the end) is a street."""
    if core != "St" or not trail.startswith(".") or i == 0:
        return None
    _, prev, prev_trail = split_punctuation(words[i - 1])
    if not prev[:1].isupper() or prev_trail:
        return None
    if i + 1 < len(words) and split_punctuation(words[i + 1])[1][:1].isupper() and trail == ".":
        return None  # "St. Louis": the grammars read a saint
    return "Street" + trail[1:]


def rewrite(words: Sequence[str], i: int) -> Rewrite | None:
    word = words[i]
    if word in SPECIALS:
        return Rewrite(SPECIALS[word], final=True)
    lead, core, trail = split_punctuation(word)
    if core + trail[:1] in ABBREVIATIONS:
        return Rewrite(lead + ABBREVIATIONS[core + trail[:1]] + trail[1:], final=True)
    if _DOTTED.match(core + trail[:1]) and core.upper() == core:
        return Rewrite(lead + spell(core.replace(".", "")) + trail[1:], final=True)
    street = _street(words, i, core, trail)
    if street is not None:
        return Rewrite(lead + street, final=True)
    m = _CAPS_AND.match(core)
    if m:
        return Rewrite(f"{lead}{spell(m.group(1))} and {spell(m.group(2))}{trail}", final=True)
    if core.lower() in _MERIDIEM and i > 0 and any(c.isdigit() for c in words[i - 1]):
        return Rewrite(lead + _MERIDIEM[core.lower()] + (trail[1:] if "." in core else trail), final=True)
    roman = _roman(words, i, core)
    if roman is not None:
        return Rewrite(lead + roman + trail, final=True)
    decade = _decade(core)
    if decade is not None:  # "'90s": the apostrophe is part of the decade, not a quote
        return Rewrite(lead.rstrip("'’") + decade + trail, final=True)
    if (m := _NUMBER_SIGN.match(core)) is not None:
        return Rewrite(f"{lead}number {m.group(1)}{trail}", final=False)
    if (m := _APPROX.match(core)) is not None:
        return Rewrite(f"{lead}approximately {m.group(1)}{trail}", final=False)
    spoken = _initialism(core)
    if spoken is not None:
        return Rewrite(lead + spoken + trail, final=True)
    return None
