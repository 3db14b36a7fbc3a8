"""Display formulas: which lines are maths, a framed formula, and the pieces of a formula set apart (pure).

Owns: the formula rules of the heuristic backend (layout.py labels a line `formula` when `is_formula` says so).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from longdocvqa.core.records import Block, RawLine
from longdocvqa.documents.figures import Box, overlaps, within
from longdocvqa.documents.headings import PROSE_WORD, TEX_MACRO

_EQUATION_NUMBER = re.compile(r"^[(\[][0-9*.a-z]{1,6}[)\]]$")
_SHORT_EQUATION = re.compile(r"^[^\s=<>≤≥≠≈∈]{1,6}(?: ?[=<>≤≥≠≈∈] ?[^\s=<>≤≥≠≈∈]{1,8})+$")  # linear: no backtracking
_MATH_CHARS = re.compile("[=+−×÷∑∏∫∂√≤≥≠≈∞∈∉⊂⊆∪∩→←⇒⇔∀∃πλμσαβγδεθφψωΓΔΘΛΣΦΨΩ]")
# Private-use glyphs but Adobe's old-style figures (U+F730-F739: a number, not maths).
_PRIVATE_NOT_DIGIT = re.compile("[\ue000-\uf72f\uf73a-\uf8ff]")
_BULLETS = set("•·∙◦⋆∗")  # marks of a list or a dot diagram, also set in math fonts
_LEADER = re.compile(r"(\. ?){6,}")
_RELATION = re.compile("[=<>≤≥≠≈∈⇐⇒⇔]")
_WORD = re.compile(r"[^\W\d_]{3,}")  # three letters in a row: a word, where an equation has one-letter variables


def is_formula(line: RawLine) -> bool:
    """Display maths: math fonts or math symbols dominate; never monospace and never TeX source."""
    text = line.text
    # Each regex runs only where what it looks for can be there (a backslash, two dots, a non-ASCII character).
    macro = "\\" in text and TEX_MACRO.search(text)
    if line.mono or len(text) > 160 or macro or (".." in text or ". ." in text) and _LEADER.search(text):
        return False  # code, TeX source, or a contents/index entry (its dot leader is often set in a math font)
    stripped = text.replace(" ", "")
    plain = stripped.isascii()  # most lines: no private-use glyph, and "=<>" are the only relations
    if not plain and _PRIVATE_NOT_DIGIT.search(stripped):  # math-extension glyphs (big braces, radicals)
        return True
    if len(stripped) < 3:  # a lone bracket or operator glyph of a display is maths; a lone letter or digit is not
        return line.math and not stripped.isalnum() and not _BULLETS.issuperset(stripped)
    if line.math and len(PROSE_WORD.findall(text)) < 2:  # two words: text set in a math font
        return True
    if plain and "=" not in text and "<" not in text and ">" not in text:  # no relation: no equation
        return stripped.count("+") / len(stripped) > 0.25  # "+" is the only other math character in ASCII
    if len(text) <= 60 and _SHORT_EQUATION.match(text) or _RELATION.search(text) and not _WORD.search(text):
        return True
    return len(_MATH_CHARS.findall(stripped)) / len(stripped) > 0.25


def boxed_formula(box: Box, lines: Sequence[RawLine]) -> bool:
    """A drawing whose text is mostly display maths is a formula with a frame or arrows drawn round it."""
    inside = [line for line in lines if within(line.bbox, box)]
    if not inside or any(line.mono or TEX_MACRO.search(line.text) for line in inside):
        return False
    text = " ".join(line.text for line in inside)  # a tableau's cells, each a line, and the = between them
    return sum(map(is_formula, inside)) >= 0.5 * len(inside) or bool(_RELATION.search(text)) and not _WORD.search(text)


def merge_formulas(blocks: list[Block]) -> list[Block]:
    """Pieces of a display formula (a limit, an exponent, the equation number) that came out as text are formula
    pieces too. Each piece stays its own block, as the hand-labelled truth draws them: one box round a formula and
    its number would span the empty gap between them."""
    formulas = [b for b in blocks if b.label == "formula"]
    if formulas:
        for block in blocks:
            if block.label in ("paragraph", "list") and (
                len(block.text.strip()) <= 3 or block.text.lstrip()[:1] in "(["
            ):
                if any(_formula_part(block, f) for f in formulas):
                    block.label = "formula"
    return blocks


def _formula_part(block: Block, formula: Block) -> bool:
    """A tiny piece touching a formula (a limit, an exponent), or an equation number on the formula's row."""
    if block.label not in ("paragraph", "list"):
        return False
    text = block.text.strip()
    if len(text) <= 3 and overlaps(block.bbox, formula.bbox, 3):
        return True
    row = min(block.bbox[3], formula.bbox[3]) - max(block.bbox[1], formula.bbox[1]) > 0
    return row and all(_EQUATION_NUMBER.match(part) for part in text.split())
