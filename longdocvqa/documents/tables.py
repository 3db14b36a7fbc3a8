"""Tables drawn without a grid: rows of text cells aligned in columns (pure: no PDF library here).

PyMuPDF's table finder (documents/render.py) gives ruled tables; `aligned_tables` finds the rest on the lines
layout.py has not placed in a ruled table or figure. Owns: rows, column alignment and what is not a table (two
columns of prose, aligned maths, code listings, numbered lines, logs, margin notes).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from longdocvqa.core.records import RawLine, RawPage
from longdocvqa.documents.figures import Box

_LINE_NUMBER = re.compile(r"^(\d+)[A-Za-z]?$")
_CODE_CELL = re.compile(r"[{}&;$]|\\\\")  # braces, alignment tabs, row ends: a table's source, not a table
_COMMENT = re.compile(r"^(%|#|//|--\s|;)")  # a cell that starts a code comment: a listing, not a table


def aligned_tables(lines: Sequence[RawLine], page: RawPage, body_size: float) -> list[tuple[Box, str]]:
    """Tables drawn without a grid: at least 3 rows of two or more cells (pieces on one baseline far apart, which
    `merge_line_pieces` left apart), close below each other, whose cells start at the same 2+ column positions.
    Not two columns of prose (every cell wide), aligned display maths, code with comments aligned, a log's
    repeated prefix, nor notes in the margin beside the text."""
    rows = _rows(lines)
    if sum(len(row) >= 2 for row in rows) < 3:
        return []  # most pages
    for row in rows:
        if len(row) > 1:
            row.sort(key=_left)  # each row left to right
    text_left = Counter(round(line.bbox[0]) for line in lines).most_common(1)[0][0]
    out: list[tuple[Box, str]] = []
    tops = [row[0].bbox[1] if len(row) == 1 else min(ln.bbox[1] for ln in row) for row in rows]
    bottoms = [row[0].bbox[3] if len(row) == 1 else max(ln.bbox[3] for ln in row) for row in rows]
    start = 0
    while start < len(rows):
        end = start + 1
        while end < len(rows) and tops[end] - bottoms[end - 1] <= body_size * 1.2:  # `_row_gap`
            end += 1
        run = rows[start:end]
        while run and len(run[-1]) < 2:  # a table ends on a row of cells
            run.pop()
        while run and len(run[0]) < 2:
            run.pop(0)
        if _is_table(run, page) and min(row[0].bbox[0] for row in run) > text_left - 12:  # not notes in the margin
            cells = [ln for row in run for ln in row]
            out.append((_union_lines(cells), " ".join(ln.text for ln in cells)))
        start = end
    return out


def _rows(lines: Sequence[RawLine]) -> list[list[RawLine]]:
    """Lines grouped into rows by vertical centre (3 pt), top to bottom (each row in the lines' order)."""
    rows: list[list[RawLine]] = []
    centre = -1e9
    mids = [(line.bbox[1] + line.bbox[3]) / 2 for line in lines]
    for i in sorted(range(len(lines)), key=mids.__getitem__):
        mid = mids[i]
        if rows and mid - centre <= 3:
            rows[-1].append(lines[i])
        else:
            rows.append([lines[i]])
            centre = mid
    return rows


def _left(line: RawLine) -> float:
    return line.bbox[0]


def _is_table(run: Sequence[Sequence[RawLine]], page: RawPage) -> bool:
    multi = [row for row in run if len(row) >= 2]
    if len(multi) < 3 or len(multi) < 0.5 * len(run) or _row_gap(run[0], run[-1]) > 0.5 * page.height_pt:
        return False  # too few rows of cells; or columns over most of the page: an index, not a table
    cells = [ln for row in multi for ln in row]
    if sum(ln.math for ln in cells) > 0.3 * len(cells) or any(_COMMENT.match(ln.text) for ln in cells):
        return False
    wide = sum(all(ln.bbox[2] - ln.bbox[0] > page.width_pt * 0.3 for ln in row) for row in multi)
    if wide >= 0.5 * len(multi):  # two columns of prose
        return False
    if any(_CODE_CELL.search(ln.text) for ln in cells) or _numbered(multi, 0) or _numbered(multi, -1):
        return False  # source code, or numbered lines of a listing or an edition
    if len({row[0].text for row in multi}) < 0.5 * len(multi):
        return False  # one prefix repeated down the rows ("(latexbug) ..."): a log, not a table's first column
    left = min(row[0].bbox[0] for row in multi)
    if sum(abs(row[0].bbox[0] - left) <= 3 for row in multi) < 0.6 * len(multi):
        return False  # a table's first column starts at its left edge
    edges = {(_edge(c, edge), edge) for row in multi for c in row[1:] for edge in (0, 1, 2)}
    return any(_aligned(multi, x, edge) for x, edge in edges)


def _row_gap(above: Sequence[RawLine], below: Sequence[RawLine]) -> float:
    return min(ln.bbox[1] for ln in below) - max(ln.bbox[3] for ln in above)


def _numbered(rows: Sequence[Sequence[RawLine]], cell: int) -> bool:
    """Most rows' first (0) or last (-1) cell is a number, rising down the rows: line numbers."""
    numbers = [int(m.group(1)) for row in rows if (m := _LINE_NUMBER.match(row[cell].text.strip()))]
    rising = sum(b > a for a, b in zip(numbers, numbers[1:], strict=False))
    return len(numbers) >= 0.5 * len(rows) and rising >= 0.8 * (len(numbers) - 1)


def _edge(line: RawLine, edge: int) -> float:
    """Left (0), centre (1) or right (2) x of a line."""
    return line.bbox[0] if edge == 0 else line.bbox[2] if edge == 2 else (line.bbox[0] + line.bbox[2]) / 2


def _aligned(rows: Sequence[Sequence[RawLine]], x: float, edge: int) -> bool:
    """A column: most rows have a cell after their first whose `edge` sits at `x` (3 pt)."""
    return sum(any(abs(_edge(c, edge) - x) <= 3 for c in row[1:]) for row in rows) >= 0.6 * len(rows)


def _union_lines(lines: Sequence[RawLine]) -> Box:
    x0s, y0s, x1s, y1s = zip(*(ln.bbox for ln in lines), strict=True)
    return (min(x0s), min(y0s), max(x1s), max(y1s))
