"""Clean text from PDFs at extraction, and the one normalisation that compares model output with page text.

Pure (standard library only). render.py passes every string MuPDF gives it (text lines, page text, tables,
outline titles, metadata) through `clean`; whole documents go through `dehyphenate_lines` / `dehyphenate_text`;
generate/checks.py compares strings through `comparable`.

- `clean`: unpaired UTF-16 surrogates (MuPDF returns them for glyphs it cannot map; they cannot be written as
  UTF-8) become U+FFFD, paired ones become their character; control characters other than tab and newline become
  a space; typographic ligatures (ﬁ, ﬂ, ﬀ, ﬃ, ﬄ, ﬅ, ﬆ) become their letters. Nothing else changes (no NFKC here:
  it would rewrite superscripts, full-width CJK forms and the like in the stored text).
- End-of-line hyphenation is undone only where safe: "infor-" + "mation" becomes "information" when that word
  occurs elsewhere in the same document; otherwise the hyphen stays ("well-" + "known" -> "well-known").
- `comparable`: NFKC, lower case, hyphenated line breaks joined, words and numbers only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

REPLACEMENT = "\ufffd"
LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "ft",
             "\ufb06": "st"}  # fmt: skip
_LIGATURE_TABLE = str.maketrans(LIGATURES)
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WORD = re.compile(r"[^\W\d_]+")
_TRAILING_HYPHENATED = re.compile(r"([^\W\d_]+)-$")
_LEADING_WORD = re.compile(r"^([^\W\d_]+)(.*)$", re.DOTALL)
_HYPHEN_BREAK = re.compile(r"([^\W\d_]+)-[ \t]*\n[ \t]*([^\W\d_]+)[ \t]*")
_SOFT_HYPHEN_BREAK = re.compile(r"(\w)-\s*\n\s*(\w)")
_MIN_JOINED_CHARS = 4


def clean(text: str) -> str:
    """`text` safe to store and compare: surrogates fixed, control characters spaced, ligatures spelled out."""
    if text.isascii() and text.isprintable():  # most lines: nothing to fix, and two C calls say so
        return text
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if _CONTROL.search(text):
        text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.translate(_LIGATURE_TABLE)


def clean_metadata(value: object) -> str:
    """A metadata field (title, producer) as clean one-line text; None and non-strings become ''."""
    if not isinstance(value, str):
        return ""
    return " ".join(clean(value).split())


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Lower-cased words (letters only) found in `texts`: what counts as attested in a document."""
    found = set(_WORD.findall("\n".join(texts)))  # one scan; a newline never joins two words
    return {w.lower() for w in found}  # lower-cased once per distinct word


def dehyphenate_lines(lines: Sequence[str], words: set[str]) -> list[str]:
    """Consecutive lines with safe end-of-line hyphenation joined: the continuation moves up to the first line.

    A line "… infor-" followed by "mation is …" becomes "… information" and "is …" when "information" is in
    `words`; a line left empty by the move becomes ''. Lines keep their count and order."""
    out = list(lines)
    for i in range(len(out) - 1):
        if not out[i].endswith("-"):  # the common case, without a regex
            continue
        head = _TRAILING_HYPHENATED.search(out[i])
        tail = _LEADING_WORD.match(out[i + 1])
        if head and tail and _attested(head.group(1), tail.group(1), words):
            out[i] = out[i][:-1] + tail.group(1)
            out[i + 1] = tail.group(2).lstrip()
    return out


def dehyphenate_text(text: str, words: set[str]) -> str:
    """Plain page text with safe end-of-line hyphenation joined ("infor-\\nmation is" -> "information\\nis")."""

    def join(match: re.Match[str]) -> str:
        first, second = match.group(1), match.group(2)
        return f"{first}{second}\n" if _attested(first, second, words) else match.group(0)

    return _HYPHEN_BREAK.sub(join, text)


def _attested(first: str, second: str, words: set[str]) -> bool:
    joined = first + second
    return second[:1].islower() and len(joined) >= _MIN_JOINED_CHARS and joined.lower() in words


def comparable(text: str) -> str:
    """Lower-case words and numbers only (clean, NFKC; line-end hyphenation joined; punctuation and spacing
    dropped): how model output and page text are compared."""
    text = unicodedata.normalize("NFKC", clean(text)).lower()
    text = _SOFT_HYPHEN_BREAK.sub(r"\1\2", text)
    return " ".join(re.findall(r"[^\W_]+", text))
