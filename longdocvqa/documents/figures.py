"""Figures: a page's images and drawings grouped into figure boxes, and the box geometry the layout rules share.

A group of images and non-rule drawings within a few points of each other is one figure, unless it is a thin rule,
a frame round a code box (nothing drawn inside its border), a box mostly filled with text, or a small drawing
inside a text line; drawings inside a
ruled table belong to the table. Used by layout.py (the heuristic backend), which takes the figures' text out of
the flowing lines and labels a figure repeated on many pages (a slide deck's logo) as a header.
Does not own: reading images and drawings from the PDF (render.py) or labelling (layout.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from longdocvqa.core.records import RawLine, RawPage

Box = tuple[float, float, float, float]
_FIGURE_GAP_PT = 6.0
_RULE_PT = 3.0  # a drawing thinner than this is a line (a rule or a frame edge)
_MIN_FIGURE_PT = 12.0
_CENTRE_SLACK_PT = 2.0  # how far outside a box a part's centre may lie and still be within it


def figure_boxes(page: RawPage, lines: Sequence[RawLine]) -> list[Box]:
    """Images and drawings grouped into figures. A group with nothing drawn inside its border (a frame round a
    code box), or one mostly filled with text, is not a figure; nor is a thin rule (too small once grouped)."""
    tables = [t.bbox for t in page.tables]
    candidates = [b for b in page.graphic_boxes if not any(overlaps(b, t) for t in tables)]
    groups = _group_boxes(list(page.image_boxes) + candidates)
    figures = []
    for box in groups:
        if box[2] - box[0] < _MIN_FIGURE_PT or box[3] - box[1] < _MIN_FIGURE_PT or _inline(box, lines):
            continue
        has_image = any(overlaps(img, box) for img in page.image_boxes)
        inner = sum(not _on_border(c, box) for c in _inside(candidates, box))
        share = _text_share(box, lines)
        if has_image or inner >= 3 and share < 0.5 or inner >= 1 and share < 0.1:
            figures.append(box)
    return figures


def _inline(box: Box, lines: Sequence[RawLine]) -> bool:
    """A drawing no taller than two lines of text, on the row of a text line and touching it (a circle round a
    letter, a boxed key): part of the text, not a figure."""
    cy = (box[1] + box[3]) / 2
    for line in lines:
        height = line.bbox[3] - line.bbox[1]
        if line.bbox[1] <= cy <= line.bbox[3] and box[3] - box[1] <= 2.2 * height and box[2] - box[0] <= 4 * height:
            if line.bbox[0] - height <= box[0] and box[2] <= line.bbox[2] + 3 * height:
                return True
    return False


def _on_border(part: Box, box: Box, slack: float = 2.0) -> bool:
    """True when a path is a frame line along an edge of the group's box, or the frame rectangle itself."""
    if part[3] - part[1] < _RULE_PT:
        return abs(part[1] - box[1]) < slack or abs(part[3] - box[3]) < slack
    if part[2] - part[0] < _RULE_PT:
        return abs(part[0] - box[0]) < slack or abs(part[2] - box[2]) < slack
    return all(abs(a - b) < slack for a, b in zip(part, box, strict=True))


def overlaps(a: Box, b: Box, slack: float = 0.0) -> bool:
    return a[0] - slack <= b[2] and b[0] - slack <= a[2] and a[1] - slack <= b[3] and b[1] - slack <= a[3]


def _inside(parts: Sequence[Box], box: Box, slack: float = _CENTRE_SLACK_PT) -> list[Box]:
    """The parts whose centre lies within `box` (`within`, over a list)."""
    x0, y0, x1, y1 = box[0] - slack, box[1] - slack, box[2] + slack, box[3] + slack
    return [p for p in parts if x0 <= (p[0] + p[2]) / 2 <= x1 and y0 <= (p[1] + p[3]) / 2 <= y1]


def _group_boxes(boxes: Sequence[Box]) -> list[Box]:
    """Union boxes that touch or lie within `_FIGURE_GAP_PT` of each other, until nothing changes."""
    groups = sorted(boxes, key=lambda b: b[1])
    gap = _FIGURE_GAP_PT
    while True:
        out: list[Box] = []
        for box in groups:
            x0, y0, x1, y1 = box  # `overlaps(box, other, gap)`, inlined: this is quadratic in the page's paths
            near = [i for i, (a0, b0, a1, b1) in enumerate(out)
                    if x0 - gap <= a1 and a0 - gap <= x1 and y0 - gap <= b1 and b0 - gap <= y1]  # fmt: skip
            for i in reversed(near):
                box = union(box, out.pop(i))
            out.append(box)
        if len(out) == len(groups):
            return out
        groups = out


def _text_share(box: Box, lines: Sequence[RawLine]) -> float:
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    inside = [ln.bbox for ln in lines if within(ln.bbox, box)]
    return sum((b[2] - b[0]) * (b[3] - b[1]) for b in inside) / area


def within(inner: Sequence[float], outer: Sequence[float], slack: float = _CENTRE_SLACK_PT) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] - slack <= cx <= outer[2] + slack and outer[1] - slack <= cy <= outer[3] + slack


def rounded(box: Box) -> Box:
    return (round(box[0] / 4) * 4.0, round(box[1] / 4) * 4.0, round(box[2] / 4) * 4.0, round(box[3] / 4) * 4.0)


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
