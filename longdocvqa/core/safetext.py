"""Text from outside (file names, PDF metadata, server replies, model text) made safe to print, store and publish.

`printable` escapes control characters (terminal escape sequences, carriage returns, bidirectional overrides)
so a file name cannot rewrite the console; the CLI prints the result as plain Rich `Text`, never as markup,
so `[/b]` in a path is shown, not parsed. `clean` drops control characters for what is stored (Parquet
metadata: one line); `clean_text` does the same for model text, keeping its newlines and tabs.
`md_cell` and `md_text` make a value safe in the dataset card's markdown: no raw HTML, no `|` breaking a table.
Secrets: `register_secret` (the LLM client, with each API key it reads) makes `mask_secrets`, `printable`, `clean`
and `clean_text` show the key as `sk-...abcd` (its last 4 characters), wherever the text came from.
"""

from __future__ import annotations

import html
import re
import unicodedata

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
# The same for multi-line text: newline and tab stay; zero-width (non-)joiners and marks stay (scripts need them).
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u202a-\u202e\u2066-\u2069\ufeff]")
_SECRETS: set[str] = set()
_MIN_SECRET_CHARS = 8  # shorter values ("none", "EMPTY", "not-needed") are placeholders, and masking them mangles text


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with every control character shown as an escape (`\\x1b`); newlines kept only when asked."""
    value = mask_secrets(str(text))
    if not keep_newlines:
        return _CONTROL.sub(_escape, value)
    return "\n".join(_CONTROL.sub(_escape, line) for line in value.split("\n"))


def clean(text: str | None) -> str | None:
    """`text` without control characters (each run becomes one space), for stored metadata."""
    if text is None:
        return None
    text = mask_secrets(text)
    without = _CONTROL.sub(" ", unicodedata.normalize("NFC", text))
    return re.sub(r" {2,}", " ", without).strip() if without != text else text


def clean_text(text: str) -> str:
    """Model text without control characters (escape sequences, bidi overrides, NUL...); newlines and tabs kept,
    `\\r\\n` becomes `\\n`. Text without any is returned unchanged."""
    text = mask_secrets(text)
    if not _TEXT_CONTROL.search(text):
        return text
    return _TEXT_CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def md_text(text: str) -> str:
    """Free text (a recipe's description, a dataset's name) for the card's markdown: control characters dropped, HTML
    escaped, so it shows as written and never runs as markup."""
    return html.escape(clean_text(text), quote=False)


def md_cell(text: object) -> str:
    """`text` as one markdown table cell: one line, no control characters, HTML escaped (`<img onerror=...>` is
    shown, not run), `|` escaped so it stays one cell, and markdown link syntax defused."""
    value = clean(str(text)) or ""
    return html.escape(value, quote=False).replace("|", "\\|").replace("](", "]\\(")


def register_secret(value: str | None) -> None:
    """Remember a secret (an API key read from the environment) so every text this process cleans masks it."""
    if value and len(value) >= _MIN_SECRET_CHARS:
        _SECRETS.add(value)


def mask(secret: str) -> str:
    """`sk-...abcd`: the key's `sk-` prefix (if it has one) and its last 4 characters, never more."""
    return ("sk-" if secret.startswith("sk-") else "") + "..." + secret[-4:]


def mask_secrets(text: str, secrets: tuple[str, ...] | frozenset[str] = ()) -> str:
    """`text` with every registered secret (and each of `secrets`) masked."""
    for secret in (*_SECRETS, *secrets):
        if secret and len(secret) >= _MIN_SECRET_CHARS and secret in text:
            text = text.replace(secret, mask(secret))
    return text
