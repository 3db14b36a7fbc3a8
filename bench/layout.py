"""Layout backends compared: speed (pages/s) and agreement on section headings.

Usage: python bench/layout.py [--pages N]
For each bundled PDF with an outline, the outline's (page, title) pairs are the reference; each
backend's `section`/`title` blocks are matched against them (recall) and against each other
(agreement = Jaccard of the matched (page, title) sets). The heuristic backend is the baseline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pymupdf

from longdocvqa.layout import normalise_title
from longdocvqa.pipeline import parse_document
from longdocvqa.recipe import LayoutConfig

ROOT = Path(__file__).resolve().parents[1]
PDFS = sorted((ROOT / "tests/data/pdfs").glob("*.pdf"))


def excerpt(path: Path, pages: int, folder: Path) -> Path:
    out = folder / path.name
    doc = pymupdf.open(path)
    small = pymupdf.open()
    small.insert_pdf(doc, to_page=min(pages, doc.page_count) - 1)
    small.set_toc([e for e in doc.get_toc() if e[2] <= pages])
    small.save(out)
    return out


def found_headings(layout, outline) -> set[tuple[int, str]]:
    """Outline entries whose title appears as a section/title block on the right page."""
    hits = set()
    for _level, title, page in outline:
        heads = [normalise_title(b.text) for b in layout.pages[page - 1].blocks if b.label in ("section", "title")]
        if any(h and (h.endswith(normalise_title(title)) or normalise_title(title).endswith(h)) for h in heads):
            hits.add((page, normalise_title(title)))
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12, help="first N pages of each PDF (the model is slow)")
    args = parser.parse_args()
    import tempfile

    totals = {"heuristic": [0.0, 0, 0], "pymupdf-layout": [0.0, 0, 0]}  # seconds, pages, headings found
    reference = agreement_num = agreement_den = 0
    with tempfile.TemporaryDirectory() as tmp:
        for pdf in PDFS:
            path = excerpt(pdf, args.pages, Path(tmp))
            outline = [tuple(e[:3]) for e in pymupdf.open(path).get_toc() if e[2] >= 1]
            found = {}
            for backend in totals:
                start = time.perf_counter()
                layout = parse_document(str(path), pdf.name, LayoutConfig(backend=backend))
                totals[backend][0] += time.perf_counter() - start
                totals[backend][1] += layout.num_pages
                found[backend] = found_headings(layout, outline)
                totals[backend][2] += len(found[backend])
            reference += len(outline)
            union = found["heuristic"] | found["pymupdf-layout"]
            agreement_num += len(found["heuristic"] & found["pymupdf-layout"])
            agreement_den += len(union)
    base = totals["heuristic"][1] / totals["heuristic"][0]
    print(f"{len(PDFS)} PDFs x first {args.pages} pages; {reference} outline headings as reference")
    print(f"{'backend':<16} {'pages/s':>8} {'vs heuristic':>13} {'headings found':>15}")
    for backend, (seconds, pages, hits) in totals.items():
        rate = pages / seconds
        print(f"{backend:<16} {rate:8.1f} {rate / base:12.3f}x {hits:>8}/{reference} ({hits / max(reference, 1):.0%})")
    print(f"agreement between backends on found headings (Jaccard): {agreement_num / max(agreement_den, 1):.0%}")


if __name__ == "__main__":
    main()
