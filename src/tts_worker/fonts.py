"""Text widths as libass draws them, from the font file libass will use.

Contract: `resolve(family)` returns a `Font` (cached, at most 16 families); `Font.width(text, size)`
is the advance width in canvas pixels of `text` on one line at ASS font size `size`.

Which file: libass finds fonts through fontconfig, so `fc-match` answers which file it will take for
a family (the same file when the family is installed, fontconfig's substitute when it is not:
`Font.family` then names the substitute and a warning is logged). Without `fc-match`, the known
install paths of DejaVu Sans and Noto Sans are tried. With no font file at all, widths are a
conservative estimate (0.6 x size per character), and a warning says so.

How wide (measured against libass 0.17 renders, within 1 px at 40-130 px):
- libass scales a face so that its ascender - descender is the ASS size, taking them from the OS/2
  table's win metrics (else typo metrics, else the bounding box); the em is therefore
  size x unitsPerEm / (ascender - descender), 0.859 x size for DejaVu Sans.
- It shapes with HarfBuzz and does not kern unless the script asks for `Kerning: yes` (ours do not),
  and it loads glyphs unhinted. So widths are Pillow's raqm (HarfBuzz) layout with kerning off, at
  an em of unitsPerEm pixels (advances in font units), scaled. Without raqm, Pillow's basic layout.
- A character the font lacks is drawn by libass from a fallback font; it is counted as one ASS size
  wide (wider than most glyphs of most fonts). Zero-width characters (marks, format characters)
  count nothing.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from fontTools.ttLib import TTFont, TTLibError
from PIL import ImageFont, features

logger = logging.getLogger(__name__)

DEFAULT_FONT = "DejaVu Sans"
"""The font the worker ships (Debian `fonts-dejavu-core`) and names in its ASS files by default."""

# Where Debian/Ubuntu (fonts-dejavu-core, fonts-noto-core) and Arch/Fedora put them: used without fc-match.
KNOWN_FONTS = {
    "dejavu sans": (
        "DejaVu Sans",
        ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"),
    ),
    "noto sans": (
        "Noto Sans",
        ("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf", "/usr/share/fonts/noto/NotoSans-Regular.ttf"),
    ),
}
ESTIMATE_PER_CHAR = 0.6
"""Width of a character, in ASS sizes, when no font file is found at all."""
_FC_SPECIAL = re.compile(r"([\\\-:,])")
_ZERO_WIDTH = frozenset({"Mn", "Me", "Cf"})
_RAQM = features.check("raqm")


@dataclass(frozen=True)
class Font:
    """A font file as libass scales it. `path` None: no file was found, widths are estimates."""

    requested: str
    family: str
    path: Path | None = None
    index: int = 0
    units_per_em: int = 1000
    height_units: int = 1000  # ascender - descender, as libass picks them
    _covered: frozenset[int] = field(default=frozenset(), repr=False)
    _face: ImageFont.FreeTypeFont | None = field(default=None, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        """Whether the file holds the family asked for (otherwise it is fontconfig's substitute)."""
        return self.path is not None and self.family.casefold() == self.requested.casefold()

    def width(self, text: str, size: float) -> float:
        """Advance width in pixels of `text` on one line at ASS font size `size`."""
        if self._face is None:
            return sum(0.0 if _zero_width(c) else ESTIMATE_PER_CHAR for c in text) * size
        units = 0.0
        run: list[str] = []
        for c in text:
            if ord(c) in self._covered:
                run.append(c)
            elif not _zero_width(c):
                units += self._run_units("".join(run)) + self.height_units  # a fallback font's glyph
                run = []
        units += self._run_units("".join(run))
        return units * size / self.height_units

    def _run_units(self, run: str) -> float:
        if not run or self._face is None:
            return 0.0
        if _RAQM:
            return float(self._face.getlength(run, features=["-kern"]))
        return float(self._face.getlength(run))


def _zero_width(c: str) -> bool:
    return unicodedata.category(c) in _ZERO_WIDTH


@functools.lru_cache(maxsize=16)
def resolve(family: str = DEFAULT_FONT) -> Font:
    """The font libass will draw `family` with, loaded for measuring."""
    found = _fc_match(family) or _known_path(family) or _known_path(DEFAULT_FONT)
    if found is None:
        logger.warning(
            "font %r: no font file found (fc-match missing and DejaVu Sans not installed); line widths are "
            "estimated at %.1f x font size per character",
            family,
            ESTIMATE_PER_CHAR,
        )
        return Font(family, "estimate")
    path, index, actual = found
    try:
        font = _load(family, actual, path, index)
    except (OSError, TTLibError, KeyError, ValueError) as exc:
        logger.warning("font %r: cannot read %s (%s); line widths are estimated", family, path.name, exc)
        return Font(family, "estimate")
    if not font.exact:
        logger.warning("font %r is not installed: measuring with %r, which libass substitutes", family, font.family)
    return font


def _load(requested: str, actual: str, path: Path, index: int) -> Font:
    tt = TTFont(path, fontNumber=index, lazy=True)
    try:
        upem = int(tt["head"].unitsPerEm)
        os2 = tt.get("OS/2")
        height = 0
        # libass's order (ass_font.c set_font_metrics): win metrics, typo metrics, bounding box.
        if os2 is not None:
            height = _signed(os2.usWinAscent) + _signed(os2.usWinDescent)
            if height == 0:
                height = int(os2.sTypoAscender) - int(os2.sTypoDescender)
        if height == 0:
            height = int(tt["head"].yMax) - int(tt["head"].yMin)
        covered = frozenset(tt.getBestCmap() or {})
    finally:
        tt.close()
    if height <= 0:
        raise ValueError("the font has no usable vertical metrics")
    layout = ImageFont.Layout.RAQM if _RAQM else ImageFont.Layout.BASIC
    face = ImageFont.truetype(str(path), upem, index=index, layout_engine=layout)
    return Font(requested, actual, path, index, upem, height, covered, face)


def _signed(value: int) -> int:
    """libass reads the win metrics as signed 16-bit values, as VSFilter does."""
    value = int(value)
    return value - 0x10000 if value >= 0x8000 else value


def _fc_match(family: str) -> tuple[Path, int, str] | None:
    exe = shutil.which("fc-match")
    if exe is None:
        return None
    pattern = _FC_SPECIAL.sub(r"\\\1", family) + ":weight=80:slant=0"  # regular, upright: what the ASS asks
    try:
        out = subprocess.run(
            [exe, "--format=%{file}\n%{index}\n%{family[0]}\n", pattern],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("fc-match failed for font %r (%s)", family, exc.__class__.__name__)
        return None
    if len(out) < 3 or not out[0] or not Path(out[0]).is_file():
        return None
    index = int(out[1]) if out[1].isdigit() else 0
    return Path(out[0]), index, out[2] or family


def _known_path(family: str) -> tuple[Path, int, str] | None:
    name, paths = KNOWN_FONTS.get(family.casefold(), (family, ()))
    for candidate in paths:
        if Path(candidate).is_file():
            return Path(candidate), 0, name
    return None
