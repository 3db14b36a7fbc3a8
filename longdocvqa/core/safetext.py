"""Text from outside (file names, PDF metadata, server replies) made safe to print and to store.

`printable` escapes control characters (terminal escape sequences, carriage returns, bidirectional overrides)
so a file name cannot rewrite the console; the CLI prints the result as plain Rich `Text`, never as markup,
so `[/b]` in a path is shown, not parsed. `clean` drops control characters for what is stored (Parquet).
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with every control character shown as an escape (`\\x1b`); newlines kept only when asked."""
    value = str(text)
    if not keep_newlines:
        return _CONTROL.sub(_escape, value)
    return "\n".join(_CONTROL.sub(_escape, line) for line in value.split("\n"))


def clean(text: str | None) -> str | None:
    """`text` without control characters (each run becomes one space), for stored metadata."""
    if text is None:
        return None
    without = _CONTROL.sub(" ", unicodedata.normalize("NFC", text))
    return re.sub(r" {2,}", " ", without).strip() if without != text else text
