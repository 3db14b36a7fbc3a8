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


def test_paths_handed_to_the_table_finder_are_what_it_would_read_itself() -> None:
    grids = 0
    for name in ("GS9_Color_Management.pdf", "seminar-doc.pdf"):
        doc = render.open_pdf(PDFS / name)
        for page in doc:
            page.get_text("dict", flags=render._text_flags())
            _, _, found, paths = render._drawings(page)
            assert render._as_drawings(paths) == page.get_drawings(), (name, page.number)
            if found:
                grids += 1
                clip = (min(g[0] for g in found), min(g[1] for g in found),
                        max(g[2] for g in found), max(g[3] for g in found))  # fmt: skip
                alone = page.find_tables(clip=clip, use_layout=False)
                given = page.find_tables(clip=clip, use_layout=False, paths=render._as_drawings(paths))
                assert [t.extract() for t in given.tables] == [t.extract() for t in alone.tables]
                assert [tuple(t.bbox) for t in given.tables] == [tuple(t.bbox) for t in alone.tables]
        doc.close()
    assert grids == 2


def test_round2_is_round_to_hundredths_for_c_floats() -> None:
    import random
    import struct

    rng = random.Random(0)
    values = [struct.unpack("f", struct.pack("I", rng.getrandbits(32)))[0] for _ in range(200_000)]
    values = [v for v in values if abs(v) < 1e30]  # not inf or nan
    values += [k / 100 + 0.005 for k in range(-2000, 2000)] + [0.0, -0.0, -0.004, 0.004, 0.125, -0.125, 612.0]
    values = [struct.unpack("f", struct.pack("f", v))[0] for v in values]  # as MuPDF's floats arrive
    for value in values + [float("inf"), -float("inf")]:
        assert struct.pack("d", render._round2(value)) == struct.pack("d", round(value, 2)), value
    assert render._round2(float("nan")) != render._round2(float("nan"))
