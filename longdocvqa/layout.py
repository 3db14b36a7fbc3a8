"""Raw page content -> labelled layout blocks (pure: no PDF library here).

Two backends produce the same `LayoutDoc`:
- `heuristic` (default): the PDF outline gives section titles; otherwise font-size and weight
  statistics find headings; lines repeated at the top/bottom of many pages are headers/footers;
  PyMuPDF's table finder gives tables; "Figure 3:"-style lines are captions.
- `pymupdf-layout`: PyMuPDF 2's built-in ONNX layout model labels regions; the outline, when
  present, still confirms section titles.
Image-only (scanned) pages are flagged, not dropped: their text comes later from an OCR backend.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from longdocvqa.recipe import LayoutConfig
from longdocvqa.records import Block, LayoutDoc, OutlineEntry, Page, RawLine, RawPage

_MARGIN_SHARE = 0.09  # top/bottom 9% of a page is where running headers and footers live
_REPEAT_SHARE = 0.3  # a margin line seen on >= 30% of pages is a running header/footer
_HEADING_SIZE_RATIO = 1.15
_MAX_HEADING_CHARS = 120
_CAPTION = re.compile(r"^(fig(ure)?\.?|table|listing|example)\s*[0-9ivx]+[.:\s]", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^([\u2022\u2023\u25e6\u2043\u2219•◦▪–-]\s|\(?[0-9a-z]{1,2}[.)]\s)")
_PAGE_NUMBER = re.compile(r"^(page\s*)?[0-9ivxlc]{1,6}(\s*(/|of)\s*[0-9]+)?$", re.IGNORECASE)
_MATH_CHARS = set("=+−×÷∑∫∂√≤≥≠≈∞πλμσαβγδ^_{}\\")


def parse_layout(
    sha256: str, pages: Sequence[RawPage], outline: Sequence[tuple[int, str, int]], config: LayoutConfig
) -> LayoutDoc:
    """Label every page's content; `outline` is the PDF's (level, title, page) list, possibly empty."""
    entries = [OutlineEntry(level=lvl, title=title, page=page) for lvl, title, page in outline if title]
    margins = _running_margins(pages)
    has_outline = bool(entries)
    body_size = _body_font_size(pages)
    parsed = []
    for raw in pages:
        if raw.model_boxes is not None:
            blocks = _model_blocks(raw, entries)
        else:
            blocks = _heuristic_blocks(raw, margins, body_size, entries, has_outline)
        num_chars = sum(len(line.text) for line in raw.lines)
        image_only = num_chars < config.image_only_max_chars and bool(raw.image_boxes)
        parsed.append(Page(index=raw.index, width_pt=raw.width_pt, height_pt=raw.height_pt, blocks=blocks,
                           image_only=image_only, num_chars=num_chars))  # fmt: skip
    backend = "pymupdf-layout" if any(p.model_boxes is not None for p in pages) else "heuristic"
    return LayoutDoc(sha256=sha256, backend=backend, num_pages=len(parsed), pages=parsed, outline=entries)


def normalise_title(text: str) -> str:
    """Fold case, digits-with-dots prefixes and whitespace, for matching outline titles to lines."""
    text = re.sub(r"\s+", " ", text).strip().lower()
    return re.sub(r"[^\w ]+", "", text)


def _margin_key(text: str) -> str:
    return re.sub(r"\d+", "#", normalise_title(text))


def _in_margin(line: RawLine, page: RawPage) -> str | None:
    if line.bbox[3] <= page.height_pt * _MARGIN_SHARE:
        return "header"
    if line.bbox[1] >= page.height_pt * (1 - _MARGIN_SHARE):
        return "footer"
    return None


def _running_margins(pages: Sequence[RawPage]) -> set[str]:
    """Normalised margin texts that repeat on many pages (page numbers folded to '#')."""
    counts: Counter[str] = Counter()
    for page in pages:
        counts.update({_margin_key(line.text) for line in page.lines if _in_margin(line, page)})
    threshold = max(3, _REPEAT_SHARE * len(pages))
    return {key for key, n in counts.items() if n >= threshold}


def _body_font_size(pages: Sequence[RawPage]) -> float:
    """The font size that carries the most characters."""
    weights: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            weights[round(line.size)] += len(line.text)
    return float(weights.most_common(1)[0][0]) if weights else 10.0


def _outline_titles(entries: Sequence[OutlineEntry], page: int) -> dict[str, int]:
    return {normalise_title(e.title): e.level for e in entries if e.page == page and normalise_title(e.title)}


def _match_outline(text: str, titles: dict[str, int]) -> int | None:
    """Outline level if this line is one of the page's outline titles (number prefixes tolerated)."""
    norm = normalise_title(text)
    if not norm:
        return None
    for title, level in titles.items():
        if norm == title or norm.endswith(title) and len(title) >= 4 or title.endswith(norm) and len(norm) >= 6:
            return level
    return None


def _line_label(
    line: RawLine, page: RawPage, margins: set[str], body_size: float, titles: dict[str, int], has_outline: bool
) -> tuple[str, int | None]:
    """Label one line; the second item is a heading level when the outline confirms it."""
    margin = _in_margin(line, page)
    if margin and (_margin_key(line.text) in margins or _PAGE_NUMBER.match(line.text.strip())):
        return margin, None
    level = _match_outline(line.text, titles) if titles else None
    if level is not None:
        return "section", level
    if _CAPTION.match(line.text):
        return "caption", None
    if not has_outline and _looks_like_heading(line, body_size):
        return "section", None
    if line.size < body_size * 0.85 and line.bbox[1] > page.height_pt * 0.75:
        return "footnote", None
    if _LIST_ITEM.match(line.text):
        return "list", None
    if _is_formula(line.text):
        return "formula", None
    return "paragraph", None


def _looks_like_heading(line: RawLine, body_size: float) -> bool:
    text = line.text.strip()
    if len(text) > _MAX_HEADING_CHARS or len(text) < 3 or not any(c.isalpha() for c in text):
        return False
    if text.endswith((".", ",", ";")) and not re.match(r"^\d+(\.\d+)*\.?\s", text):
        return False
    bigger = line.size >= body_size * _HEADING_SIZE_RATIO
    return bigger or (line.bold and line.size >= body_size * 0.99 and len(text) < 60 and text[0].isupper())


def _is_formula(text: str) -> bool:
    stripped = text.replace(" ", "")
    return len(stripped) >= 3 and sum(c in _MATH_CHARS for c in stripped) / len(stripped) > 0.25


def _inside(inner: tuple[float, ...], outer: tuple[float, ...], slack: float = 2.0) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] - slack <= cx <= outer[2] + slack and outer[1] - slack <= cy <= outer[3] + slack


def _heuristic_blocks(
    page: RawPage, margins: set[str], body_size: float, entries: Sequence[OutlineEntry], has_outline: bool
) -> list[Block]:
    titles = _outline_titles(entries, page.index)
    blocks: list[Block] = [Block(label="table", bbox=t.bbox, text=t.text, order=0) for t in page.tables]
    blocks += [Block(label="figure", bbox=b, text="", order=0) for b in page.image_boxes]
    current: list[RawLine] = []
    for line in sorted(page.lines, key=lambda ln: (round(ln.bbox[1]), ln.bbox[0])):
        if any(_inside(line.bbox, t.bbox) for t in page.tables):
            continue
        label, level = _line_label(line, page, margins, body_size, titles, has_outline)
        if label == "paragraph" and current and _continues(current[-1], line, body_size):
            current.append(line)
            continue
        _flush(current, blocks)
        current = []
        if label == "paragraph":
            current = [line]
        else:
            blocks.append(Block(label=label, bbox=line.bbox, text=line.text, order=0, font_size=line.size))  # type: ignore[arg-type]
    _flush(current, blocks)
    _promote_title(page, blocks, entries)
    return _ordered(blocks)


def _continues(prev: RawLine, line: RawLine, body_size: float) -> bool:
    gap = line.bbox[1] - prev.bbox[3]
    same_column = abs(line.bbox[0] - prev.bbox[0]) < body_size * 6
    return -2 <= gap <= body_size * 0.8 and same_column


def _flush(lines: list[RawLine], blocks: list[Block]) -> None:
    if not lines:
        return
    bbox = (min(ln.bbox[0] for ln in lines), min(ln.bbox[1] for ln in lines),
            max(ln.bbox[2] for ln in lines), max(ln.bbox[3] for ln in lines))  # fmt: skip
    text = _join_lines([ln.text for ln in lines])
    blocks.append(Block(label="paragraph", bbox=bbox, text=text, order=0, font_size=lines[0].size))


def _join_lines(lines: list[str]) -> str:
    out = ""
    for text in lines:
        if out.endswith("-") and text[:1].islower():  # kept: extraction already joined the safe cases
            out = out + text
        else:
            out = f"{out} {text}" if out else text
    return out


def _promote_title(page: RawPage, blocks: list[Block], entries: Sequence[OutlineEntry]) -> None:
    """On page 1, the largest-font heading-like line is the document title."""
    if page.index != 1:
        return
    candidates = [b for b in blocks if b.label in ("section", "paragraph") and b.font_size and len(b.text) < 150]
    if not candidates:
        return
    best = max(candidates, key=lambda b: (b.font_size or 0, -b.bbox[1]))
    sizes = [b.font_size or 0 for b in blocks if b.label == "paragraph"]
    if sizes and (best.font_size or 0) > max(sorted(sizes)[len(sizes) // 2] * 1.3, 0):
        best.label = "title"


def _ordered(blocks: list[Block]) -> list[Block]:
    """Reading order: top to bottom, then left to right (single-column approximation)."""
    blocks.sort(key=lambda b: (round(b.bbox[1] / 4), b.bbox[0]))
    for i, block in enumerate(blocks):
        block.order = i
    return blocks


def _model_blocks(page: RawPage, entries: Sequence[OutlineEntry]) -> list[Block]:
    titles = _outline_titles(entries, page.index)
    blocks = []
    for box in page.model_boxes or []:
        label = box.label
        if titles and label in ("paragraph", "title") and _match_outline(box.text, titles) is not None:
            label = "section"
        blocks.append(Block(label=label, bbox=box.bbox, text=box.text, order=0))  # type: ignore[arg-type]
    return _ordered(blocks)
