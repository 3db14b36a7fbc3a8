"""Raw page content -> labelled layout blocks (pure: no PDF library here).

Two backends produce the same `LayoutDoc`:
- `heuristic` (default): pieces of one printed line are merged first (a section number joins its
  title); the PDF outline gives section titles, otherwise numbered or larger-than-body lines are
  headings (never plain body-size lines); lines in the top/bottom band that repeat across pages, and
  bare page numbers there, are headers/footers; images and non-rule drawings group into figures;
  footnotes are marker-led small lines below a short footnote rule; monospace lines and TeX macros
  are paragraphs (code), never formulas; PyMuPDF's ruled-table finder gives tables.
- `pymupdf-layout`: PyMuPDF 2's built-in ONNX layout model labels regions; the outline, when
  present, still confirms section titles.
Image-only (scanned) pages are flagged, not dropped: their text comes later from an OCR backend.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.core.records import Block, LayoutDoc, OutlineEntry, Page, RawLine, RawPage

Box = tuple[float, float, float, float]
_MARGIN_SHARE = 0.15  # top/bottom 15% of a page is where running headers and footers live
_REPEAT_SHARE = 0.25  # a margin line seen on >= 25% of pages is a running header/footer
_HEADING_SIZE_RATIO = 1.15
_MAX_HEADING_CHARS = 120
_CAPTION = re.compile(r"^(fig(ure)?\.?|table|listing|example)\s*[0-9ivx]+(\.[0-9]+)?[.:]", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^([\u2022\u2023\u25e6\u2043\u2219•◦▪–-]\s|\(?([0-9]{1,2}|[a-z]|[ivx]{1,4})[.)]\s)")
_PAGE_NUMBER = re.compile(r"^(page\s*)?[0-9ivxlc]{1,6}(\s*(/|of)\s*[0-9]+)?$", re.IGNORECASE)
_NUMBERED = re.compile(
    r"^(?:(?:chapter|appendix|part|section)\s+)?([0-9]{1,2}(?:\.[0-9]{1,2}){0,3}|[A-Z](?:\.[0-9]{1,2}){1,3}|[IVX]{1,5})"
    r"\.?\s+\S"
)
_FOOTNOTE_MARKER = re.compile(r"^[0-9*†‡§¶]")
_EQUATION_NUMBER = re.compile(r"^[(\[][0-9*.a-z]{1,6}[)\]]$")
_SHORT_EQUATION = re.compile(r"^[^\s=<>≤≥≠≈∈]{1,6}(?: ?[=<>≤≥≠≈∈] ?[^\s=<>≤≥≠≈∈]{1,8})+$")  # linear: no backtracking
_FRONT_MATTER = re.compile(r"^(table of )?contents$|^abstract$|^preface$|^introduction$|^overview$", re.I)
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")  # math-extension glyphs (big braces, radicals) of TeX fonts
_DOT_LEADER = re.compile(r"(\.\s?){4,}|…{2,}|\s\d+$")
_TEX_MACRO = re.compile(r"\\[A-Za-z@]{2,}")
_MATH_CHARS = set("=+−×÷∑∏∫∂√≤≥≠≈∞∈∉⊂⊆∪∩→←⇒⇔∀∃πλμσαβγδεθφψωΓΔΘΛΣΦΨΩ")
_FIGURE_GAP_PT = 6.0
_RULE_PT = 3.0  # a drawing thinner than this is a line (a rule or a frame edge)
_FLOWING = ("paragraph", "list", "footnote", "formula")  # labels whose consecutive lines form one block
_MIN_FIGURE_PT = 12.0


_PAGE_NUMBER_SHARE = 0.25  # a bare number as the first/last line within 25% of the edge is a page number


@dataclass
class _Context:
    """Document-wide facts every page's labelling needs."""

    margins: set[str]
    body_size: float
    entries: Sequence[OutlineEntry]
    has_outline: bool
    figures: dict[int, list[Box]]
    running_figures: set[Box]


def parse_layout(
    sha256: str, pages: Sequence[RawPage], outline: Sequence[tuple[int, str, int]], config: LayoutConfig
) -> LayoutDoc:
    """Label every page's content; `outline` is the PDF's (level, title, page) list, possibly empty."""
    entries = [OutlineEntry(level=lvl, title=title, page=page) for lvl, title, page in outline if title]
    merged = {raw.index: merge_line_pieces(raw.lines) for raw in pages}
    figures = {raw.index: figure_boxes(raw, merged[raw.index]) for raw in pages}
    ctx = _Context(_running_margins(pages, merged), _body_font_size(pages), entries, bool(entries), figures,
                   _running_figures(figures, pages))  # fmt: skip
    parsed = []
    for raw in pages:
        if raw.model_boxes is not None:
            blocks = _model_blocks(raw, entries)
        else:
            blocks = _heuristic_blocks(raw, merged[raw.index], ctx)
        num_chars = sum(len(line.text) for line in raw.lines)
        image_only = num_chars < config.image_only_max_chars and bool(raw.image_boxes)
        parsed.append(Page(index=raw.index, width_pt=raw.width_pt, height_pt=raw.height_pt, blocks=blocks,
                           image_only=image_only, num_chars=num_chars))  # fmt: skip
    if not entries:
        _rank_levels(parsed)
    backend = "pymupdf-layout" if any(p.model_boxes is not None for p in pages) else "heuristic"
    return LayoutDoc(sha256=sha256, backend=backend, num_pages=len(parsed), pages=parsed, outline=entries)


def normalise_title(text: str) -> str:
    """Fold case, ligatures (NFKC), punctuation and whitespace, for matching outline titles to lines."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()
    return _PUNCTUATION.sub("", text)


_SPACES = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[^\w ]+")
_DIGITS = re.compile(r"\d+")


# ------------------------------------------------------------------------------------------ line pieces


def merge_line_pieces(lines: Sequence[RawLine]) -> list[RawLine]:
    """Pieces the PDF draws separately on one baseline, close together, become one line ("1.2" + "Scope")."""
    out: list[RawLine] = []
    for line in sorted(lines, key=lambda ln: (round((ln.bbox[1] + ln.bbox[3]) / 2), ln.bbox[0])):
        host = next((i for i in range(len(out) - 1, max(len(out) - 5, -1), -1) if _same_line(out[i], line)), None)
        if host is None:
            out.append(line)
        else:
            out[host] = _join_pieces(out[host], line)
    return sorted(out, key=lambda ln: (round(ln.bbox[1]), ln.bbox[0]))


def _same_line(left: RawLine, right: RawLine) -> bool:
    _, ly0, lx1, ly1 = left.bbox
    rx0, ry0, _, ry1 = right.bbox
    gap = rx0 - lx1  # checked first: most candidates are far apart (this runs ~200 times per page)
    if gap < -1.0 or gap > 2.5 * (left.size if left.size > right.size else right.size):
        return False
    overlap = (ly1 if ly1 < ry1 else ry1) - (ly0 if ly0 > ry0 else ry0)
    return overlap > 0.5 * min(ly1 - ly0, ry1 - ry0)


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
    counts = Counter(_rounded(box) for i, boxes in figures.items() for box in set(boxes)
                     if (box[2] - box[0]) * (box[3] - box[1]) < area[i] / 3)  # fmt: skip
    return {box for box, n in counts.items() if n >= max(3, _REPEAT_SHARE * len(pages))}


def _rounded(box: Box) -> Box:
    return (round(box[0] / 4) * 4.0, round(box[1] / 4) * 4.0, round(box[2] / 4) * 4.0, round(box[3] / 4) * 4.0)


def _body_font_size(pages: Sequence[RawPage]) -> float:
    """The font size that carries the most characters."""
    weights: Counter[float] = Counter()
    for page in pages:
        for line in page.lines:
            weights[round(line.size)] += len(line.text)
    return float(weights.most_common(1)[0][0]) if weights else 10.0


# ------------------------------------------------------------------------------------------ headings


def _outline_titles(entries: Sequence[OutlineEntry], page: int) -> dict[str, int]:
    return {normalise_title(e.title): e.level for e in entries if e.page == page and normalise_title(e.title)}


def _match_outline(text: str, titles: dict[str, int]) -> int | None:
    """Outline level if this line is one of the page's outline titles (number prefixes tolerated)."""
    norm = normalise_title(text)
    if not norm:
        return None
    for title, level in titles.items():
        prefixed = norm.endswith(title) and len(title) >= 4 and len(norm) <= len(title) + 12  # "4.2 " + title
        if norm == title or prefixed or title.endswith(norm) and len(norm) >= 6:
            return level
    return None


def heading_level(line: RawLine, body_size: float, first_page: bool = False) -> int | None:
    """Level of a heading found without an outline: numbered headings by depth, larger fonts by size.

    A line at body size is a heading only when it is numbered and bold; plain body text never is. A table of
    contents line (dot leaders) is not; on the first page (title, authors, addresses) only numbered lines are.
    """
    text = line.text.strip()
    if len(text) == 1 and text.isupper() and line.bold and not line.math:
        return 3  # an index letter
    if len(text) > _MAX_HEADING_CHARS or len(text) < 3 or not any(c.isalpha() for c in text):
        return None
    if first_page and _FRONT_MATTER.match(text) and (line.bold or line.size >= body_size * _HEADING_SIZE_RATIO):
        return 1
    if line.math or _PRIVATE_USE.search(text):  # pieces of a display formula
        return None
    numbered = _NUMBERED.match(text)
    if not numbered and (line.mono or _TEX_MACRO.search(text) or first_page):
        return None
    if text.endswith((".", ",", ";", ":")) and not numbered or _DOT_LEADER.search(text):
        return None
    if not (text[0].isupper() or text[0].isdigit()) or not any(c.isupper() for c in text if c.isalpha()):
        return None
    ratio = line.size / body_size
    if numbered and re.match(r"^\d+\.\s", text) and ratio < _HEADING_SIZE_RATIO:
        return None  # "1. Encoding" in body size is a numbered list item, not a section
    if numbered and (line.bold or ratio >= 1.05) and len(text) < 90:
        return min(numbered.group(1).count(".") + 1, 3)
    if ratio >= 1.6:
        return 1
    if ratio >= _HEADING_SIZE_RATIO and len(text) < 90:
        return 2 if ratio >= 1.3 else 3
    return None


def _toc_page(levels: Sequence[int | None]) -> bool:
    """A page where heading-like lines make up much of the text is a table of contents (or a list of them)."""
    heads = sum(level is not None for level in levels)
    return len(levels) >= 6 and heads >= 6 and heads > 0.35 * len(levels)


def _toc_rows(lines: Sequence[RawLine], page: RawPage) -> set[int]:
    """Rows (rounded centre y, +-2) that end in a bare page number at the right: table-of-contents entries."""
    rows: set[int] = set()
    for line in lines:
        if line.text.strip().isdigit() and line.bbox[0] > page.width_pt * 0.6 and not _in_margin(line, page):
            centre = round((line.bbox[1] + line.bbox[3]) / 2)
            rows.update(range(centre - 2, centre + 3))
    return rows


def _rank_levels(pages: Sequence[Page]) -> None:
    """Unnumbered headings get levels by font size across the document: largest 1, next 2, the rest 3."""
    unnumbered = [b for p in pages for b in p.blocks if b.label == "section" and not _NUMBERED.match(b.text)]
    sizes = sorted({round(b.font_size or 0, 1) for b in unnumbered}, reverse=True)
    numbered_top = any(b.label == "section" and b.level == 1 and _NUMBERED.match(b.text) for p in pages
                       for b in p.blocks)  # fmt: skip
    offset = 1 if numbered_top else 0  # numbered chapters own level 1; unnumbered headings sit below them
    for block in unnumbered:
        block.level = min(sizes.index(round(block.font_size or 0, 1)) + 1 + offset, 3)


# ------------------------------------------------------------------------------------------ figures


def figure_boxes(page: RawPage, lines: Sequence[RawLine]) -> list[Box]:
    """Images and drawings grouped into figures. A group with nothing drawn inside its border (a frame round a
    code box), or one mostly filled with text, is not a figure; nor is a thin rule (too small once grouped)."""
    tables = [t.bbox for t in page.tables]
    candidates = [b for b in page.graphic_boxes if not any(_overlaps(b, t) for t in tables)]
    groups = _group_boxes(list(page.image_boxes) + candidates)
    figures = []
    for box in groups:
        if box[2] - box[0] < _MIN_FIGURE_PT or box[3] - box[1] < _MIN_FIGURE_PT:
            continue
        has_image = any(_overlaps(img, box) for img in page.image_boxes)
        inner = sum(_inside(c, box) and not _on_border(c, box) for c in candidates)
        share = _text_share(box, lines)
        if has_image or inner >= 3 and share < 0.5 or inner >= 1 and share < 0.1:
            figures.append(box)
    return figures


def _on_border(part: Box, box: Box, slack: float = 2.0) -> bool:
    """True when a path is a frame line along an edge of the group's box, or the frame rectangle itself."""
    if part[3] - part[1] < _RULE_PT:
        return abs(part[1] - box[1]) < slack or abs(part[3] - box[3]) < slack
    if part[2] - part[0] < _RULE_PT:
        return abs(part[0] - box[0]) < slack or abs(part[2] - box[2]) < slack
    return all(abs(a - b) < slack for a, b in zip(part, box, strict=True))


def _overlaps(a: Box, b: Box, slack: float = 0.0) -> bool:
    return a[0] - slack <= b[2] and b[0] - slack <= a[2] and a[1] - slack <= b[3] and b[1] - slack <= a[3]


def _group_boxes(boxes: Sequence[Box]) -> list[Box]:
    """Union boxes that touch or lie within `_FIGURE_GAP_PT` of each other, until nothing changes."""
    groups = sorted(boxes, key=lambda b: b[1])
    while True:
        out: list[Box] = []
        for box in groups:
            near = [i for i, other in enumerate(out) if _overlaps(box, other, _FIGURE_GAP_PT)]
            for i in reversed(near):
                box = _union(box, out.pop(i))
            out.append(box)
        if len(out) == len(groups):
            return out
        groups = out


def _text_share(box: Box, lines: Sequence[RawLine]) -> float:
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    inside = [ln.bbox for ln in lines if _inside(ln.bbox, box)]
    return sum((b[2] - b[0]) * (b[3] - b[1]) for b in inside) / area


def _inside(inner: Sequence[float], outer: Sequence[float], slack: float = 2.0) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] - slack <= cx <= outer[2] + slack and outer[1] - slack <= cy <= outer[3] + slack


# ------------------------------------------------------------------------------------------ line labels


def _footnote_top(page: RawPage, lines: Sequence[RawLine], body_size: float) -> float | None:
    """The y of a footnote rule: a short thin line at the left text edge in the lower part of the page, with
    only smaller-than-body lines below it (footer aside), the first of them led by a marker ("1", "*", "†")."""
    if not lines:
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


def _margin_label(line: RawLine, page: RawPage, margins: set[str]) -> str | None:
    margin = _in_margin(line, page)
    if not margin:
        return None
    key = _margin_key(line.text)
    numeric = not key.replace("#", "").strip()
    if _PAGE_NUMBER.match(line.text.strip()) or key in margins and not numeric:
        return margin
    return None


def _page_furniture(lines: Sequence[RawLine], page: RawPage, margins: set[str]) -> dict[int, str]:
    """Header/footer label by line position: repeated margin lines, bare page numbers (also a first or last line
    a little further in), and lines on the same baseline as a page number in the margin band."""
    out = {i: label for i, ln in enumerate(lines) if (label := _margin_label(ln, page, margins))}
    for i in (0, len(lines) - 1) if lines else ():
        line = lines[i]
        centre = (line.bbox[1] + line.bbox[3]) / 2
        near = centre < page.height_pt * _PAGE_NUMBER_SHARE or centre > page.height_pt * (1 - _PAGE_NUMBER_SHARE)
        if near and _PAGE_NUMBER.match(line.text.strip()):
            out[i] = "header" if centre < page.height_pt / 2 else "footer"
    rows = [(lines[i].bbox[1] + lines[i].bbox[3]) / 2 for i in out if _PAGE_NUMBER.match(lines[i].text.strip())]
    for i, line in enumerate(lines):
        centre = (line.bbox[1] + line.bbox[3]) / 2
        if i not in out and _in_margin(line, page) and any(abs(centre - row) < 3 for row in rows):
            out[i] = "header" if centre < page.height_pt / 2 else "footer"
    return out


def _line_label(line: RawLine, titles: dict[str, int], heading: int | None) -> tuple[str, int | None]:
    """Label one body line (headers and footers are found before); the second item is a heading level.
    `heading` is the line's level from `heading_level`, None when it is no heading or headings are off here."""
    level = _match_outline(line.text, titles) if titles else None
    if level is not None:
        return "section", level
    if _CAPTION.match(line.text) and not line.mono:
        return "caption", None
    if heading is not None:
        return "section", heading
    if _LIST_ITEM.match(line.text) and not line.mono:
        return "list", None
    if _is_formula(line):
        return "formula", None
    return "paragraph", None


def _is_formula(line: RawLine) -> bool:
    """Display maths: math fonts or math symbols dominate; never monospace and never TeX source."""
    text = line.text
    if line.mono or _TEX_MACRO.search(text) or len(text) > 160:
        return False
    stripped = text.replace(" ", "")
    if _PRIVATE_USE.search(stripped):  # math-extension glyphs (big braces, radicals)
        return True
    if len(stripped) < 3:
        return False
    if line.math or len(text) <= 60 and _SHORT_EQUATION.match(text):
        return True
    return sum(map(_MATH_CHARS.__contains__, stripped)) / len(stripped) > 0.25


# ------------------------------------------------------------------------------------------ blocks


def _heuristic_blocks(page: RawPage, lines: list[RawLine], ctx: _Context) -> list[Block]:
    titles = _outline_titles(ctx.entries, page.index)
    figures = ctx.figures[page.index]
    blocks: list[Block] = [Block(label="table", bbox=t.bbox, text=t.text, order=0) for t in page.tables]
    taken = [t.bbox for t in page.tables] + figures
    figure_text: dict[Box, list[str]] = {box: [] for box in figures}
    furniture = _page_furniture(lines, page, ctx.margins)
    footnote_top = _footnote_top(page, lines, ctx.body_size)
    levels = [None if ctx.has_outline else heading_level(ln, ctx.body_size, page.index == 1) for ln in lines]
    if _toc_page(levels):
        levels = [None] * len(lines)
    toc_rows = _toc_rows(lines, page)
    current: list[RawLine] = []
    current_label = ""
    last_head: RawLine | None = None
    for i, line in enumerate(lines):
        home = next((box for box in taken if _inside(line.bbox, box)), None)
        if home is not None:
            figure_text.get(home, []).append(line.text)
            continue
        heading = None if round((line.bbox[1] + line.bbox[3]) / 2) in toc_rows else levels[i]
        label, level = (furniture[i], None) if i in furniture else _line_label(line, titles, heading)
        if label in ("section", "paragraph") and last_head and blocks and _heading_continues(last_head, line):
            blocks[-1].bbox, blocks[-1].text = _union(blocks[-1].bbox, line.bbox), f"{blocks[-1].text} {line.text}"
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
        label = "figure" if _rounded(box) not in ctx.running_figures else "header"
        blocks.append(Block(label=label, bbox=box, text=" ".join(figure_text[box]), order=0))  # type: ignore[arg-type]
    _promote_title(page, blocks)
    _follow_captions(blocks)
    return _ordered(_merge_formulas(blocks))


def _follow_captions(blocks: list[Block]) -> None:
    """A float's caption names its kind: a ruled grid captioned "Figure 2" is a figure, and the reverse."""
    captions = [b for b in blocks if b.label == "caption"]
    for block in blocks:
        if block.label not in ("table", "figure"):
            continue
        near = [c for c in captions if _overlaps(c.bbox, block.bbox, 30) and c.bbox[0] < block.bbox[2]]
        kinds = {"figure" if c.text.lower().startswith("fig") else "table" for c in near
                 if c.text.lower().startswith(("fig", "table"))}  # fmt: skip
        if len(kinds) == 1:
            block.label = kinds.pop()  # type: ignore[assignment]


def _merge_formulas(blocks: list[Block]) -> list[Block]:
    """Pieces of one display formula (a fraction's parts, a big operator, the equation number) -> one block."""
    formulas = [b for b in blocks if b.label == "formula"]
    rest = [b for b in blocks if b.label != "formula"]
    merged: list[Block] = []
    for block in sorted(formulas, key=lambda b: b.bbox[1]):
        host = next((b for b in merged if _overlaps(b.bbox, block.bbox, 3)), None)
        if host is None:
            merged.append(block)
        else:
            host.bbox, host.text = _union(host.bbox, block.bbox), f"{host.text} {block.text}"
    kept = []
    for block in rest:
        host = next((f for f in merged if _formula_part(block, f)), None)
        if host is None:
            kept.append(block)
        else:
            host.bbox, host.text = _union(host.bbox, block.bbox), f"{host.text} {block.text}"
    return kept + merged


def _formula_part(block: Block, formula: Block) -> bool:
    """A tiny piece touching a formula (a limit, an exponent), or an equation number on the formula's row."""
    if block.label not in ("paragraph", "list"):
        return False
    text = block.text.strip()
    if len(text) <= 3 and _overlaps(block.bbox, formula.bbox, 3):
        return True
    row = min(block.bbox[3], formula.bbox[3]) - max(block.bbox[1], formula.bbox[1]) > 0
    return row and bool(_EQUATION_NUMBER.match(text))


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _heading_continues(prev: RawLine, line: RawLine) -> bool:
    """The second line of a heading that wraps: same font, just below, not numbered itself."""
    gap = line.bbox[1] - prev.bbox[3]
    same_font = abs(prev.size - line.size) < 0.3 and prev.bold == line.bold
    return same_font and -1 <= gap <= line.size * 0.8 and not _NUMBERED.match(line.text)


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
    return Block(label=label, bbox=bbox, text=text, order=0, font_size=lines[0].size, level=level)  # type: ignore[arg-type]


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


def _model_blocks(page: RawPage, entries: Sequence[OutlineEntry]) -> list[Block]:
    titles = _outline_titles(entries, page.index)
    blocks = []
    for box in page.model_boxes or []:
        label = box.label
        level = _match_outline(box.text, titles) if titles and label in ("paragraph", "title", "section") else None
        if level is not None:
            label = "section"
        blocks.append(Block(label=label, bbox=box.bbox, text=box.text, order=0, level=level))  # type: ignore[arg-type]
    return _ordered(blocks)
