"""Untrusted strings at the job boundary: valid Unicode, no control characters, something to speak.

Contract
- `unicode_problems(data)`: walks a decoded JSON value (dicts, lists, strings, numbers) without
  recursion and returns one `"<path>: ..."` message per string that is not valid Unicode text (a
  lone surrogate such as "\\ud800", which JSON's `\\ud800` escape decodes to in Python, and which
  no UTF-8 encoder or JSON writer accepts) and per object key that is not a string. Paths are
  dotted field paths (`subtitles.formats.0`) with user-made keys shown through `errors.quote`.
- `clean_text(text)`: what the model and the subtitle files may see of a text. Line breaks of every
  kind (CR LF, CR, VT, FF, the C0 separators, NEL, U+2028, U+2029) become "\\n", so they still end a
  sentence; a tab stays. Every other control character (C0, DEL, C1) becomes a space, so words on
  either side stay apart. Format characters (category Cf: zero-width space, word joiner, BOM, soft
  hyphen, bidi embeddings, overrides, isolates and marks, tag characters) are removed: they are
  invisible, the model has no sound for them, and bidi overrides can make a subtitle show other
  text than it holds. ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER stay: they change how Persian,
  Indic scripts and emoji sequences are spelled and shown.
- `is_speakable(text)`: True when the text holds at least one letter or digit (Unicode categories
  L* and N*), not counting the Hangul filler letters, which render as blank space. Punctuation,
  symbols, emoji, spaces and invisible characters alone give the model nothing to say.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from tts_worker.errors import quote

_LINE_BREAKS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_KEPT_FORMAT = frozenset("\u200c\u200d")  # ZWNJ, ZWJ
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers: category Lo, shown as blank
_MAX_PROBLEMS = 10
_IDENTIFIER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def path_part(key: object) -> str:
    """One step of a field path as a message shows it: a plain name or index as is, anything else quoted."""
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    if isinstance(key, str) and 0 < len(key) <= 64 and set(key) <= _IDENTIFIER:
        return key
    return quote(key, 40)


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unicode_problems(data: Any, path: tuple[str, ...] = ()) -> list[str]:
    """One message per invalid string or non-string key in `data` (at most ten), in document order."""
    problems: list[str] = []
    stack: list[tuple[tuple[str, ...], Any]] = [(path, data)]
    while stack and len(problems) < _MAX_PROBLEMS:
        where, value = stack.pop()
        name = ".".join(where) or "input"
        if isinstance(value, str):
            if not _is_valid_unicode(value):
                problems.append(f"{name}: is not valid Unicode text (it holds a lone surrogate code point)")
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append(f"{name}: field names must be strings, got {quote(key)}")
                    continue
                if not _is_valid_unicode(key):
                    problems.append(f"{name}: the field name {quote(key)} is not valid Unicode text")
                    continue
                children.append(((*where, path_part(key)), item))
            stack.extend(reversed(children))
        elif isinstance(value, list | tuple):
            stack.extend(reversed([((*where, str(i)), item) for i, item in enumerate(value)]))
    return problems


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
