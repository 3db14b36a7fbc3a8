"""Raw page content -> labelled layout blocks (pure: no PDF library here).

Two backends produce the same `LayoutDoc`:
- `heuristic` (default): pieces of one printed line are merged first (a section number joins its
  title); the PDF outline gives section titles, otherwise numbered or larger-than-body lines are
  headings (never plain body-size lines); lines in the top/bottom band that repeat across pages, and
  bare page numbers there, are headers/footers; images and non-rule drawings group into figures;
  footnotes are marker-led small lines below a short footnote rule; monospace lines and TeX macros
  are paragraphs (code), never formulas; PyMuPDF's ruled-table finder gives tables, and rows of cells
  aligned in columns without a grid are tables too.
- `pymupdf-layout`: PyMuPDF 2's built-in ONNX layout model labels regions; the outline, when
  present, still confirms section titles.
Image-only (scanned) pages are flagged, not dropped: their text comes later from an OCR backend.
Owns: line pieces, running headers/footers and page numbers, footnotes, captions, lists, blocks and their reading
order. Does not own: heading rules (headings.py), figure grouping and box geometry (figures.py), formula rules
(formulas.py) or tables without a grid (tables.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.core.records import Block, LayoutDoc, OutlineEntry, Page, RawLine, RawPage
from longdocvqa.documents.figures import Box, figure_boxes, overlaps, rounded, union, within
from longdocvqa.documents.formulas import boxed_formula, is_formula, merge_formulas
from longdocvqa.documents.headings import (
    heading_continues,
    heading_level,
    is_toc_page,
    match_outline,
    normalise_title,
    outline_titles,
    rank_levels,
)
from longdocvqa.documents.tables import aligned_tables

_MARGIN_SHARE = 0.15  # top/bottom 15% of a page is where running headers and footers live
_REPEAT_SHARE = 0.25  # a margin line seen on >= 25% of pages is a running header/footer
_CAPTION = re.compile(r"^(fig(ure)?\.?|table|listing|example)\s*[0-9ivx]+(\.[0-9]+)?[.:]", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^([\u2022\u2023\u25e6\u2043\u2219•◦▪–-]\s|\(?([0-9]{1,2}|[a-z]|[ivx]{1,4})[.)]\s)")
_PAGE_NUMBER = re.compile(r"^([-–—]\s*)?((page|seite)\s*)?[0-9ivxlc]{1,6}(\s*(/|of|von)\s*[0-9]+)?(\s*[-–—])?$", re.I)
_FOOTNOTE_MARKER = re.compile(r"^[0-9*†‡§¶]")
_FLOWING = ("paragraph", "list", "footnote", "formula")  # labels whose consecutive lines form one block


_PAGE_NUMBER_SHARE = 0.25  # a bare number as the first/last line within 25% of the edge is a page number


@dataclass
class _Context:
    """Document-wide facts every page's labelling needs."""

    margins: set[str]
    body_size: float
    has_outline: bool
    figures: dict[int, list[Box]]
    running_figures: set[Box]
    titles: dict[int, dict[str, int]]  # the outline's normalised titles by page


def parse_layout(
    sha256: str, pages: Sequence[RawPage], outline: Sequence[tuple[int, str, int]], config: LayoutConfig
) -> LayoutDoc:
    """Label every page's content; `outline` is the PDF's (level, title, page) list, possibly empty."""
    entries = [OutlineEntry(level=lvl, title=title, page=page) for lvl, title, page in outline if title]
    merged = {raw.index: merge_line_pieces(raw.lines) for raw in pages}
    figures = {raw.index: figure_boxes(raw, merged[raw.index]) for raw in pages}
    ctx = _Context(_running_margins(pages, merged), _body_font_size(pages), bool(entries), figures,
                   _running_figures(figures, pages), outline_titles(entries))  # fmt: skip
    parsed = []
    for raw in pages:
        if raw.model_boxes is not None:
            blocks = _model_blocks(raw, ctx.titles.get(raw.index, {}))
        else:
            blocks = _heuristic_blocks(raw, merged[raw.index], ctx)
        num_chars = sum(len(line.text) for line in raw.lines)
        image_only = num_chars < config.image_only_max_chars and bool(raw.image_boxes)
        parsed.append(Page(index=raw.index, width_pt=raw.width_pt, height_pt=raw.height_pt, blocks=blocks,
                           image_only=image_only, num_chars=num_chars))  # fmt: skip
    if not entries:
        rank_levels(parsed)
    backend = "pymupdf-layout" if any(p.model_boxes is not None for p in pages) else "heuristic"
    return LayoutDoc(sha256=sha256, backend=backend, num_pages=len(parsed), pages=parsed, outline=entries)


_DIGITS = re.compile(r"\d+")


# ------------------------------------------------------------------------------------------ line pieces


def merge_line_pieces(lines: Sequence[RawLine]) -> list[RawLine]:
    """Pieces the PDF draws separately on one baseline, close together, become one line ("1.2" + "Scope")."""
    out: list[RawLine] = []
    for line in sorted(lines, key=_centre_key):
        # a piece joins one of the last four lines kept when it starts close after it (gap -1 pt to 2.5 font
        # sizes) and they overlap by more than half the lower one's height; inlined, it runs ~200 times per page
        rx0, ry0, _, ry1 = line.bbox
        size, height = line.size, ry1 - ry0
        host = None
        for i in range(len(out) - 1, max(len(out) - 5, -1), -1):
            left = out[i]
            _, ly0, lx1, ly1 = left.bbox
            gap = rx0 - lx1  # checked first: most candidates are far apart
            if gap < -1.0 or gap > 2.5 * (left.size if left.size > size else size):
                continue
            if (ly1 if ly1 < ry1 else ry1) - (ly0 if ly0 > ry0 else ry0) > 0.5 * min(ly1 - ly0, height):
                host = i
                break
        if host is None:
            out.append(line)
        else:
            out[host] = _join_pieces(out[host], line)
    return sorted(out, key=_top_key)


def _centre_key(line: RawLine) -> tuple[int, float]:
    return round((line.bbox[1] + line.bbox[3]) / 2), line.bbox[0]


def _top_key(line: RawLine) -> tuple[int, float]:
    return round(line.bbox[1]), line.bbox[0]


def _join_pieces(left: RawLine, right: RawLine) -> RawLine:
    main = left if len(left.text) >= len(right.text) else right
    bbox = (min(left.bbox[0], right.bbox[0]), min(left.bbox[1], right.bbox[1]),
            max(left.bbox[2], right.bbox[2]), max(left.bbox[3], right.bbox[3]))  # fmt: skip
    bold = main.bold or (left.bold and right.bold)
    return RawLine(bbox=bbox, text=f"{left.text} {right.text}", size=max(left.size, right.size), bold=bold,
                   mono=main.mono, math=left.math and right.math)  # fmt: skip


# ------------------------------------------------------------------------------------------ document statistics


def _margin_key(text: str) -> str:
    return _DIGITS.sub("#", normalise_title(text))


def _in_margin(line: RawLine, page: RawPage) -> str | None:
    if line.bbox[3] <= page.height_pt * _MARGIN_SHARE:
        return "header"
    if line.bbox[1] >= page.height_pt * (1 - _MARGIN_SHARE):
        return "footer"
    return None


def _running_margins(pages: Sequence[RawPage], merged: dict[int, list[RawLine]]) -> set[str]:
    """Normalised margin texts that repeat on many pages (page numbers folded to '#')."""
    counts: Counter[str] = Counter()
    for page in pages:
        counts.update({_margin_key(line.text) for line in merged[page.index] if _in_margin(line, page)})
    threshold = max(2, _REPEAT_SHARE * len(pages))
    return {key for key, n in counts.items() if n >= threshold and key.strip()}


def _running_figures(figures: dict[int, list[Box]], pages: Sequence[RawPage]) -> set[Box]:
    """Figure boxes drawn at the same place on many pages, each under a third of the page (a slide deck's
    navigation bar, a logo; a full-page scan repeats its box too but is content)."""
    area = {p.index: p.width_pt * p.height_pt for p in pages}
    counts = Counter(rounded(box) for i, boxes in figures.items() for box in set(boxes)
                     if (box[2] - box[0]) * (box[3] - box[1]) < area[i] / 3)  # fmt: skip
    return {box for box, n in counts.items() if n >= max(3, _REPEAT_SHARE * len(pages))}


def _body_font_size(pages: Sequence[RawPage]) -> float:
    """The font size that carries the most characters of prose (monospace code listings, often set smaller and
    sometimes longer than the prose, do not count unless there is nothing else)."""
    weights: Counter[float] = Counter()
    code: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            (code if line.mono else weights)[round(line.size)] += len(line.text)
    weights = weights or code
    return float(weights.most_common(1)[0][0]) if weights else 10.0


def _toc_rows(lines: Sequence[RawLine], page: RawPage) -> set[int]:
    """Rows (rounded centre y, +-2) that end in a bare page number at the right: table-of-contents entries."""
    rows: set[int] = set()
    margin: list[RawLine] = []
    for line in lines:
        if line.text.strip().isdigit() and line.bbox[0] > page.width_pt * 0.6:
            if _in_margin(line, page):
                margin.append(line)
                continue
            centre = round((line.bbox[1] + line.bbox[3]) / 2)
            rows.update(range(centre - 2, centre + 3))
    if len(rows) >= 15:  # three entries or more: a contents page, whose entries also reach into the margin bands
        for line in margin:
            centre = round((line.bbox[1] + line.bbox[3]) / 2)
            rows.update(range(centre - 2, centre + 3))
    return rows


# ------------------------------------------------------------------------------------------ line labels


def _footnote_top(page: RawPage, lines: Sequence[RawLine], body_size: float) -> float | None:
    """The y of a footnote rule: a short thin line at the left text edge in the lower part of the page, with
    only smaller-than-body lines below it (footer aside), the first of them led by a marker ("1", "*", "†")."""
    if not lines or not page.rules:
        return None
    left = Counter(round(ln.bbox[0]) for ln in lines).most_common(1)[0][0]  # the text column's left edge
    for rule in sorted(page.rules, key=lambda r: r[1]):
        width = rule[2] - rule[0]
        if rule[1] < page.height_pt * 0.3 or abs(rule[0] - left) > 6 or rule[3] - rule[1] > 1.5:
            continue
        if not page.width_pt * 0.08 <= width <= page.width_pt * 0.5:
            continue
        below = [ln for ln in lines if ln.bbox[1] >= rule[3] - 1 and not _in_margin(ln, page)]
        if not below or below[0].bbox[1] - rule[3] > 20 or not _FOOTNOTE_MARKER.match(below[0].text):
            continue
        if all(ln.size < body_size * 0.97 for ln in below):
            return rule[3] - 1
    return None


def _page_furniture(lines: Sequence[RawLine], page: RawPage, margins: set[str]) -> dict[int, str]:
    """Header/footer label by line position: repeated margin lines, bare page numbers (also a first or last line
    a little further in), and lines on the same baseline as a page number in the margin band."""
    top, bottom = page.height_pt * _MARGIN_SHARE, page.height_pt * (1 - _MARGIN_SHARE)  # as `_in_margin` has them
    out: dict[int, str] = {}
    banded: list[int] = []  # the lines in a margin band
    for i, line in enumerate(lines):
        if line.bbox[3] <= top:
            band = "header"
        elif line.bbox[1] >= bottom:
            band = "footer"
        else:
            continue
        banded.append(i)
        numbered = _PAGE_NUMBER.match(line.text.strip())  # a page number: no repeated-text key needed
        if numbered or (key := _margin_key(line.text)) in margins and key.replace("#", "").strip():
            out[i] = band
    for i in (0, len(lines) - 1) if lines else ():
        line = lines[i]
        centre = (line.bbox[1] + line.bbox[3]) / 2
        near = centre < page.height_pt * _PAGE_NUMBER_SHARE or centre > page.height_pt * (1 - _PAGE_NUMBER_SHARE)
        if near and _PAGE_NUMBER.match(line.text.strip()):
            out[i] = "header" if centre < page.height_pt / 2 else "footer"
    _drop_line_numbers(lines, out)
    rows = [(lines[i].bbox[1] + lines[i].bbox[3]) / 2 for i in out if _PAGE_NUMBER.match(lines[i].text.strip())]
    for i in banded if rows else ():
        line = lines[i]
        centre = (line.bbox[1] + line.bbox[3]) / 2
        if i not in out and any(abs(centre - row) < 3 for row in rows):
            out[i] = "header" if centre < page.height_pt / 2 else "footer"
    _furniture_rows(lines, page, out)
    return out


def _furniture_rows(lines: Sequence[RawLine], page: RawPage, out: dict[int, str]) -> None:
    """A line on the baseline of a header or footer that is the page's first or last row, within a quarter of
    the page's edge and in no much larger font, is part of it: a running section title beside a repeated package
    name, a chapter name beside a page number set a little further in (a slide's larger frame title beside its
    navigation bar is not)."""
    if not out:
        return
    centres = [(line.bbox[1] + line.bbox[3]) / 2 for line in lines]
    edges = (min(centres), max(centres))  # only the page's first and last rows: a data listing repeats words too
    rows = [(centres[i], lines[i].size) for i in out if any(abs(centres[i] - edge) < 3 for edge in edges)]
    if not rows:
        return
    common = sorted(line.size for line in lines)[len(lines) // 2] * 1.15  # no larger than most text: no part title
    upper, lower = page.height_pt * _PAGE_NUMBER_SHARE, page.height_pt * (1 - _PAGE_NUMBER_SHARE)
    for i, line in enumerate(lines):
        centre = centres[i]
        if i in out or line.size > common or not (centre < upper or centre > lower):  # not near an edge
            continue
        if any(abs(centre - y) < 3 and line.size <= size * 1.3 for y, size in rows):
            out[i] = "header" if centre < page.height_pt / 2 else "footer"


def _drop_line_numbers(lines: Sequence[RawLine], out: dict[int, str]) -> None:
    """Bare numbers stacked in one margin band are line numbers of a listing or an edition, not page numbers:
    only the outermost one (the page number, if any) stays header/footer."""
    for band in ("header", "footer"):
        numbers = [i for i, label in out.items() if label == band and _PAGE_NUMBER.match(lines[i].text.strip())]
        if len(numbers) < 2:
            continue
        keep = (min if band == "header" else max)(numbers, key=lambda i: lines[i].bbox[1])
        for i in numbers:
            if i != keep:
                del out[i]


def _line_label(line: RawLine, titles: dict[str, int], heading: int | None) -> tuple[str, int | None]:
    """Label one body line (headers and footers are found before); the second item is a heading level.
    `heading` is the line's level from `heading_level`, None when it is no heading or headings are off here."""
    level = match_outline(line.text, titles) if titles else None
    if level is not None:
        return "section", level
    if _CAPTION.match(line.text) and not line.mono:
        return "caption", None
    if heading is not None:
        return "section", heading
    if _LIST_ITEM.match(line.text) and not line.mono:
        return "list", None
    if is_formula(line):
        return "formula", None
    return "paragraph", None


# ------------------------------------------------------------------------------------------ blocks


def _heuristic_blocks(page: RawPage, lines: list[RawLine], ctx: _Context) -> list[Block]:
    titles = ctx.titles.get(page.index, {})
    figures = ctx.figures[page.index]
    blocks: list[Block] = [Block(label="table", bbox=t.bbox, text=t.text, order=0) for t in page.tables]
    taken = [t.bbox for t in page.tables] + figures
    figure_text: dict[Box, list[str]] = {box: [] for box in figures}
    furniture = _page_furniture(lines, page, ctx.margins)
    unruled = [Block(label="table", bbox=box, text=text, order=0)
               for box, text in _unruled_tables(lines, page, furniture, taken, ctx.body_size)]  # fmt: skip
    taken += [b.bbox for b in unruled]
    footnote_top = _footnote_top(page, lines, ctx.body_size)
    levels = [None if ctx.has_outline else heading_level(ln, ctx.body_size, page.index == 1) for ln in lines]
    if is_toc_page(levels) or _shows_a_page(lines, furniture, taken):
        levels = [None] * len(lines)
    toc_rows = _toc_rows(lines, page)
    current: list[RawLine] = []
    current_label = ""
    last_head: RawLine | None = None
    for i, line in enumerate(lines):
        home = next((box for box in taken if within(line.bbox, box)), None) if taken else None
        if home is not None:
            figure_text.get(home, []).append(line.text)
            continue
        heading = None if round((line.bbox[1] + line.bbox[3]) / 2) in toc_rows else levels[i]
        label, level = (furniture[i], None) if i in furniture else _line_label(line, titles, heading)
        if label in ("section", "paragraph") and last_head and blocks and heading_continues(last_head, line):
            blocks[-1].bbox, blocks[-1].text = union(blocks[-1].bbox, line.bbox), f"{blocks[-1].text} {line.text}"
            last_head = line
            continue
        if footnote_top is not None and line.bbox[1] >= footnote_top and label not in ("header", "footer"):
            label = "footnote"
        if label in _FLOWING and current and _continues(current[-1], line, ctx.body_size, current_label, label):
            current.append(line)
            continue
        _flush(current, current_label, blocks)
        current, current_label = [line], label
        if label not in _FLOWING:
            blocks.append(_block(label, [line], level))
            current = []
        last_head = line if label == "section" else None
    _flush(current, current_label, blocks)
    for box in figures:
        label = "figure" if rounded(box) not in ctx.running_figures else "header"
        label = "formula" if label == "figure" and boxed_formula(box, lines) else label
        blocks.append(Block(label=label, bbox=box, text=" ".join(figure_text[box]), order=0))  # type: ignore[arg-type]
    _promote_title(page, blocks)
    _follow_captions(blocks)  # aligned text is a table whatever its caption says: not passed in
    return _ordered(merge_formulas(blocks + unruled))


def _shows_a_page(lines: Sequence[RawLine], furniture: dict[int, str], taken: Sequence[Box]) -> bool:
    """The page's lowest line is a caption and nothing on it is a figure or table: the page shows another
    document's page ("Figure 1: Output from ledeasy.tex", an example's typeset output), whose headings are
    not this document's."""
    below = [line for i, line in enumerate(lines) if furniture.get(i) != "header"]
    lowest = max(below, key=lambda line: line.bbox[3], default=None)
    return not taken and lowest is not None and bool(_CAPTION.match(lowest.text)) and not lowest.mono


def _unruled_tables(
    lines: Sequence[RawLine], page: RawPage, furniture: dict[int, str], taken: Sequence[Box], body_size: float
) -> list[tuple[Box, str]]:
    """`aligned_tables` over the lines not yet in a ruled table or figure; a page number never joins a table."""
    free = [
        line
        for i, line in enumerate(lines)
        if not (i in furniture and _PAGE_NUMBER.match(line.text.strip()))
        and not (taken and any(within(line.bbox, box) for box in taken))
    ]
    return aligned_tables(free, page, body_size)


def _follow_captions(blocks: list[Block]) -> None:
    """A float's caption names its kind: a ruled grid captioned "Figure 2" is a figure, and the reverse."""
    captions = [b for b in blocks if b.label == "caption"]
    for block in blocks:
        if block.label not in ("table", "figure"):
            continue
        near = [c for c in captions if overlaps(c.bbox, block.bbox, 30) and c.bbox[0] < block.bbox[2]]
        kinds = {"figure" if c.text.lower().startswith("fig") else "table" for c in near
                 if c.text.lower().startswith(("fig", "table"))}  # fmt: skip
        if len(kinds) == 1:
            block.label = kinds.pop()  # type: ignore[assignment]


def _continues(prev: RawLine, line: RawLine, body_size: float, prev_label: str, label: str) -> bool:
    """The next line belongs to the open block: near below it, same column, compatible label."""
    if label != prev_label and not (prev_label == "list" and label == "paragraph"):
        return False
    if label == "list" and prev_label == "list":
        return False
    gap = line.bbox[1] - prev.bbox[3]
    same_column = abs(line.bbox[0] - prev.bbox[0]) < body_size * 6 and line.bbox[0] < prev.bbox[2]
    return -2 <= gap <= body_size * 0.8 and same_column


def _block(label: str, lines: list[RawLine], level: int | None = None) -> Block:
    if len(lines) == 1:  # most blocks (headings, furniture, one-line items)
        bbox, text = lines[0].bbox, lines[0].text
    else:
        x0s, y0s, x1s, y1s = zip(*(ln.bbox for ln in lines), strict=True)
        bbox, text = (min(x0s), min(y0s), max(x1s), max(y1s)), _join_lines([ln.text for ln in lines])
    x0, y0, x1, y1 = bbox
    return _make_line_block(label, (float(x0), float(y0), float(x1), float(y1)), text, float(lines[0].size), level)


_BLOCK_FIELDS = frozenset(("label", "bbox", "text", "order", "font_size", "level"))
_new = object.__new__
_set = object.__setattr__


def _line_block(label: str, bbox: Box, text: str, font_size: float, level: int | None) -> Block:
    """`Block(label=..., bbox=..., text=..., order=0, font_size=..., level=...)` without pydantic's validation pass
    (a third of the cost of labelling a line): every value is of its field's type already (see `_fast_blocks_hold`)."""
    block = _new(Block)
    _set(block, "__dict__", {"label": label, "bbox": bbox, "text": text, "order": 0, "font_size": font_size,
                             "level": level})  # fmt: skip
    _set(block, "__pydantic_fields_set__", set(_BLOCK_FIELDS))
    _set(block, "__pydantic_extra__", None)
    _set(block, "__pydantic_private__", None)
    return block


def _validated_line_block(label: str, bbox: Box, text: str, font_size: float, level: int | None) -> Block:
    return Block.model_validate(dict(label=label, bbox=bbox, text=text, order=0, font_size=font_size, level=level))


def _fast_blocks_hold() -> bool:
    """Whether `_line_block` gives the validated record under the installed pydantic (it sets pydantic's internals,
    not an API); checked once, at import. Where it does not, blocks are validated: slower, never wrong."""
    args = ("section", (1.0, 2.5, 3.0, 4.0), "1 Scope", 10.0, 1)
    try:
        fast, slow = _line_block(*args), _validated_line_block(*args)
        same = fast == slow and fast.model_fields_set == slow.model_fields_set
        return same and fast.model_dump_json() == slow.model_dump_json()
    except Exception:  # any failure means the shortcut does not hold here
        return False


_make_line_block = _line_block if _fast_blocks_hold() else _validated_line_block


def _flush(lines: list[RawLine], label: str, blocks: list[Block]) -> None:
    if lines:
        blocks.append(_block(label, lines))


def _join_lines(lines: list[str]) -> str:
    out = ""
    for text in lines:
        if out.endswith("-") and text[:1].islower():  # kept: extraction already joined the safe cases
            out = out + text
        else:
            out = f"{out} {text}" if out else text
    return out


def _promote_title(page: RawPage, blocks: list[Block]) -> None:
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
        best.level = None


def _ordered(blocks: list[Block]) -> list[Block]:
    """Reading order: top to bottom, then left to right (single-column approximation)."""
    blocks.sort(key=lambda b: (round(b.bbox[1] / 4), b.bbox[0]))
    for i, block in enumerate(blocks):
        block.order = i
    return blocks


def _model_blocks(page: RawPage, titles: dict[str, int]) -> list[Block]:
    blocks = []
    for box in page.model_boxes or []:
        label = box.label
        level = match_outline(box.text, titles) if titles and label in ("paragraph", "title", "section") else None
        if level is not None:
            label = "section"
        blocks.append(Block(label=label, bbox=box.bbox, text=box.text, order=0, level=level))  # type: ignore[arg-type]
    return _ordered(blocks)
