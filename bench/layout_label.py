"""Labelling aid for tests/data/layout_truth.json: draft blocks and numbered page images to correct by eye.

Usage: python bench/layout_label.py OUT_DIR [PDF#PAGE ...]
For the given pages (default: the pages 30% and 70% through each PDF of tests/data/pdfs and
tests/data/layout), writes OUT_DIR/<pdf>-p<N>.png with the heuristic's blocks outlined
and numbered, and OUT_DIR/draft.json with those blocks. A person then looks at each image and records
the right label of every block (relabelling, dropping non-blocks, adding missed regions) in the truth file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from longdocvqa.documents import layoutview

ROOT = Path(__file__).resolve().parents[1]
PDF_DIRS = (ROOT / "tests/data/pdfs", ROOT / "tests/data/layout")


def sample_pages(num_pages: int) -> list[int]:
    """The pages 30% and 70% through a document (a fixed rule, so nobody picks easy pages)."""
    return sorted({max(1, round(num_pages * 0.3)), max(1, round(num_pages * 0.7))})


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, list[int]] = {}
    for key in sys.argv[2:]:
        name, _, page = key.partition("#")
        wanted.setdefault(name, []).append(int(page))
    draft = {}
    for folder in PDF_DIRS:
        for pdf in sorted(folder.glob("*.pdf")):
            if wanted and pdf.name not in wanted:
                continue
            layout = layoutview.layout_of(pdf)
            for index in wanted.get(pdf.name) or sample_pages(layout.num_pages):
                (out / f"{pdf.stem}-p{index}.png").write_bytes(layoutview.draw_page(pdf, layout, index, dpi=90))
                blocks = layoutview.layout_json(layout, [index])["pages"][0]["blocks"]
                draft[f"{pdf.name}#{index}"] = [{**b, "text": b["text"][:60]} for b in blocks]
    (out / "draft.json").write_text(json.dumps(draft, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
