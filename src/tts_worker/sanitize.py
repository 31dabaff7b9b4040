"""Untrusted strings at the job boundary: valid Unicode, no control characters, something to speak.

Contract
- `input_problems(data)`: walks a decoded JSON value (dicts, lists, strings, numbers) without
  recursion and returns one `"<path>: ..."` message per string that is not valid Unicode text (a
  lone surrogate such as "\\ud800", which JSON's `\\ud800` escape decodes to in Python, and which
  no UTF-8 encoder or JSON writer accepts), per object key that is not a string, and per container
  past the size limits (`MAX_ITEMS` per list or object, `MAX_DEPTH` levels, `MAX_VALUES` in all).
  Paths are dotted field paths (`subtitles.formats.0`) with user-made keys shown through
  `errors.quote`.
- `clean_text(text)`: what the model and the subtitle files may see of a text. Line breaks of every
  kind (CR LF, CR, VT, FF, the C0 separators, NEL, U+2028, U+2029) become "\\n", so they still end a
  sentence; a tab stays. Every other control character (C0, DEL, C1) becomes a space, so words on
  either side stay apart. Format characters (category Cf: zero-width space, word joiner, BOM, soft
  hyphen, bidi embeddings, overrides, isolates and marks, tag characters) are removed: they are
  invisible, the model has no sound for them, and bidi overrides can make a subtitle show other
  text than it holds. ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER stay: they change how Persian,
  Indic scripts and emoji sequences are spelled and shown.
- `speakable_text(text, nothing)` cleans and trims a text and refuses it (`ValueError`) when it is
  blank or not speakable; `check_size(text, max_chars, max_bytes)` refuses one over either limit.
- `is_speakable(text)`: True when the text holds at least one letter or digit (Unicode categories
  L* and N*), not counting the Hangul filler letters, which render as blank space. Punctuation,
  symbols, emoji, spaces and invisible characters alone give the model nothing to say.
- `Lexicon`: the pydantic type of a request's `lexicon` (written word -> spoken form), checked entry by
  entry (`check_lexicon`: at most `LEXICON_MAX_ENTRIES`, one word each, no control characters), each
  error located at its entry; normalize.py applies it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from tts_worker.errors import quote

_LINE_BREAKS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_KEPT_FORMAT = frozenset("\u200c\u200d")  # ZWNJ, ZWJ
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers: category Lo, shown as blank
_MAX_PROBLEMS = 10
MAX_ITEMS = 100
"""Most items in one list, or fields in one object, of a job's input (the API needs at most a few dozen)."""
MAX_DEPTH = 8
"""Deepest nesting of objects and lists (the API nests three levels)."""
MAX_VALUES = 10_000
"""Most values in a whole job input."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_INVALID = "is not valid Unicode text (it holds a lone surrogate code point)"
_IDENTIFIER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def path_part(key: object) -> str:
    """One step of a field path as a message shows it: a plain name or index as is, anything else quoted."""
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    if isinstance(key, str) and 0 < len(key) <= 64 and set(key) <= _IDENTIFIER:
        return key
    return quote(key, 40)


def _is_valid_unicode(text: str) -> bool:
    return text.isascii() or _SURROGATE.search(text) is None  # no copy, however long the string


def input_problems(data: Any) -> list[str]:
    """One message per problem in the shape of a decoded JSON document (at most ten), in document order.

    Depth-first with one iterator per open container, each container's path a link to its parent's,
    and a budget of `MAX_VALUES` values: the walk costs at most a few milliseconds, and no later stage
    (pydantic makes one error object per bad item) is handed millions of items."""
    problems: list[str] = []
    root: _Path = (None, None)
    if isinstance(data, str):
        return [] if _is_valid_unicode(data) else [f"input: {_INVALID}"]
    stack: list[tuple[_Path, Iterator[tuple[Any, Any]], bool]] = []
    budget = MAX_VALUES
    _enter(stack, root, data, problems)
    while stack and len(problems) < _MAX_PROBLEMS:
        where, items, is_object = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        budget -= 1
        if budget < 0:
            problems.append(f"input: holds more than {MAX_VALUES} values (a job needs far fewer)")
            break
        key, value = item
        if is_object and not isinstance(key, str):
            problems.append(f"{_name(where)}: field names must be strings, got {quote(key)}")
        elif is_object and not _is_valid_unicode(key):
            problems.append(f"{_name(where)}: the field name {quote(key)} is not valid Unicode text")
        elif isinstance(value, str):
            if not _is_valid_unicode(value):
                problems.append(f"{_name((where, path_part(key)))}: {_INVALID}")
        elif len(stack) >= MAX_DEPTH and isinstance(value, dict | list | tuple):
            problems.append(f"{_name((where, path_part(key)))}: is nested too deeply (more than {MAX_DEPTH} levels)")
        else:
            _enter(stack, (where, path_part(key)), value, problems)
    return problems


def _enter(
    stack: list[tuple[_Path, Iterator[tuple[Any, Any]], bool]], where: _Path, value: Any, problems: list[str]
) -> None:
    """Open a container for the walk; one over `MAX_ITEMS` is a problem and is not opened."""
    if not isinstance(value, dict | list | tuple):
        return
    if len(value) > MAX_ITEMS:
        what = "fields" if isinstance(value, dict) else "items"
        problems.append(f"{_name(where)}: holds {len(value)} {what}, over the limit of {MAX_ITEMS}")
    elif isinstance(value, dict):
        stack.append((where, iter(value.items()), True))
    else:
        stack.append((where, enumerate(value), False))


_Path = tuple[Any, str | None]
"""(parent path, this step's name): a linked list, so entering a container copies nothing."""


def _name(where: _Path) -> str:
    parts: list[str] = []
    node: Any = where
    while node is not None:
        node, part = node
        if part is not None:
            parts.append(part)
    return ".".join(reversed(parts)) or "input"


def clean_text(text: str) -> str:
    """`text` with line breaks unified to "\\n", other controls made spaces and format characters removed."""
    if text.isprintable():  # no control, format or separator character at all: the common case
        return text
    text = text.replace("\r\n", "\n")
    out: list[str] = []
    for ch in text:
        if ch in _LINE_BREAKS:
            out.append("\n")
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            out.append(ch if ch in "\n\t" else " ")
        elif category != "Cf" or ch in _KEPT_FORMAT:
            out.append(ch)
    return "".join(out)


def is_speakable(text: str) -> bool:
    """At least one letter or digit (not a blank Hangul filler)."""
    return any(unicodedata.category(ch)[0] in "LN" and ch not in _BLANK_LETTERS for ch in text)


def speakable_text(text: str, nothing: str) -> str:
    """`text` cleaned and trimmed, as the model will get it; ValueError when it is blank, or says `nothing`
    when it holds nothing to speak."""
    if not text.strip():
        raise ValueError("must not be empty or only white space")
    text = clean_text(text).strip()
    if not is_speakable(text):
        raise ValueError(nothing)
    return text


def check_size(text: str, max_chars: int, max_bytes: int) -> None:
    """ValueError when `text` is over either limit. Bytes are what a text costs: F5-TTS sizes the audio it
    generates by the text's UTF-8 bytes."""
    if len(text) > max_chars:
        raise ValueError(f"is {len(text)} characters long, over the limit of {max_chars}")
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise ValueError(
            f"is {size} bytes long in UTF-8, over the limit of {max_bytes} (the generated duration follows "
            "the bytes: an emoji counts 4, a Chinese character 3, an accented or Cyrillic letter 2)"
        )


# --- lexicon: a request's per-word pronunciations ------------------------------------------

LEXICON_MAX_ENTRIES = 200
LEXICON_MAX_WORD_CHARS = 64
LEXICON_MAX_SPOKEN_CHARS = 200


def _entry_error(key: str, message: str) -> InitErrorDetails:
    shown = key if len(key) <= 40 else key[:40] + "..."
    shown = shown.encode("unicode_escape").decode("ascii") if not shown.isprintable() else shown
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(shown,), input=key)


def _text_problem(value: str, what: str, limit: int, *, one_word: bool) -> str | None:
    value = value.strip()
    if not value:
        return f"the {what} must not be empty"
    if len(value) > limit:
        return f"the {what} is {len(value)} characters long; the limit is {limit}"
    if any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} and not (c == " " and not one_word) for c in value):
        return f"the {what} must not contain control characters"
    if one_word and any(c.isspace() for c in value):
        return f"the {what} must be one word, without white space"
    return None


def check_lexicon(value: Mapping[str, str]) -> dict[str, str]:
    """A request's `lexicon` checked entry by entry; errors are located at the entry (`lexicon.GIF: ...`)."""
    if len(value) > LEXICON_MAX_ENTRIES:
        raise ValueError(f"has {len(value)} entries; the limit is {LEXICON_MAX_ENTRIES}")
    errors = []
    for key, spoken in value.items():
        problem = _text_problem(key, "written word", LEXICON_MAX_WORD_CHARS, one_word=True) or _text_problem(
            spoken, "spoken form", LEXICON_MAX_SPOKEN_CHARS, one_word=False
        )
        if problem:
            errors.append(_entry_error(key, problem))
    if errors:
        raise ValidationError.from_exception_data("lexicon", errors)
    return {key.strip(): " ".join(spoken.split()) for key, spoken in value.items()}


Lexicon = Annotated[dict[str, str], AfterValidator(check_lexicon)]
"""The pydantic type of a request's `lexicon` field: `lexicon: Lexicon | None = None`."""
