"""Headings: which lines are section titles, at which level (the heuristic backend's heading rules).

With a PDF outline, a line that matches one of its page's outline titles is a section at the outline's level;
without one, numbered lines (by depth) and larger-than-body lines (by size) are headings, never plain body-size
text, nor a table of contents. Unnumbered headings get their levels from font size across the document.
Used by layout.py, which labels every line; `normalise_title` also by layout_eval.py to match titles.
Does not own: the other labels (layout.py) or the outline itself (render.py reads it from the PDF).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from longdocvqa.core.records import OutlineEntry, Page, RawLine

_HEADING_SIZE_RATIO = 1.15
_MAX_HEADING_CHARS = 120
_NUMBERED = re.compile(
    r"^(?:(?:chapter|appendix|part|section)\s+)?([0-9]{1,2}(?:\.[0-9]{1,3}){0,3}|[A-Z](?:\.[0-9]{1,2}){1,3}|[IVX]{1,5})"
    r"\.?\s+\S"
)
_FRONT_MATTER = re.compile(r"^(table of )?contents$|^abstract$|^preface$|^introduction$|^overview$", re.I)
# Shared with layout.py's formula rules: math-extension glyphs (big braces, radicals) of TeX fonts, and TeX source.
PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_DOT_LEADER = re.compile(r"(\.\s?){4,}|…{2,}|\s\d+$")
TEX_MACRO = re.compile(r"\\[A-Za-z@]{2,}")
PROSE_WORD = re.compile(r"[^\W\d_]{4,}")  # shared with layout.py: a word, where maths has one-letter symbols
_SPACES = re.compile(r"\s+")
_CODE = re.compile(r"\\[A-Za-z@]|[{}$=;]")  # a macro or code punctuation in a line
_CODE_START = re.compile(r"[%#{}<>/;=]")  # what a line of code starts with, a title never
_LETTERS = re.compile(r"[^\W\d_]{2,}")
_SENTENCE_BREAK = re.compile(r"[a-z]{3}\.\s+[A-Z]|\s[0-9]+\.\s+[A-Z][a-z]+\s")  # "... possible. In", "... 10. This "
_DATE = re.compile(r"^[0-9]{1,2}\.?\s+[^\W\d_]{3,}\.?,?\s+(?:1[5-9]|20)[0-9]{2}\b")  # "30 December 2018": a day
_SPACED_LETTERS = re.compile(r"^[^\W_](?:\s+[^\W_])+$")  # "M F": two index columns' letters on one baseline, or glyphs
_INDEX_LETTERS = re.compile(r"^[A-Z](?:\s+[A-Z])*$")  # "C", "M F"
_PUNCTUATION = re.compile(r"[^\w ]+")
_ASCII_PUNCTUATION = {c: None for c in range(128) if not (chr(c).isalnum() or chr(c) in "_ ")}  # _PUNCTUATION's


def normalise_title(text: str) -> str:
    """Fold case, ligatures (NFKC), punctuation and whitespace, for matching outline titles to lines."""
    if text.isascii():  # most lines: NFKC changes nothing, and the regexes come down to str methods
        return " ".join(text.split()).lower().translate(_ASCII_PUNCTUATION)
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()
    return _PUNCTUATION.sub("", text)


def outline_titles(entries: Sequence[OutlineEntry]) -> dict[int, dict[str, int]]:
    """{page: {normalised title: level}} of the outline entries, by the page they point at (a later entry with the
    same title on a page gives the level)."""
    out: dict[int, dict[str, int]] = {}
    for entry in entries:
        if title := normalise_title(entry.title):
            out.setdefault(entry.page, {})[title] = entry.level
    return out


def match_outline(text: str, titles: dict[str, int]) -> int | None:
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
    if _SPACED_LETTERS.match(text):
        return None  # "M F", "N P": letters side by side (index columns, a music or symbol font), no title
    if len(text) > _MAX_HEADING_CHARS or len(text) < 3 or not any(c.isalpha() for c in text):
        return None
    if first_page and _FRONT_MATTER.match(text) and (line.bold or line.size >= body_size * _HEADING_SIZE_RATIO):
        return 1
    # Pieces of a display formula (a word of four letters is text, whatever its font: some documents set all in a
    # math font). Each regex runs only where what it looks for can be there (here and below).
    if line.math and not PROSE_WORD.search(text) or not text.isascii() and PRIVATE_USE.search(text):
        return None
    numbered = None if _DATE.match(text) else _NUMBERED.match(text)
    if not numbered and (line.mono or "\\" in text and TEX_MACRO.search(text) or first_page or _is_prose(text)):
        return None
    if numbered and line.mono and numbered.group(1).isdigit() and _CODE.search(text):
        return None  # "24 \DeclareOption{...}": a numbered line of a code listing
    if numbered and _is_prose(text[numbered.end() - 1 :]):
        return None  # "4 and 10. This style is ...": a wrapped sentence that starts with a number
    if numbered and _CODE_START.match(text[numbered.end() - 1 :]):
        return None  # "13 % <!COPYRIGHT>": a numbered comment line of a listing, in any font
    if text.endswith((",", ";")) or text.endswith((".", ":")) and not numbered or _DOT_LEADER.search(text):
        return None  # a title may end in a full stop ("1.4 Fl2 field for small primes l."), never in a comma
    ratio = line.size / body_size
    large = ratio >= 1.3 and len(text) < 60 and _has_word(text) and (line.bold or " " not in text)
    # "fontspec-code-load.dtx" or a bold "l3draw-state implementation" as a title; several large, plain lower-case
    # words ("long vector long vector", "violet Some beautiful flowers") are typeset examples
    if not (text[0].isupper() or text[0].isdigit() or large) or _lower_case_prose(text, numbered, large):
        return None
    if numbered and re.match(r"^\d+\.\s", text) and ratio < 1.3:
        return None  # "1. Encoding" under 1.3x body size: an enumerated item (an exercise, a FAQ question)
    if numbered and (line.bold or ratio >= 1.05) and len(text) < 90:
        return min(numbered.group(1).count(".") + 1, 3)
    if ratio >= 1.6:
        return 1
    if ratio >= _HEADING_SIZE_RATIO and len(text) < 90:
        return 2 if ratio >= 1.3 else 3
    if line.bold and ratio >= 1.0 and len(text) < 60 and not line.mono:
        return 3
    return None


def _lower_case_prose(text: str, numbered: re.Match[str] | None, large: bool) -> bool:
    """No capital letter at all: prose, unless numbered with a word after the number ("4.1 draw") or set much
    larger than the body (a file name as a part title)."""
    if any(c.isupper() for c in text if c.isalpha()):
        return False
    return not (numbered and _has_word(text[numbered.end() - 1 :]) or large)


def _has_word(text: str) -> bool:
    """A run of two or more letters that is not one letter repeated (music and symbol fonts give "hhh")."""
    return any(len(set(word.lower())) > 1 for word in _LETTERS.findall(text))


def _is_prose(text: str) -> bool:
    """Two sentences in one line ("... as possible. In"): prose, unless a question title ("... bottoms. Why?")."""
    return bool(_SENTENCE_BREAK.search(text)) and not text.rstrip('”"').endswith("?")


def is_toc_page(levels: Sequence[int | None]) -> bool:
    """A page where heading-like lines make up much of the text is a table of contents (or a list of them)."""
    heads = sum(level is not None for level in levels)
    return len(levels) >= 6 and heads >= 6 and heads > 0.35 * len(levels)


def rank_levels(pages: Sequence[Page]) -> None:
    """Unnumbered headings get levels by font size across the document: largest 1, next 2, the rest 3 (an index
    letter stays at 3)."""
    unnumbered = [b for p in pages for b in p.blocks
                  if b.label == "section" and not _NUMBERED.match(b.text) and not index_letter(b.text)]  # fmt: skip
    sizes = sorted({round(b.font_size or 0, 1) for b in unnumbered}, reverse=True)
    numbered_top = any(b.label == "section" and b.level == 1 and _NUMBERED.match(b.text) for p in pages
                       for b in p.blocks)  # fmt: skip
    offset = 1 if numbered_top else 0  # numbered chapters own level 1; unnumbered headings sit below them
    for block in unnumbered:
        block.level = min(sizes.index(round(block.font_size or 0, 1)) + 1 + offset, 3)


def index_letter(text: str) -> bool:
    """An index's letter ("C"; "M F" when the letters of two index columns make one block): it keeps level 3 from
    `heading_level`, whatever its size ranks."""
    return bool(_INDEX_LETTERS.match(text.strip()))


def heading_continues(prev: RawLine, line: RawLine) -> bool:
    """The second line of a heading that wraps: same font, just below, not numbered itself."""
    gap = line.bbox[1] - prev.bbox[3]
    same_font = abs(prev.size - line.size) < 0.3 and prev.bold == line.bold
    return same_font and -1 <= gap <= line.size * 0.8 and not _NUMBERED.match(line.text)
