"""What the pipeline sees on a page: labelled blocks as JSON, and the same blocks drawn on page images.

Used by `longdocvqa layout PDF`, and by bench/layout.py and the tests to score layouts against ground truth.
"""

from __future__ import annotations

import io
import json
import math
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

Box = tuple[float, float, float, float]

# One colour per label (RGB): matplotlib's tab10 palette, made to be told apart (also by most colour-blind readers),
# with its grey tinted slate for headers and a dark olive for footers, so that no two labels share a colour and no
# label's colour is a pure grey (the shade anti-aliased black text leaves on white).
COLOURS = {
    "title": (214, 39, 40), "section": (255, 127, 14), "paragraph": (31, 119, 180), "list": (23, 190, 207),
    "table": (44, 160, 44), "figure": (148, 103, 189), "caption": (188, 189, 34), "header": (105, 115, 135),
    "footer": (70, 70, 40), "footnote": (227, 119, 194), "formula": (140, 86, 75),
}  # fmt: skip
PNG_DPI = 144  # 10 pt text is 20 px high: readable on a screen without zooming
_MIN_WIDTH_PX = 1100  # a small page (a slide, 363 pt wide) is drawn larger than PNG_DPI, to this width
_TINT_ALPHA = 36  # of 255: a block's area shows in its colour, the text under it stays black on near-white
_TAG_PT = 9.0  # a tag's text is as high as 9 pt text on the page: 18 px at 144 DPI, below body text on most pages


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


def draw_page(path: str | Path, layout: LayoutDoc, index: int, dpi: int = PNG_DPI) -> bytes:
    """PNG of page `index` for a person checking its layout, at `dpi` (or the DPI that makes a small page
    _MIN_WIDTH_PX wide): every block outlined and lightly tinted in its label's colour, tagged "<reading order>
    <label>" on a filled tag of that colour (beside the block where the margin has room, else above it, else inside
    its corner), and a legend of the page's labels below the page."""
    from PIL import Image, ImageDraw

    width_pt = max(layout.pages[index - 1].width_pt, 1.0)
    dpi = max(dpi, math.ceil(_MIN_WIDTH_PX * 72 / width_pt))
    page = Image.open(io.BytesIO(render.render_page(path, index, dpi=dpi, fmt="png"))).convert("RGB")
    blocks = sorted(layout.pages[index - 1].blocks, key=lambda b: b.order)
    scale = page.width / width_pt  # pixels per point; the render may have lowered the DPI to cap the pixels
    boxes: list[Box] = [(b.bbox[0] * scale, b.bbox[1] * scale, b.bbox[2] * scale, b.bbox[3] * scale) for b in blocks]
    font = _font(max(12, round(scale * _TAG_PT)))
    tint = Image.new("RGBA", page.size, (0, 0, 0, 0))
    shade = ImageDraw.Draw(tint)
    for block, box in zip(blocks, boxes, strict=True):
        shade.rectangle(box, fill=(*COLOURS.get(block.label, (0, 0, 0)), _TINT_ALPHA))
    page = Image.alpha_composite(page.convert("RGBA"), tint).convert("RGB")
    draw = ImageDraw.Draw(page)
    width = max(2, round(scale * 1.2))
    for block, box in zip(blocks, boxes, strict=True):
        draw.rectangle(box, outline=COLOURS.get(block.label, (0, 0, 0)), width=width)
    placed: list[Box] = []
    for block, box in zip(blocks, boxes, strict=True):
        text = f"{block.order} {block.label}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        size = (right - left + 2 * width + 4, bottom - top + 2 * width + 2)
        spot = _tag_spot(box, size, page.size, [b for b in boxes if b is not box] + placed)
        placed.append(spot)
        colour = COLOURS.get(block.label, (0, 0, 0))
        draw.rectangle(spot, fill=colour, outline=(255, 255, 255))
        draw.text((spot[0] + width + 2 - left, spot[1] + width + 1 - top), text, font=font, fill=_ink(colour))
    out = io.BytesIO()
    _with_legend(page, sorted({b.label for b in blocks}), font).save(out, "PNG", optimize=True)
    return out.getvalue()


def _font(size_px: int) -> Any:
    """Pillow's bundled scalable font at `size_px` (no system font needed)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size_px)


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light tags, white on dark ones (relative luminance, ITU-R BT.709 weights)."""
    red, green, blue = colour
    return (0, 0, 0) if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 140 else (255, 255, 255)


def _tag_spot(box: Box, size: tuple[float, float], page: tuple[int, int], taken: Sequence[Box]) -> Box:
    """Where a tag of `size` goes: left of the block (top-aligned), above its top-left corner, above and to the right,
    or inside that corner, each moved inside the page; the first that covers the least of the block itself, other
    blocks and tags placed before (the margin beside a block is usually empty)."""
    w, h = size
    x0, y0 = box[0], box[1]
    best: tuple[float, Box] | None = None
    for cx, cy in ((x0 - w - 2, y0), (x0, y0 - h - 1), (x0 + w + 2, y0 - h - 1), (x0, y0)):
        cx, cy = min(max(cx, 0.0), page[0] - w), min(max(cy, 0.0), page[1] - h)
        spot = (cx, cy, cx + w, cy + h)
        covered = sum(_overlap(spot, other) for other in [box, *taken])
        if best is None or covered < best[0]:
            best = (covered, spot)
    assert best is not None
    return best[1]


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Area shared by two boxes."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _with_legend(page: Any, labels: list[str], font: Any) -> Any:
    """The page with a white band below it: a swatch and the name of each label drawn on it, wrapped to its width."""
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(page)
    line_h = font.size * 2
    rows: list[list[str]] = [[]]
    x = line_h // 2
    for label in ["labels:", *labels]:
        step = line_h + probe.textlength(label, font=font) + line_h // 2
        if x + step > page.width and rows[-1]:
            rows.append([])
            x = line_h // 2
        rows[-1].append(label)
        x += step
    canvas = Image.new("RGB", (page.width, page.height + line_h * len(rows) + line_h // 2), (255, 255, 255))
    canvas.paste(page, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.line((0, page.height, page.width, page.height), fill=(0, 0, 0), width=2)
    for r, row in enumerate(rows):
        x, y = line_h // 2, page.height + line_h // 2 + r * line_h
        for label in row:
            if label in COLOURS:
                draw.rectangle((x, y + font.size // 4, x + line_h - 4, y + font.size * 5 // 4), fill=COLOURS[label])
                x += line_h
            draw.text((x, y), label, font=font, fill=(0, 0, 0))
            x += probe.textlength(label, font=font) + line_h // 2
    return canvas


def write_pngs(path: str | Path, layout: LayoutDoc, pages: list[int], folder: Path, dpi: int = PNG_DPI) -> list[Path]:
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
