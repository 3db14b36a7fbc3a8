"""Layout quality and speed, measured: labels against hand-labelled pages, headings and segment starts with the
outline hidden, and pages/s CPU against a bare `get_text("dict")` loop with the same extraction flags.

Usage: python bench/layout.py [--pool DIR] [--ml-pages N] [--skip-speed]
Two sets, each reported apart:
- set 1 (the PDFs the heuristics were developed on): labels on the pages of tests/data/layout_truth.json
  (41 pages, 17 PDFs); headings and segment starts on every outline-bearing PDF of tests/data/pdfs,
  tests/data/layout and --pool (default ../shared/pdfs when present).
- set 2 (40 PDFs that never guided the heuristics, fetched by scripts/fetch_layout_truth2.py into
  tests/data/layout2/pdfs): labels on the pages of tests/data/layout2/layout_truth.json (22 pages, 11 PDFs);
  headings and segment starts on all 40.
- Labels: per-label precision and recall; display-formula recall is the `formula` row's recall.
- Headings / segment starts: the outline is the truth and is hidden from the layout.
- Speed: CPU seconds (time.process_time, one process = one core) over the PDFs of --pool, against a
  bare loop of page.get_text("dict") with the flags render.raw_pages uses, measured in the same run.
  The pymupdf-layout backend runs its ONNX model on every page, so it is timed on the first --ml-pages
  pages of each PDF of tests/data/pdfs only (and against the bare loop on those same pages).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pymupdf

from longdocvqa.core.recipe import LayoutConfig, SegmentConfig
from longdocvqa.documents import layoutview
from longdocvqa.documents.parse import parse_document

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / "tests/data/pdfs", ROOT / "tests/data/layout")
TRUTH = ROOT / "tests/data/layout_truth.json"
SET2 = ROOT / "tests/data/layout2"
TARGETS = {"overall": 0.88, "paragraph": 0.80, "section": 0.80, "header/footer": 0.80, "table": 0.80, "figure": 0.80}


def report_labels(backend: str, truth: Path = TRUTH, folders: tuple[Path, ...] = DATA, name: str = "set 1") -> None:
    scores = layoutview.evaluate_labels(truth, folders, backend)
    print(f"\n{name} labels, backend {backend}: precision {scores.precision():.1%} (target {TARGETS['overall']:.0%}), "
          f"recall {scores.recall():.1%} over {sum(scores.truth.values())} truth blocks")  # fmt: skip
    print(f"{'label':<14} {'precision':>16} {'recall':>16}")
    for label in sorted(set(scores.predicted) | set(scores.truth)):
        target = f" (target {TARGETS[label]:.0%})" if label in TARGETS else ""
        print(f"{label:<14} {scores.precision(label):6.1%} {scores.right[label]:>4}/{scores.predicted[label]:<4} "
              f"{scores.recall(label):6.1%} {scores.found[label]:>4}/{scores.truth[label]:<4}{target}")  # fmt: skip
    print(f"display-formula recall {scores.recall('formula'):.1%} (target 60%)")


def report_headings(pdfs: list[Path], name: str = "set 1") -> None:
    config = SegmentConfig(min_pages=8, max_pages=15, per_document=3)
    headings, aligned, total = layoutview.evaluate_headings(pdfs, config)
    print(f"\n{name} outline hidden, {len(pdfs)} PDFs (those with an outline count): heading precision "
          f"{headings.precision:.1%} ({headings.right}/{headings.predicted}), recall {headings.recall:.1%} "
          f"({headings.found}/{headings.truth} level 1-2 entries); segment starts on an outline page "
          f"{aligned / max(total, 1):.1%} ({aligned}/{total}, 5 seeds x up to 3 segments); "
          "targets 85% / 85% / 95%")  # fmt: skip


def report_set2(backends: list[str]) -> None:
    pdfs = sorted((SET2 / "pdfs").glob("*.pdf"))
    if not (SET2 / "pdfs/.complete").is_file():
        print(f"\nset 2: no PDFs in {SET2 / 'pdfs'}; run python scripts/fetch_layout_truth2.py first")
        return
    for backend in backends:
        report_labels(backend, SET2 / "layout_truth.json", (SET2 / "pdfs",), "set 2")
    report_headings(pdfs, "set 2")


def bare_seconds(path: Path, pages: int | None = None) -> tuple[float, int]:
    """CPU seconds of the bare extraction loop: open, get_text("dict") with raw_pages' flags, close."""
    flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
    start = time.process_time()
    doc = pymupdf.open(path)
    count = 0
    for page in doc:
        if pages is not None and count >= pages:
            break
        page.get_text("dict", flags=flags)
        count += 1
    doc.close()
    return time.process_time() - start, count


def excerpt(path: Path, pages: int, folder: Path) -> Path:
    out = folder / path.name
    with pymupdf.open(path) as doc, pymupdf.open() as small:
        small.insert_pdf(doc, to_page=min(pages, doc.page_count) - 1)
        small.save(out)
    return out


def report_speed(pdfs: list[Path], ml_pages: int) -> None:
    parse_document(str(DATA[0] / "brief.pdf"), "warm-up", LayoutConfig())  # imports and caches out of the timing
    bare = ours = 0.0
    pages = 0
    for pdf in pdfs:
        seconds, count = bare_seconds(pdf)
        start = time.process_time()
        parse_document(str(pdf), pdf.name, LayoutConfig())
        ours += time.process_time() - start
        bare, pages = bare + seconds, pages + count
    print(f"\nspeed over {len(pdfs)} PDFs, {pages} pages, one core (CPU time): bare get_text('dict') "
          f"{pages / bare:.0f} pages/s; heuristic backend {pages / ours:.0f} pages/s = {bare / ours:.2f}x "
          f"(target >= 0.60x)")  # fmt: skip
    bare = ml = 0.0
    pages = 0
    with tempfile.TemporaryDirectory() as tmp:
        for pdf in sorted(DATA[0].glob("*.pdf")):
            small = excerpt(pdf, ml_pages, Path(tmp))
            seconds, count = bare_seconds(small)
            start = time.process_time()
            parse_document(str(small), pdf.name, LayoutConfig(backend="pymupdf-layout"))
            ml += time.process_time() - start
            bare, pages = bare + seconds, pages + count
    print(f"pymupdf-layout backend on {pages} pages: {pages / ml:.1f} pages/s = {bare / ml:.3f}x the bare loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_pool = ROOT.parent / "shared/pdfs"
    parser.add_argument("--pool", type=Path, default=default_pool if default_pool.is_dir() else None,
                        help="folder of PDFs (searched recursively) for headings and speed")  # fmt: skip
    parser.add_argument("--ml-pages", type=int, default=4, help="pages per PDF for the ONNX-model backend")
    parser.add_argument("--skip-speed", action="store_true", help="quality only")
    parser.add_argument("--ml-labels", action="store_true", help="also score the ONNX-model backend's labels")
    args = parser.parse_args()
    backends = ["heuristic", "pymupdf-layout"] if args.ml_labels else ["heuristic"]
    for backend in backends:
        report_labels(backend)
    pool = sorted(args.pool.rglob("*.pdf")) if args.pool else []
    local = sorted(p for folder in DATA for p in folder.glob("*.pdf"))
    names = {p.name for p in local}
    report_headings(local + [p for p in pool if p.name not in names])
    report_set2(backends)
    if not args.skip_speed:
        report_speed(pool or local, args.ml_pages)


if __name__ == "__main__":
    main()
