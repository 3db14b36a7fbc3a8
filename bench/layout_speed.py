"""Where the heuristic layout backend's CPU time goes, against the bare `get_text("dict")` loop of bench/layout.py.

Usage: python bench/layout_speed.py [--pool DIR] [--drawings] [--upper-bound]   (default ../shared/pdfs)
For each PDF, in one run and one process (CPU time, time.process_time):
- bare: bench/layout.py's loop (open, get_text("dict") with raw_pages' text flags, without its vector blocks, on every
  page, close);
- PyMuPDF floor: every PyMuPDF call parse_document makes (open, text, image boxes, the drawing test and drawings,
  ruled tables, outline) and none of our Python work on their results;
- parse_document itself, and its parts: text lines (render._text_lines over the dict), de-hyphenation, labelling
  (layout.parse_layout), each with the cycle collector paused as parse_document has it.
The floor says how fast parse_document could be if our own Python cost nothing: the ratio the bench can reach.
--upper-bound also times parse_document without the ruled-table finder, and without it and the image boxes: how fast
the backend would be if those two were dropped (they are not; the output would change), in the same run.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter
from pathlib import Path

import pymupdf
from layout import bare_seconds

from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.documents import render
from longdocvqa.documents.layout import parse_layout
from longdocvqa.documents.parse import parse_document
from longdocvqa.documents.text import dehyphenate_lines, vocabulary

ROOT = Path(__file__).resolve().parents[1]


def floor_seconds(path: Path) -> float:
    """CPU seconds of the PyMuPDF calls parse_document makes, their results dropped."""
    start = time.process_time()
    doc = render.open_pdf(path)
    for page in doc:
        data = page.get_text("dict", flags=render._text_flags())
        render._image_boxes(page)
        if any(block["type"] == 3 for block in data["blocks"]):
            _, _, grids, paths = render._drawings(page)
            if grids:
                render._tables(page, grids, paths)
    doc.get_toc(simple=True)
    doc.close()
    return time.process_time() - start


def part_seconds(path: Path, parts: Counter[str]) -> None:
    """Add the CPU seconds of parse_document's Python parts on `path` to `parts`, with the cycle collector paused as
    parse_document pauses it (with it running, the parts would also pay for collections parse_document never makes)."""
    gc.disable()
    try:
        _parts(path, parts)
    finally:
        gc.enable()


def _parts(path: Path, parts: Counter[str]) -> None:
    doc = render.open_pdf(path)
    for page in doc:
        data = page.get_text("dict", flags=render._text_flags())
        start = time.process_time()
        render._text_lines(data["blocks"])
        parts["text lines (render._text_lines)"] += time.process_time() - start
    doc.close()
    start = time.process_time()
    pages, outline = render.raw_document(path)
    whole = time.process_time() - start
    start = time.process_time()
    words = vocabulary(line.text for page in pages for line in page.lines)
    for page in pages:
        dehyphenate_lines([line.text for line in page.lines], words)
    parts["vocabulary and de-hyphenation"] += time.process_time() - start
    start = time.process_time()
    parse_layout(path.name, pages, outline, LayoutConfig())
    parts["labelling (layout.parse_layout)"] += time.process_time() - start
    parts["(render.raw_document, all of it)"] += whole


def stripped_seconds(path: Path, totals: Counter[str]) -> None:
    """parse_document's CPU seconds without the table finder, then also without image boxes: an upper bound for
    a backend that dropped them, not a mode of the product (the image boxes are switched off by replacing
    render._image_boxes for the one call, and put back)."""
    no_tables = LayoutConfig(find_tables=False)
    start = time.process_time()
    parse_document(str(path), path.name, no_tables)
    totals["without tables"] += time.process_time() - start
    image_boxes = render._image_boxes
    render._image_boxes = lambda page: []
    try:
        start = time.process_time()
        parse_document(str(path), path.name, no_tables)
        totals["without tables and image boxes"] += time.process_time() - start
    finally:
        render._image_boxes = image_boxes


def drawing_seconds(path: Path, steps: Counter[str]) -> None:
    """The drawing step of each page both ways: always `get_cdrawings`, or only where the text pass found a vector
    block (raw_pages' way); and the text pass with and without vector blocks, back to back."""
    plain = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
    doc = render.open_pdf(path)
    for page in doc:
        start = time.process_time()
        page.get_text("dict", flags=plain)
        steps["text"] += time.process_time() - start
        start = time.process_time()
        data = page.get_text("dict", flags=render._text_flags())
        steps["text with vectors"] += time.process_time() - start
        start = time.process_time()
        render._drawings(page)
        steps["always"] += time.process_time() - start
        start = time.process_time()
        if any(block["type"] == 3 for block in data["blocks"]):
            render._drawings(page)
        else:
            steps["skipped"] += 1
        steps["tested"] += time.process_time() - start
    doc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=ROOT.parent / "shared/pdfs")
    parser.add_argument("--drawings", action="store_true", help="also time the drawing step with and without the test")
    bound = "also time parse_document without the table finder, and without it and image boxes"
    parser.add_argument("--upper-bound", action="store_true", help=bound)
    args = parser.parse_args()
    pdfs = sorted(args.pool.rglob("*.pdf"))
    parse_document(str(ROOT / "tests/data/pdfs/brief.pdf"), "warm-up", LayoutConfig())
    totals: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    pages = 0
    for pdf in pdfs:
        seconds, count = bare_seconds(pdf)
        totals["bare"] += seconds
        pages += count
        totals["floor"] += floor_seconds(pdf)
        start = time.process_time()
        parse_document(str(pdf), pdf.name, LayoutConfig())
        totals["ours"] += time.process_time() - start
        part_seconds(pdf, parts)
        if args.upper_bound:
            stripped_seconds(pdf, totals)
    bare = totals["bare"]
    print(f"{len(pdfs)} PDFs, {pages} pages, one core (CPU s):")
    print(f"  bare get_text('dict') loop     {bare:6.2f} s  {pages / bare:4.0f} pages/s")
    print(f"  PyMuPDF floor of the backend   {totals['floor']:6.2f} s  {pages / totals['floor']:4.0f} pages/s"
          f" = {bare / totals['floor']:.2f}x")  # fmt: skip
    print(f"  parse_document (heuristic)     {totals['ours']:6.2f} s  {pages / totals['ours']:4.0f} pages/s"
          f" = {bare / totals['ours']:.2f}x")  # fmt: skip
    for name, seconds in parts.items():
        print(f"    {name:<36} {seconds:6.2f} s")
    for name in ("without tables", "without tables and image boxes") if args.upper_bound else ():
        print(f"  parse_document {name:<31} {totals[name]:6.2f} s = {bare / totals[name]:.2f}x (output changed)")
    if args.drawings:
        steps: Counter[str] = Counter()
        for pdf in pdfs:
            drawing_seconds(pdf, steps)
        print(f"  drawing step: always {steps['always']:.2f} s, only on pages with a vector block "
              f"{steps['tested']:.2f} s ({steps['skipped']:.0f} pages skipped); text pass without vectors "
              f"{steps['text']:.2f} s, with {steps['text with vectors']:.2f} s")  # fmt: skip
    allowed = bare / 0.6 - totals["floor"]
    print(f"  at 0.60x, our Python may take {allowed:.2f} s in all; it takes {totals['ours'] - totals['floor']:.2f} s")


if __name__ == "__main__":
    main()
