"""The card's "Examples": one picture per task of a published QA, drawn from the page cache at publish.

Per task, one `qa` row is drawn with a seeded generator (the recipe's seed and the task) from the rows that passed
every check and are used by an `sft` example. Its picture shows the question and answer (control characters
dropped, cut at a limit), the evidence pages as thumbnails with their page numbers, and, outlined in red, the boxes
where the page's text layer holds the answer (MuPDF's search, scaled to the cached image). No file name or path
is shown: the document is named by its sha256 prefix, as elsewhere in the card. Each picture stays under
EXAMPLE_MAX_BYTES. Does not own: drawing (core/charts.py), text search (documents/render.py).
"""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longdocvqa.core import charts
from longdocvqa.core.errors import LongDocVQAError
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.safetext import clean
from longdocvqa.documents.render import text_boxes
from longdocvqa.hub.charts import ASSETS
from longdocvqa.hub.stats import PublishStats

PageImage = Callable[[str, int], bytes]
EXAMPLE_MAX_BYTES = 300_000
MAX_THUMBNAILS = 3
THUMBNAIL_WIDTH_PX = 400
_TEXT_CHARS = 300
_WRAP_CHARS = 110
_ASCII_BRACKETS = str.maketrans(
    {"\u3008": "<", "\u3009": ">", "\u27e8": "<", "\u27e9": ">", "\u2329": "<", "\u232a": ">"}
)


def pick_examples(recipe: Recipe, stats: PublishStats) -> dict[str, dict[str, Any]]:
    """task -> one qa row (passed every check, used by an `sft` example), drawn with the recipe's seed."""
    picked = {}
    for task in sorted(stats.candidates):
        rows = stats.used_candidates(task)
        if rows:
            picked[task] = random.Random(f"{recipe.seed}/{task}").choice(rows)
    return picked


def write_example_pictures(
    folder: Path, recipe: Recipe, stats: PublishStats, page_image: PageImage | None
) -> tuple[dict[str, str], list[str]]:
    """Write assets/example_<task>.png (and its .json) per task; returns (task -> relative path, one-line notes
    for the tasks whose picture could not be drawn)."""
    missing = charts.charts_available()
    if missing or page_image is None:
        return {}, [missing or "no example pictures: the dataset was written without its page images"]
    pictures, notes = {}, []
    for task, row in pick_examples(recipe, stats).items():
        name = f"{ASSETS}/example_{re.sub(r'[^a-z0-9_-]+', '-', task.lower())}.png"
        try:
            chart = example_chart(row, stats.doc_paths.get(row["doc_sha256"]), page_image)
        except (LongDocVQAError, OSError, ValueError, IndexError) as exc:  # a page the cache or the PDF lacks
            notes.append(f"no example picture for {task}: {clean(str(exc))}")
            continue
        (folder / ASSETS).mkdir(parents=True, exist_ok=True)
        pictures[task] = str(chart.write(folder / name).relative_to(folder))
    return pictures, notes


def example_chart(row: dict[str, Any], pdf_path: str | None, page_image: PageImage) -> charts.Chart:
    """The picture of one qa row: header text, evidence page thumbnails, answer boxes; shrunk until it fits."""
    pages = list(row["evidence_pages"])[:MAX_THUMBNAILS]
    needles = _needles(row)
    width_px = THUMBNAIL_WIDTH_PX
    while True:
        thumbs = [_thumbnail(row["doc_sha256"], page, pdf_path, needles, page_image, width_px) for page in pages]
        chart = charts.pages_figure(_header(row, len(pages), any(t.boxes_px for t in thumbs)), thumbs)
        if len(chart.png) < EXAMPLE_MAX_BYTES or width_px <= 120:
            return chart
        width_px = int(width_px * 0.75)


def _needles(row: dict[str, Any]) -> list[str]:
    """The texts to find: each item of a List answer, else the answer; too short ones (`3`, `No`) are skipped."""
    items = row.get("answer_list") or [row["answer"]]
    return [str(item) for item in items if 3 <= len(str(item)) <= 200]


def _header(row: dict[str, Any], shown: int, found: bool) -> str:
    evidence = list(row["evidence_pages"])
    more = f" ({len(evidence) - shown} not shown)" if len(evidence) > shown else ""
    where = "outlined in red: the answer on the page's text layer" if found else "answer not located on the text layer"
    lines = [
        f"[{row['task']}] document {row['doc_sha256'][:12]}, evidence page{'s' if len(evidence) > 1 else ''} "
        f"{', '.join(str(p) for p in evidence)}{more}; {where}",
        *textwrap.wrap(f"Q: {_short(row['question'])}", _WRAP_CHARS),
        *textwrap.wrap(f"A: {_short(_answer_text(row))}", _WRAP_CHARS),
    ]
    return "\n".join(line.replace("$", r"\$") for line in lines)


def _answer_text(row: dict[str, Any]) -> str:
    """The answer as people read it: a List answer's items numbered, not its JSON."""
    items = row.get("answer_list") or []
    return "; ".join(f"({i}) {item}" for i, item in enumerate(items, 1)) if items else str(row["answer"])


def _short(text: Any) -> str:
    """One line of at most _TEXT_CHARS, control characters dropped, angle brackets the font lacks made ASCII."""
    flat = " ".join((clean(str(text)) or "").translate(_ASCII_BRACKETS).split())
    return flat if len(flat) <= _TEXT_CHARS else flat[: _TEXT_CHARS - 1] + "…"


def _thumbnail(
    doc: str, page: int, pdf_path: str | None, needles: list[str], page_image: PageImage, width_px: int
) -> charts.Thumbnail:
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(page_image(doc, page))).convert("RGB")
    scale = width_px / image.width
    image = image.resize((width_px, max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    boxes = _boxes_px(pdf_path, page, needles, image.width) if pdf_path else []
    return charts.Thumbnail(np.asarray(image), f"page {page}", boxes)


def _boxes_px(pdf_path: str, page: int, needles: list[str], width_px: int) -> list[tuple[float, float, float, float]]:
    """The answer's boxes on the page in the thumbnail's pixels (points scaled by its width)."""
    (x0, y0, x1, _), found = text_boxes(pdf_path, page, needles)
    scale = width_px / max(x1 - x0, 1e-6)
    return [((a - x0) * scale, (b - y0) * scale, (c - x0) * scale, (d - y0) * scale) for a, b, c, d in found]


def examples_section(pictures: dict[str, str], notes: list[str]) -> str:
    """The card's `## Examples` block: one picture per task, or the lines saying why there is none."""
    lines = [
        "## Examples",
        "",
        "One published `qa` row per task (drawn with the recipe's seed from the rows that passed every check): the "
        "question, the answer, and its evidence pages with the answer's text outlined in red where the page's text "
        "layer holds it.",
        "",
    ]
    lines += [f"![Example of {task}]({path})\n" for task, path in sorted(pictures.items())]
    lines += [f"{note}." for note in notes]
    if not pictures and not notes:
        lines.append("No `qa` row passed every check and is used by an `sft` example.")
    return "\n".join(lines)
