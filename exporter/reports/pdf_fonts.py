"""The PDF's typeface: DejaVu Sans where Debian installed it, else the Bitstream Vera that reportlab ships.

Data in a report is anyone's text (page paths, feedback categories, experiment names), so the
font is an embedded TrueType font with wide coverage, never one of PDF's 14 standard fonts (they
encode Latin-1 only). DejaVu Sans (Debian's ``fonts-dejavu-core``) covers Latin, Greek, Cyrillic
and many symbols; Vera, its ancestor, covers Western European text. A glyph the font lacks is
left out of the page; rendering never fails on it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import reportlab
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

REGULAR, BOLD = "ReportSans", "ReportSans-Bold"
# (regular, bold) file pairs, the first one found wins.
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
VERA = Path(reportlab.__file__).parent / "fonts"
CANDIDATES = ((DEJAVU / "DejaVuSans.ttf", DEJAVU / "DejaVuSans-Bold.ttf"), (VERA / "Vera.ttf", VERA / "VeraBd.ttf"))


@dataclass(frozen=True)
class Fonts:
    regular: str
    bold: str
    source: Path  # the regular font's file, to say which typeface a report uses


@functools.cache
def report_fonts() -> Fonts:
    """Register the report's typeface with reportlab (once per process) and name it."""
    regular, bold = next((pair for pair in CANDIDATES if all(path.is_file() for path in pair)), CANDIDATES[-1])
    pdfmetrics.registerFont(TTFont(REGULAR, str(regular)))
    pdfmetrics.registerFont(TTFont(BOLD, str(bold)))
    # <b> in a paragraph picks the bold face; there is no italic.
    pdfmetrics.registerFontFamily(REGULAR, normal=REGULAR, bold=BOLD, italic=REGULAR, boldItalic=BOLD)
    return Fonts(REGULAR, BOLD, regular)
