"""What the pipeline sees on a page: labelled blocks as JSON, and the same blocks drawn on page images.

Used by `longdocvqa layout PDF`, and by bench/layout.py and the tests to score layouts against ground truth.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import RecipeError, RejectedInput
from longdocvqa.core.recipe import LayoutConfig, SegmentConfig
from longdocvqa.core.records import LayoutDoc, OutlineEntry
from longdocvqa.documents import filekind, render
from longdocvqa.documents.layout import parse_layout
from longdocvqa.documents.layout_eval import HeadingScores, LabelScores, aligned_starts, score_headings, score_page
from longdocvqa.documents.parse import parse_document
from longdocvqa.documents.segment import sample_segments

# One colour per label (RGB), picked to be told apart on white paper.
COLOURS = {
    "title": (200, 0, 0), "section": (230, 100, 0), "paragraph": (0, 90, 200), "list": (0, 160, 160),
    "table": (0, 150, 0), "figure": (150, 0, 180), "caption": (180, 140, 0), "header": (120, 120, 120),
    "footer": (120, 120, 120), "footnote": (255, 0, 160), "formula": (90, 60, 20),
}  # fmt: skip


def parse_pages(spec: str | None, num_pages: int) -> list[int]:
    """'3-5,8' -> [3, 4, 5, 8]; None -> every page. Raises RecipeError (a usage error) naming the bad part."""
    if not spec:
        return list(range(1, num_pages + 1))
    pages: list[int] = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        try:
            start, end = int(first), int(last or first)
        except ValueError:
            raise RecipeError(f"--pages {spec!r}: {part!r} is not a page number or a range like 3-5") from None
        if not 1 <= start <= end <= num_pages:
            raise RecipeError(f"--pages {spec!r}: {part!r} is outside pages 1-{num_pages}")
        pages.extend(range(start, end + 1))
    return sorted(set(pages))


def layout_of(path: str | Path, backend: str = "heuristic") -> LayoutDoc:
    """The whole document's layout (headers/footers and headings need every page); RejectedInput at once for a FIFO,
    device or socket (reading one would block) and for a folder."""
    if kind := filekind.special_kind(path):
        raise RejectedInput("not_a_file", f"is {kind}, not a PDF file")
    if Path(path).is_dir():
        raise RejectedInput("not_a_file", "is a folder, not a PDF file")
    return parse_document(str(path), Path(path).name, LayoutConfig(backend=backend))  # type: ignore[arg-type]


def layout_json(layout: LayoutDoc, pages: list[int]) -> dict[str, Any]:
    """`{"pages": [{"page": N, "blocks": [{"label", "text", "bbox"}]}]}` in reading order."""
    out = []
    for index in pages:
        page = layout.pages[index - 1]
        blocks = [{"label": b.label, "text": b.text, "bbox": [round(v, 1) for v in b.bbox]}
                  for b in sorted(page.blocks, key=lambda b: b.order)]  # fmt: skip
        out.append({"page": index, "blocks": blocks})
    return {"pages": out}


def draw_page(path: str | Path, layout: LayoutDoc, index: int, dpi: int = 100) -> bytes:
    """PNG of page `index` with every block outlined in its label's colour and numbered in reading order."""
    from PIL import Image, ImageDraw

    image = Image.open(io.BytesIO(render.render_page(path, index, dpi=dpi, fmt="png"))).convert("RGB")
    draw = ImageDraw.Draw(image)
    scale = dpi / 72
    for block in sorted(layout.pages[index - 1].blocks, key=lambda b: b.order):
        colour = COLOURS.get(block.label, (0, 0, 0))
        x0, y0, x1, y1 = (v * scale for v in block.bbox)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        draw.text((x0 + 1, max(y0 - 10, 0)), f"{block.order} {block.label}", fill=colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def write_pngs(path: str | Path, layout: LayoutDoc, pages: list[int], folder: Path, dpi: int = 100) -> list[Path]:
    """One annotated PNG per page, named `<pdf stem>-p<N>.png`; returns the paths written. RecipeError (exit 2)
    when `folder` is a file or cannot be made or written."""
    if folder.exists() and not folder.is_dir():
        raise RecipeError(f"--png {folder}: is a file, not a folder")
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for index in pages:
            target = folder / f"{Path(path).stem}-p{index}.png"
            target.write_bytes(draw_page(path, layout, index, dpi))
            written.append(target)
    except OSError as exc:
        raise RecipeError(f"--png {folder}: cannot write page images: {exc.strerror or exc}") from None
    return written


def find_pdf(name: str, folders: Sequence[Path]) -> Path:
    """The first `folders[i] / name` that exists (truth files name PDFs, not paths)."""
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name}: not in {', '.join(str(f) for f in folders)}")


def evaluate_labels(truth_path: Path, folders: Sequence[Path], backend: str = "heuristic") -> LabelScores:
    """Score the backend's blocks on every hand-labelled page of `truth_path` (see layout_eval)."""
    truth = json.loads(truth_path.read_text())["pages"]
    scores = LabelScores()
    by_pdf: dict[str, list[dict[str, Any]]] = {}
    for item in truth.values():
        by_pdf.setdefault(item["pdf"], []).append(item)
    for name, items in sorted(by_pdf.items()):
        layout = layout_of(find_pdf(name, folders), backend)
        for item in items:
            score_page(layout.pages[item["page"] - 1].blocks, item["blocks"], scores)
    return scores


def evaluate_headings(pdfs: Sequence[Path], config: SegmentConfig, seeds: int = 5) -> tuple[HeadingScores, int, int]:
    """Headings and segment starts with the outline hidden, over the PDFs that have an outline.

    Returns (heading scores, aligned segment starts, segments sampled with `seeds` seeds per document).
    """
    headings = HeadingScores()
    aligned = total = 0
    for pdf in pdfs:
        entries = [OutlineEntry(level=lvl, title=t, page=p) for lvl, t, p in render.outline(pdf) if t and p >= 1]
        if not entries:
            continue
        hidden = parse_layout(pdf.name, render.raw_pages(pdf), [], LayoutConfig())
        score_headings(hidden, entries, headings)
        for seed in range(seeds):
            hit, count = aligned_starts(sample_segments(hidden, config, seed), entries)
            aligned, total = aligned + hit, total + count
    return headings, aligned, total
