"""The normalisation grammars (NVIDIA nemo-text-processing WFSTs) and how their output is mapped
back onto the written words: the only module that imports `nemo_text_processing`.

`Grammar.load(directory, language, input_case)` restores grammars `bake_models.py` compiled into
`directory`; it never compiles (`check_versions` first refuses grammars of another library version,
and a load that writes a file is refused too). `Grammar.speak(tokens)` normalises a short run of
tokens (one or a few written words and their neighbours) and returns, per token, the spoken words
it became, so every written word keeps an exact spoken span:

- the grammar's output is aligned to the tokens by word, ignoring case and punctuation; tokens it
  left alone keep their written spelling;
- where several tokens became one stretch of output ("Jan. 5, 2025"), the stretch is divided in
  order between them by what each token says on its own;
- output the grammar moved past its neighbour ("$5 million" -> "five million dollars") goes to
  the token before it.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tts_worker.errors import ModelDirError
from tts_worker.manifest import BAKE_HINT

logger = logging.getLogger(__name__)

LIBRARY = "nemo-text-processing"
# Languages whose grammars nemo-text-processing 1.2.0 builds deterministically (one reading per text).
LANGUAGES = ("en", "de", "es", "fr", "it", "sv", "hu", "pt", "zh", "ja", "ko", "vi", "hi", "ar", "hy", "rw")

_CANON = re.compile(r"[\W_]+")
_NEMO_LOGGER = "NeMo-text-processing"
CACHE_ENTRIES = 4096  # short texts (a word and its neighbours) per language: about 1 MB


def library_versions() -> tuple[str, str]:
    """(nemo-text-processing, pynini) versions installed here."""
    return metadata.version("nemo_text_processing"), metadata.version("pynini")


def check_versions(version: str, pynini: str) -> None:
    here = library_versions()
    if here != (version, pynini):
        raise ModelDirError(
            f"the normalisation grammars were compiled by {LIBRARY} {version} / pynini {pynini}, this worker has "
            f"{here[0]} / {here[1]}; {BAKE_HINT}"
        )


def quiet_library_logs() -> None:
    """nemo-text-processing logs every text it touches at INFO through its own stderr handler (and
    resets its level on each call): keep only its errors, through our handlers."""
    nemo = logging.getLogger(_NEMO_LOGGER)
    nemo.handlers.clear()
    if not any(isinstance(f, _ErrorsOnly) for f in nemo.filters):
        nemo.addFilter(_ErrorsOnly())


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def compile_grammars(directory: Path, language: str, input_case: str) -> list[str]:
    """Compile one language's grammars into `directory` (bake time only); the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in directory.iterdir()}
    _nemo_normalizer(directory, language, input_case)
    return sorted(p.name for p in directory.iterdir() if p.name not in before and p.is_file())


def _nemo_normalizer(directory: Path, language: str, input_case: str) -> Any:
    quiet_library_logs()
    from nemo_text_processing.text_normalization.normalize import Normalizer

    return Normalizer(input_case=input_case, lang=language, cache_dir=str(directory), overwrite_cache=False)


def canon(word: str) -> str:
    return _CANON.sub("", word.lower())


class Grammar:
    """One language's restored grammars. Calls are serialised: the library's parser keeps state."""

    def __init__(self, language: str, nemo: Any, abbreviations: frozenset[str], context: frozenset[str] | None) -> None:
        self.language = language
        self._nemo = nemo
        self.abbreviations = abbreviations  # written words the grammar rewrites although they are letters
        self.context = context  # lower-cased words that change a neighbour's reading; None: any word may
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, str] = OrderedDict()  # texts normalised lately (LRU, CACHE_ENTRIES)

    @classmethod
    def load(cls, directory: Path, language: str, input_case: str, files: list[str]) -> Grammar:
        missing = [name for name in files if not (directory / name).is_file()]
        if missing or not files:
            raise ModelDirError(f"the {language!r} normalisation grammars are missing {missing or files}; {BAKE_HINT}")
        before = sorted(p.name for p in directory.iterdir())
        t0 = time.perf_counter()
        nemo = _nemo_normalizer(directory, language, input_case)
        if sorted(p.name for p in directory.iterdir()) != before:
            raise ModelDirError(f"the {language!r} normalisation grammars did not match and were rebuilt; {BAKE_HINT}")
        logger.info("normalisation grammars for %r restored in %.2f s", language, time.perf_counter() - t0)
        return cls(language, nemo, _whitelist(language), _context(language))

    def normalize(self, text: str) -> str:
        """The text as spoken; the text itself when the grammar fails on it (it is never an error)."""
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
            try:
                spoken = str(self._nemo.normalize(text, punct_post_process=True))
            except Exception:  # the library's own failures (pynini, its parser) on odd input
                logger.warning("the %r normalisation grammar failed on a text; it is spoken as written", self.language)
                spoken = text
            self._cache[text] = spoken
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return spoken

    def speak(self, tokens: list[str], needs: Callable[[str], bool]) -> list[list[str]]:
        """The spoken words each token became: `[token]` where the grammar left it alone, an empty
        list where it dropped it. `needs(token)`: whether the grammar could change the token on its own."""

        def guide(token: str) -> list[str]:
            return self.normalize(token).split() if needs(token) else [token]

        return distribute(tokens, self.normalize(" ".join(tokens)).split(), guide)


def distribute(tokens: list[str], out: list[str], guide: Callable[[str], list[str]]) -> list[list[str]]:
    """Divide the output words among the tokens, in order, each token's share contiguous.

    First by aligning tokens to output words (tokens the grammar kept anchor the rest); when that
    leaves a token with nothing although it has letters or digits ("i.e. that" -> "that is that"), also
    by aligning what each token says on its own to the output, and the division closer to those wins."""
    shares: list[list[str]] = [[] for _ in tokens]
    matcher = difflib.SequenceMatcher(None, [canon(t) for t in tokens], [canon(w) for w in out], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for k in range(i2 - i1):
                shares[i1 + k].append(tokens[i1 + k])
        elif op == "insert":
            shares[i1 - 1 if i1 > 0 else 0].extend(out[j1:j2])
        elif op == "replace" and i2 - i1 == 1:
            shares[i1].extend(out[j1:j2])
        elif op == "replace":
            guides = [_parts(guide(t)) for t in tokens[i1:i2]]
            for k, part in enumerate(_partition(guides, out[j1:j2])):
                shares[i1 + k].extend(part)
    if not out or all(share or not canon(t) for t, share in zip(tokens, shares, strict=True)):
        return shares
    guides = [_parts(guide(t)) for t in tokens]
    projected = _project(tokens, guides, out)
    return projected if _fit(guides, projected) > _fit(guides, shares) else shares


def _parts(words: list[str]) -> list[str]:
    """Canonical words, hyphenated ones split ("five-zero" -> five, zero)."""
    return [c for w in words for part in w.split("-") if (c := canon(part))]


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b):
            prev, row[j + 1] = row[j + 1], prev + 1 if x == y else max(row[j + 1], row[j])
    return row[-1]


def _similarity(guide: list[str], words: list[str]) -> float:
    """How well output words match what a token says alone: words in order, minus a length difference."""
    if not words:
        return -5.0 if guide else 0.0
    part = _parts(words)
    return 2.0 * _lcs(guide, part) - 0.5 * abs(len(guide) - len(part))


def _fit(guides: list[list[str]], shares: list[list[str]]) -> float:
    return sum(_similarity(g, s) for g, s in zip(guides, shares, strict=True))


def _project(tokens: list[str], guides: list[list[str]], out: list[str]) -> list[list[str]]:
    """Each output word goes to the token whose own reading it matches; unmatched words follow the
    word before them."""
    expected = [(k, w) for k, g in enumerate(guides) for w in g]
    pieces = [(j, c) for j, w in enumerate(out) for c in _parts([w])]
    label: list[int | None] = [None] * len(out)
    matcher = difflib.SequenceMatcher(None, [w for _, w in expected], [c for _, c in pieces], autojunk=False)
    for block in matcher.get_matching_blocks():
        for d in range(block.size):
            j = pieces[block.b + d][0]
            if label[j] is None:
                label[j] = expected[block.a + d][0]
    first = next((x for x in label if x is not None), 0)
    shares: list[list[str]] = [[] for _ in tokens]
    current = first
    for j, word in enumerate(out):
        found = label[j]
        if found is not None and found > current:
            current = found
        shares[current].append(word)
    return [[t] if len(s) == 1 and canon(s[0]) == canon(t) else s for t, s in zip(tokens, shares, strict=True)]


def _partition(guides: list[list[str]], out: list[str]) -> list[list[str]]:
    """Split `out` into len(guides) contiguous parts, each as close as can be to its guide; no empty
    part unless there are too few words."""
    n, m = len(guides), len(out)
    allow_empty = m < n

    def score(k: int, a: int, b: int) -> float:
        if a == b and not allow_empty:
            return float("-inf")
        return _similarity(guides[k], out[a:b])

    best = [[float("-inf")] * (m + 1) for _ in range(n + 1)]
    cut = [[0] * (m + 1) for _ in range(n + 1)]
    best[0][0] = 0.0
    for k in range(1, n + 1):
        for b in range(m + 1):
            for a in range(b + 1):
                if best[k - 1][a] == float("-inf"):
                    continue
                value = best[k - 1][a] + score(k - 1, a, b)
                if value > best[k][b]:
                    best[k][b], cut[k][b] = value, a
    parts, b = [], m
    for k in range(n, 0, -1):
        a = cut[k][b]
        parts.append(out[a:b])
        b = a
    return parts[::-1]


def _whitelist(language: str) -> frozenset[str]:
    """The single written words the language's whitelist rewrites ("Dr.", "vs."): words of letters that
    must still reach the grammar."""
    import nemo_text_processing.text_normalization as tn

    data = Path(tn.__file__).parent / language / "data"
    names = ["whitelist/tts.tsv", "whitelist/symbol.tsv"] if language == "en" else ["whitelist.tsv", "whitelist/*.tsv"]
    keys: set[str] = set()
    for pattern in names:
        for path in data.glob(pattern):
            for line in path.read_text(encoding="utf-8").splitlines():
                key = line.split("\t", 1)[0].strip()
                if key and " " not in key:
                    keys.add(key)
    return frozenset(keys)


# English grammar data whose words change how a neighbouring number reads ("5 km", "March 3", "7 pm").
_EN_CONTEXT_FILES = (
    "measure/unit.tsv",
    "measure/unit_alternatives.tsv",
    "date/month_name.tsv",
    "date/month_abbr.tsv",
    "number/quantity_abbr.tsv",
    "money/currency_major.tsv",
    "money/currency_minor_singular.tsv",
    "money/currency_minor_plural.tsv",
    "time/suffix.tsv",
    "time/zone.tsv",
)
_EN_CONTEXT_WORDS = "hundred thousand million billion trillion percent per cent of to and dollars euros pounds cents"


def _context(language: str) -> frozenset[str] | None:
    if language != "en":
        return None
    import nemo_text_processing.text_normalization as tn

    data = Path(tn.__file__).parent / "en" / "data"
    words = set(_EN_CONTEXT_WORDS.split())
    for name in _EN_CONTEXT_FILES:
        for line in (data / name).read_text(encoding="utf-8").splitlines():
            for column in line.split("\t")[:2]:
                words.update(w.lower().rstrip(".") for w in column.split())
    return frozenset(w for w in words if w)
