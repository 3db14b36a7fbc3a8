"""The second layout truth set (tests/data/layout2): its sources are recorded, its labels are well-formed.

The PDFs themselves are fetched by scripts/fetch_layout_truth2.py (not committed); where they are present
here, each is checked against the SHA-256 in SOURCES.tsv and every labelled page against the PDF's page count.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pymupdf
import pytest

ROOT = Path(__file__).resolve().parents[1]
SET2 = ROOT / "tests/data/layout2"
LABELS = {"title", "section", "paragraph", "list", "table", "figure", "caption", "header", "footer", "footnote",
          "formula"}  # fmt: skip
USED_BEFORE = {"r-doc-pdf", "texlive-latex-recommended-doc", "lilypond-doc-pdf", "ghostscript-doc", "xfig-doc",
               "asymptote-doc", "texlive-latex-base-doc", "texlive-lang-arabic", "texlive-lang-chinese"}  # fmt: skip


def sources() -> dict[str, dict[str, str]]:
    header, *rows = (SET2 / "SOURCES.tsv").read_text(encoding="utf-8").splitlines()
    names = header.split("\t")
    return {row.split("\t")[0]: dict(zip(names, row.split("\t"), strict=True)) for row in rows}


def test_sources_record_forty_new_files_with_licence_and_hash() -> None:
    rows = sources()
    assert len(rows) >= 40
    assert not {r["debian_package"] for r in rows.values()} & USED_BEFORE
    old = {p.name for p in (ROOT / "tests/data").rglob("*.pdf") if "layout2" not in p.parts}
    assert not set(rows) & old
    for row in rows.values():
        assert row["version"] and row["licence"] and len(row["sha256"]) == 64


def test_truth_pages_are_labelled_with_known_labels_from_listed_files() -> None:
    pages = json.loads((SET2 / "layout_truth.json").read_text(encoding="utf-8"))["pages"]
    assert len(pages) >= 20
    rows = sources()
    for key, item in pages.items():
        assert key == f"{item['pdf']}#{item['page']}" and item["pdf"] in rows
        assert item["blocks"] and {b["label"] for b in item["blocks"]} <= LABELS
        for block in item["blocks"]:
            x0, y0, x1, y1 = block["bbox"]
            assert x0 < x1 and y0 < y1


def test_fetched_pdfs_match_their_recorded_hashes() -> None:
    folder = SET2 / "pdfs"
    if not (folder / ".complete").is_file():
        pytest.skip("run python scripts/fetch_layout_truth2.py to fetch the second truth set")
    pages = json.loads((SET2 / "layout_truth.json").read_text(encoding="utf-8"))["pages"]
    for name, row in sources().items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == row["sha256"], name
        with pymupdf.open(folder / name) as doc:
            assert doc.get_toc() and all(p["page"] <= doc.page_count for p in pages.values() if p["pdf"] == name)
