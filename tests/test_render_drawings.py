"""render._raw_page asks for vector blocks in its text pass, and runs `get_cdrawings` only on pages that have one.

It must never skip a page that draws something (layout's figures, rules and ruled tables come from those paths), and
the vector blocks must not change the text lines.
"""

from __future__ import annotations

from pathlib import Path

import pymupdf

from longdocvqa.documents import render

PDFS = Path(__file__).resolve().parents[1] / "tests/data/pdfs"


def _lines(data: dict) -> list[tuple]:
    return [(line["bbox"], [(s["text"], s["font"], s["size"], s["flags"]) for s in line["spans"]])
            for block in data["blocks"] if block["type"] == 0 for line in block["lines"]]  # fmt: skip


def test_vector_blocks_mark_the_pages_that_draw_and_leave_text_lines_alone() -> None:
    plain = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
    skipped = kept = 0
    for name in ("R-data.pdf", "seminar-doc.pdf", "beamerexample-lecture-beamer-version.pdf", "mathtools.pdf"):
        doc = render.open_pdf(PDFS / name)
        for page in doc:
            data = page.get_text("dict", flags=render._text_flags())
            drawn = any(block["type"] == 3 for block in data["blocks"])
            assert drawn is bool(page.get_cdrawings()), (name, page.number)
            assert _lines(data) == _lines(page.get_text("dict", flags=plain)), (name, page.number)
            kept, skipped = kept + drawn, skipped + (not drawn)
        doc.close()
    assert skipped > 20 and kept > 20
