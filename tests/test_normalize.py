"""Text normalisation: written -> spoken per written word, the map back, lexicon, timings and chunks.

The normaliser is the one `bake_models.py --tiny` baked (real English grammars), loaded the way the
worker loads it."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from tts_worker.chunking import split_text
from tts_worker.errors import ModelDirError
from tts_worker.manifest import MANIFEST_NAME, load_manifest, load_verified
from tts_worker.normalize import (
    Normalized,
    Normalizer,
    WordSpan,
    split_spoken,
    written_timings,
)
from tts_worker.sanitize import LEXICON_MAX_ENTRIES, Lexicon
from tts_worker.words import WordTiming


@pytest.fixture(scope="module")
def normalizer(tiny_model_dir) -> Normalizer:
    return Normalizer.from_manifest(tiny_model_dir, load_verified(tiny_model_dir))


# written text, the whole spoken text, and each written word that changed -> what is spoken for it
CASES: list[tuple[str, str, dict[str, str]]] = [
    ("I have 3 cats.", "I have three cats.", {"3": "three"}),
    (
        "There were 1,234 people.",
        "There were one thousand two hundred and thirty four people.",
        {"1,234": "one thousand two hundred and thirty four"},
    ),
    ("He came 1st.", "He came first.", {"1st.": "first."}),
    ("the 22nd floor", "the twenty second floor", {"22nd": "twenty second"}),
    ("It is 3.14 exactly.", "It is three point one four exactly.", {"3.14": "three point one four"}),
    ("Add 1/2 cup.", "Add one half cup.", {"1/2": "one half"}),
    ("In 2025 we won.", "In twenty twenty five we won.", {"2025": "twenty twenty five"}),
    ("In 1999 we won.", "In nineteen ninety nine we won.", {"1999": "nineteen ninety nine"}),
    ("in the 1990s", "in the nineteen nineties", {"1990s": "nineteen nineties"}),
    ("the 2020s", "the twenty twenties", {"2020s": "twenty twenties"}),
    ("10,000,000 people", "ten million people", {"10,000,000": "ten million"}),
    ("it was -5 degrees", "it was minus five degrees", {"-5": "minus five"}),
    ("It costs $43,000.", "It costs forty three thousand dollars.", {"$43,000.": "forty three thousand dollars."}),
    ("It costs $3.50.", "It costs three dollars fifty cents.", {"$3.50.": "three dollars fifty cents."}),
    ("It costs €20.", "It costs twenty euros.", {"€20.": "twenty euros."}),
    ("a $5 million deal", "a five million dollars deal", {"$5": "five", "million": "million dollars"}),
    ("up 50% today", "up fifty percent today", {"50%": "fifty percent"}),
    ("up 12.5% today", "up twelve point five percent today", {"12.5%": "twelve point five percent"}),
    (
        "on Jan. 5, 2025",
        "on january fifth, twenty twenty five",
        {"Jan.": "january", "5,": "fifth,", "2025": "twenty twenty five"},
    ),
    ("on March 3rd", "on March third", {"3rd": "third"}),
    ("at 7:30 pm", "at seven thirty P M", {"7:30": "seven thirty", "pm": "P M"}),
    ("at 3 p.m. sharp", "at three P M sharp", {"3": "three", "p.m.": "P M"}),
    ("at 10:05 today", "at ten o five today", {"10:05": "ten o five"}),
    ("at 9am", "at nine A M", {"9am": "nine A M"}),
    (
        "Call 555-123-4567.",
        "Call five five five, one two three, four five six seven.",
        {"555-123-4567.": "five five five, one two three, four five six seven."},
    ),
    (
        "Call (800) 555-0199 now",
        "Call eight hundred, five five five, zero one nine nine now",
        {"(800)": "eight hundred,", "555-0199": "five five five, zero one nine nine"},
    ),
    ("on 01/05/2025 we", "on january fifth twenty twenty five we", {"01/05/2025": "january fifth twenty twenty five"}),
    ("it was 30 °C", "it was thirty degrees Celsius", {"30": "thirty", "°C": "degrees Celsius"}),
    ("this, i.e. that", "this, that is that", {"i.e.": "that is"}),
    ("pens, paper, etc.", "pens, paper, etcetera.", {"etc.": "etcetera."}),
    ("the '80s music", "the eighties music", {"'80s": "eighties"}),
    ("a 5 km run", "a five kilometers run", {"5": "five", "km": "kilometers"}),
    ("it weighs 12kg", "it weighs twelve kilograms", {"12kg": "twelve kilograms"}),
    ("at 100 mph", "at one hundred miles per hour", {"100": "one hundred", "mph": "miles per hour"}),
    ("Dr. Smith is here.", "doctor Smith is here.", {"Dr.": "doctor"}),
    ("Mr. Jones is here.", "mister Jones is here.", {"Mr.": "mister"}),
    ("He lives on Main St. now.", "He lives on Main Street now.", {"St.": "Street"}),
    ("St. Louis is big.", "Saint Louis is big.", {"St.": "Saint"}),
    ("fruit, e.g. apples", "fruit, for example apples", {"e.g.": "for example"}),
    ("cats vs. dogs", "cats versus dogs", {"vs.": "versus"}),
    ("salt & pepper", "salt and pepper", {"&": "and"}),
    ("me @ home", "me at home", {"@": "at"}),
    ("2 + 2 = 4", "two plus two equals four", {"2": "two", "+": "plus", "=": "equals", "4": "four"}),
    ("my #1 fan", "my number one fan", {"#1": "number one"}),
    ("R&D costs", "R and D costs", {"R&D": "R and D"}),
    ("the FBI agent", "the F B I agent", {"FBI": "F B I"}),
    ("the CEO's car", "the C E O's car", {"CEO's": "C E O's"}),
    ("the U.S. army", "the U S army", {"U.S.": "U S"}),
    ("NASA launched it", "NASA launched it", {}),
    ("UNESCO sites", "UNESCO sites", {}),
    (
        "see https://example.com/docs",
        "see H T T P S colon slash slash example dot com slash docs",
        {"https://example.com/docs": "H T T P S colon slash slash example dot com slash docs"},
    ),
    (
        "at www.example.com/index.html",
        "at W W W dot example dot com slash index dot H T M L",
        {"www.example.com/index.html": "W W W dot example dot com slash index dot H T M L"},
    ),
    (
        "mail john.doe@example.com now",
        "mail john dot doe at example dot com now",
        {"john.doe@example.com": "john dot doe at example dot com"},
    ),
    ("World War II ended", "World War two ended", {"II": "two"}),
    ("Louis XIV ruled", "Louis the fourteenth ruled", {"XIV": "the fourteenth"}),
    ("open 24/7", "open twenty four seven", {"24/7": "twenty four seven"}),
    ("Hello,\nworld.  Fine!", "Hello,\nworld.  Fine!", {}),
]


def _check_spans(norm: Normalized) -> None:
    """Every span is exact in both texts, in order, and the spoken words are the spans' words."""
    assert [w.written for w in norm.words] == norm.written.split()
    for w in norm.words:
        assert norm.written[w.start : w.end] == w.written
        assert norm.spoken[w.spoken_start : w.spoken_end] == w.spoken
    assert [s for w in norm.words for s in w.spoken.split()] == norm.spoken.split()


@pytest.mark.parametrize(("written", "spoken", "changed"), CASES, ids=[c[0] for c in CASES])
def test_written_to_spoken_and_back(normalizer, written, spoken, changed):
    norm = normalizer.normalize(written, "en")
    assert norm.written == written
    assert norm.spoken == spoken
    _check_spans(norm)
    assert {w.written: w.spoken for w in norm.words if w.changed} == changed


def test_the_table_covers_forty_cases():
    assert len(CASES) >= 40


def test_ranges_map_whole_changed_words_and_exact_elsewhere(normalizer):
    norm = normalizer.normalize("Pay $3.50 now, please.", "en")
    assert norm.spoken == "Pay three dollars fifty cents now, please."
    price = norm.words[1]
    assert norm.spoken_range(price.start, price.end) == (price.spoken_start, price.spoken_end)
    assert norm.spoken_range(price.start + 1, price.start + 2) == (price.spoken_start, price.spoken_end)
    # inside "dollars": the whole written word
    at = norm.spoken.index("dollars")
    assert norm.written_range(at, at + 3) == (price.start, price.end)
    # unchanged words map character for character
    assert norm.written_range(norm.spoken.index("please"), len(norm.spoken)) == (
        norm.written.index("please"),
        len(norm.written),
    )
    assert norm.spoken_range(0, 3) == (0, 3)


def test_lexicon_is_applied_first_and_verbatim(normalizer):
    norm = normalizer.normalize(
        'A GIF, "Nguyen" and gif 2025.', "en", {"GIF": "jif", "Nguyen": "win", "2025": "2 K 25"}
    )
    assert norm.spoken == 'A jif, "win" and jif 2 K 25.'
    _check_spans(norm)
    assert {w.written: w.spoken for w in norm.words if w.changed} == {
        "GIF,": "jif,",
        '"Nguyen"': '"win"',
        "gif": "jif",
        "2025.": "2 K 25.",
    }


def test_languages_without_grammars_get_only_the_lexicon(normalizer):
    assert normalizer.languages == ["en"]
    norm = normalizer.normalize("Ich habe 3 Katzen und ein GIF.", "de", {"GIF": "dschiff"})
    assert norm.spoken == "Ich habe 3 Katzen und ein dschiff."


def test_identity_is_the_text_itself():
    text = "  $3.50 at 7:30,\nthen FBI.  "
    norm = Normalized.identity(text)
    assert norm.spoken == text
    assert not any(w.changed for w in norm.words)
    assert norm.written_range(3, 9) == (3, 9)


def test_spoken_text_for_reference_transcripts(normalizer):
    assert normalizer.spoken_text("Some call me 2 times.", "en") == "Some call me two times."


class _Request(BaseModel):
    lexicon: Lexicon | None = None


def _errors(lexicon: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        _Request.model_validate({"lexicon": lexicon})
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_lexicon_errors_name_the_entry():
    assert _errors({"GIF": " ", "ok": "fine", "two words": "x", "Bad": "a\nb"}) == [
        ("lexicon.GIF", "the spoken form must not be empty"),
        ("lexicon.two words", "the written word must be one word, without white space"),
        ("lexicon.Bad", "the spoken form must not contain control characters"),
    ]
    assert _errors({"x" * 65: "long"}) == [
        ("lexicon." + "x" * 40 + "...", "the written word is 65 characters long; the limit is 64")
    ]
    too_many = {f"w{i}": "x" for i in range(LEXICON_MAX_ENTRIES + 1)}
    assert _errors(too_many) == [("lexicon", f"Value error, has 201 entries; the limit is {LEXICON_MAX_ENTRIES}")]
    assert _errors({"": "x"})[0] == ("lexicon.", "the written word must not be empty")
    assert _Request.model_validate({"lexicon": {" GIF": " jif  gif "}}).lexicon == {"GIF": "jif gif"}


def _timing(word: str, start: float, end: float, interpolated: bool = False) -> WordTiming:
    return WordTiming(word=word, start=start, end=end, score=None if interpolated else 0.9, interpolated=interpolated)


def test_written_timings_one_per_written_word_spanning_its_spoken_words(normalizer):
    norm = normalizer.normalize("It costs $3.50 at 7:30 pm.", "en")
    spoken = norm.spoken.split()
    assert spoken == ["It", "costs", "three", "dollars", "fifty", "cents", "at", "seven", "thirty", "P", "M."]
    times = [
        _timing(w, i * 0.5, i * 0.5 + 0.4, interpolated=w in {"dollars", "seven", "thirty"})
        for i, w in enumerate(spoken)
    ]
    out = written_timings(norm, times)
    assert [t["word"] for t in out] == ["It", "costs", "$3.50", "at", "7:30", "pm."]
    price, clock = out[2], out[4]
    assert price == {
        "word": "$3.50",
        "start": 1.0,
        "end": 2.9,
        "score": 0.9,
        "interpolated": False,
        "spoken": "three dollars fifty cents",
    }
    assert (clock["start"], clock["end"], clock["interpolated"], clock["spoken"]) == (3.5, 4.4, True, "seven thirty")
    assert "spoken" not in out[0] and out[0] == times[0]
    assert out[5]["spoken"] == "P M."
    with pytest.raises(ValueError, match="10 timings for 11 spoken words"):
        written_timings(norm, times[:-1])


def test_written_timings_of_a_word_nothing_was_spoken_for():
    norm = Normalized(
        "a - b",
        "a  b",
        (WordSpan("a", 0, 1, "a", 0, 1), WordSpan("-", 2, 3, "", 2, 2), WordSpan("b", 4, 5, "b", 3, 4)),
    )
    out = written_timings(norm, [_timing("a", 0.0, 0.3), _timing("b", 0.5, 0.9)])
    assert out[1] == {"word": "-", "start": 0.3, "end": 0.3, "score": None, "interpolated": True, "spoken": ""}


def test_split_spoken_without_normalisation_is_split_text():
    text = "One sentence here. Another, with a clause; and more words to split at spaces."
    for limit in (12, 30, 200):
        chunks = split_spoken(Normalized.identity(text), limit)
        assert [(c.text, c.start, c.end) for c in chunks] == [(c.text, c.start, c.end) for c in split_text(text, limit)]
        assert all((c.spoken_start, c.spoken_end) == (c.start, c.end) for c in chunks)


def test_split_spoken_keeps_each_written_word_whole(normalizer):
    text = "We paid $43,000 and $3.50 on Jan. 5, 2025, at 7:30 pm for 12kg."
    norm = normalizer.normalize(text, "en")
    for limit in (30, 40, 60):
        chunks = split_spoken(norm, limit)
        assert all(len(c.text.encode()) <= limit for c in chunks)
        assert " ".join(c.text for c in chunks).split() == norm.spoken.split()
        for w in norm.words:  # no chunk boundary inside a written word's spoken form
            assert not any(w.spoken_start < c.spoken_start < w.spoken_end for c in chunks)
        assert [w for c in chunks for w in text[c.start : c.end].split()] == text.split()
        for a, b in itertools.pairwise(chunks):
            assert a.end <= b.start


def test_split_spoken_cuts_a_single_word_longer_than_the_budget(normalizer):
    norm = normalizer.normalize("See www.example.com/one/two now.", "en")
    chunks = split_spoken(norm, 24)
    long_word = norm.words[1]
    cut = [c for c in chunks if long_word.spoken_start < c.spoken_start < long_word.spoken_end]
    assert cut, "the spoken URL is longer than the budget and must be cut"
    first = next(c for c in chunks if c.spoken_start <= long_word.spoken_start < c.spoken_end)
    assert first.end == long_word.end  # the word belongs to the chunk it starts in
    assert all(c.start == c.end == long_word.end for c in cut[:-1])
    assert "".join(c.text for c in chunks).replace(" ", "") == norm.spoken.replace(" ", "")


def test_the_tiny_bake_describes_the_grammars_and_loading_writes_nothing(tiny_model_dir):
    manifest = load_verified(tiny_model_dir)
    spec = manifest.components.normalize
    assert spec is not None and spec.languages == ["en"] and spec.library == "nemo-text-processing"
    grammar_dir = tiny_model_dir / spec.dir / "en"
    assert sorted(p.name for p in grammar_dir.iterdir()) == sorted(spec.grammars["en"])
    assert all(f"{spec.dir}/en/{name}" in manifest.files for name in spec.grammars["en"])
    before = {p: p.stat().st_mtime_ns for p in grammar_dir.iterdir()}
    loaded = Normalizer.load(tiny_model_dir, spec)
    assert {p: p.stat().st_mtime_ns for p in grammar_dir.iterdir()} == before
    assert loaded.spoken_text("5 km", "en") == "five kilometers"


def test_load_refuses_grammars_it_would_have_to_rebuild(tiny_model_dir, tmp_path):
    spec = load_verified(tiny_model_dir).components.normalize
    assert spec is not None
    other = spec.model_copy(update={"version": "0.0.1"})
    with pytest.raises(ModelDirError, match="compiled by nemo-text-processing 0.0.1"):
        Normalizer.load(tiny_model_dir, other)
    missing = spec.model_copy(update={"grammars": {"en": [*spec.grammars["en"], "absent.far"]}})
    with pytest.raises(ModelDirError, match="missing"):
        Normalizer.load(tiny_model_dir, missing)


def test_a_malformed_normalize_component_stops_the_worker(tiny_model_dir, tmp_path):
    manifest = load_verified(tiny_model_dir)
    raw = manifest.model_dump(mode="json")
    raw["components"]["normalize"] = {"grammars": "en"}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ModelDirError, match="not a valid manifest"):
        load_manifest(tmp_path)
    absent = manifest.model_copy(update={"components": manifest.components.model_copy(update={"normalize": None})})
    with pytest.raises(ModelDirError, match="no text normalisation grammars"):
        Normalizer.from_manifest(tiny_model_dir, absent)


def _bake_models():
    if "bake_models" not in sys.modules:  # loaded as test_bake.py loads it: by path, registered
        spec = importlib.util.spec_from_file_location("bake_models", Path(__file__).parents[1] / "bake_models.py")
        assert spec and spec.loader
        sys.modules["bake_models"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["bake_models"])
    return sys.modules["bake_models"]


def test_bake_copies_compiled_grammars_from_its_cache(tmp_path):
    from tts_worker.normalize_grammar import LIBRARY, library_versions

    bake_models = _bake_models()

    version, pynini = library_versions()
    cached = tmp_path / "cache" / f"{LIBRARY}-{version}-pynini-{pynini}-cased" / "en"
    cached.mkdir(parents=True)
    (cached / "a.far").write_bytes(b"compiled once")
    (cached / "COMPLETE").write_text("a.far\n")
    spec, written = bake_models.bake_normalize(tmp_path / "models", ["en"], tmp_path / "cache")
    assert written == ["normalize/en/a.far"]
    assert (tmp_path / "models/normalize/en/a.far").read_bytes() == b"compiled once"
    assert spec.grammars == {"en": ["a.far"]} and spec.version == version and spec.pynini == pynini
    with pytest.raises(bake_models.BakeError, match="no normalisation grammars for \\['xx'\\]"):
        bake_models.bake_normalize(tmp_path / "models", ["xx"], tmp_path / "cache")


def test_aligning_the_spoken_text_places_numbers_and_symbols(normalizer, tiny_model_dir):
    """The synthesis stage's order: normalise, chunk the spoken text, align it per chunk, map back."""
    import numpy as np

    from tts_worker.alignment import Aligner

    aligner = Aligner.load(tiny_model_dir, load_verified(tiny_model_dir), "cpu")
    text = "It costs $3.50 & 12kg at 7:30 pm on Jan. 5, 2025."
    wave = (np.random.default_rng(0).standard_normal(24_000 * 6) * 0.1).astype(np.float32)
    as_written = aligner.align(wave, 24_000, text, [])
    assert [t["word"] for t in as_written if t["interpolated"]] == ["$3.50", "&", "7:30", "5,", "2025."]

    norm = normalizer.normalize(text, "en")
    chunks = split_spoken(norm, 40)
    assert len(chunks) > 1
    bounds = np.linspace(0, len(wave), len(chunks) + 1).astype(int)
    ranges = [
        (c.spoken_start, c.spoken_end, int(a), int(b)) for c, a, b in zip(chunks, bounds, bounds[1:], strict=False)
    ]
    spoken = aligner.align(wave, 24_000, norm.spoken, ranges)
    words = written_timings(norm, spoken)
    assert [t["word"] for t in words] == text.split()
    assert not any(t["interpolated"] for t in words)
    assert {t["word"]: t["spoken"] for t in words if "spoken" in t} == {
        w.written: w.spoken for w in norm.words if w.changed
    }
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))
