"""render._may_draw: the cheap test that lets raw_pages skip `get_cdrawings` on pages that draw no path.

It must never skip a page that draws something (layout's figures, rules and ruled tables come from those paths).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longdocvqa.documents import render

PDFS = Path(__file__).resolve().parents[1] / "tests/data/pdfs"


@pytest.mark.parametrize(
    ("content", "draws"),
    [
        (b"0 0 m 10 10 l S", True),
        (b"1 2 3 4re\nf", True),  # an operator right after a number
        (b"/Im1 Do", True),
        (b"12m/GS1 gs", True),
        (b"0 0\x00m", True),  # NUL is white space in PDF
        (b"BT /F1 9 Tf [(m)-20(re)] TJ ET", False),  # letters in text strings
        (b"1 0 0 1 5 5 cm 1 0 0 1 0 0 Tm /Fm0 gs", False),  # operators and names that end in m
    ],
)
def test_drawing_operators_are_found_in_content(content: bytes, draws: bool) -> None:
    assert (render._DRAWING_OPERATOR.search(content) is not None) is draws


def test_a_skipped_page_draws_nothing() -> None:
    skipped = kept = 0
    for name in ("R-data.pdf", "seminar-doc.pdf", "beamerexample-lecture-beamer-version.pdf", "mathtools.pdf"):
        doc = render.open_pdf(PDFS / name)
        for page in doc:
            if render._may_draw(page):
                kept += 1
            else:
                skipped += 1
                assert page.get_cdrawings() == [], (name, page.number)
        doc.close()
    assert skipped > 20 and kept > 20
