"""Trust nothing read back: a stored stage record that does not parse, or does not match its key, is discarded.

A stage record is `{"key": KEY, "ok": payload}` or `{"key": KEY, "reject": {...}}` (records written before the key
was stored have none). It is unsound when it is not JSON (a file cut short), has neither or both of "ok" and
"reject", names another key, or holds a document sha256 other than its key (a record copied onto another
document's path). An unsound record is removed with one warning line on stderr, never a traceback, so the stage
computes it again.
Does not own: where records live (store.StageOutput) or what is in a payload (the stages).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

_SHA_FIELDS = ("sha256", "doc_sha256")
_SHA256_HEX = 64
log = logging.getLogger("longdocvqa")


def warn(message: str) -> None:
    """One warning line on stderr (Python's last-resort handler prints it as is)."""
    log.warning("warning: %s", " ".join(message.split()))


def checked_record(path: Path, key: str) -> dict[str, Any] | None:
    """The record at `path` for `key`, or None (the file is removed, with a warning) when it is unsound."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problem: str | None = f"does not parse ({type(exc).__name__})"
    else:
        problem = _problem(data, key)
    if problem is None:
        return data  # type: ignore[no-any-return]
    _discard(path, problem)
    return None


def _problem(data: Any, key: str) -> str | None:
    if not isinstance(data, dict) or ("ok" in data) == ("reject" in data):
        return "is not a stage record"
    if "key" in data and data["key"] != key:
        return f"belongs to {str(data['key'])[:16]}, not {key[:16]}"
    if len(key) == _SHA256_HEX and "ok" in data:
        other = next((sha for sha in _shas(data["ok"]) if sha != key), None)
        if other is not None:
            return f"holds document {other[:16]}, not {key[:16]}"
    return None


def _shas(payload: Any, depth: int = 2) -> list[str]:
    """The document sha256 fields of a payload, its items and its `records` (the stage payloads' shapes)."""
    if isinstance(payload, dict):
        found = [str(payload[f]) for f in _SHA_FIELDS if isinstance(payload.get(f), str)]
        if depth and isinstance(payload.get("records"), list):
            found += _shas(payload["records"], depth - 1)
        return found
    if isinstance(payload, list) and depth:
        return [sha for item in payload for sha in _shas(item, depth - 1)]
    return []


def _discard(path: Path, problem: str) -> None:
    warn(f"{path}: stored output {problem}; discarded, it is computed again")
    path.unlink(missing_ok=True)


def image_whole(path: Path) -> bool:
    """Whether a cached page image is there and whole (a JPEG ends with its EOI marker, a PNG with its IEND chunk, a
    WebP is as long as its RIFF header says); one cut short is removed with a warning, so it is rendered again."""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
            size = handle.seek(0, 2)
            handle.seek(max(0, size - 12))
            tail = handle.read()
    except FileNotFoundError:
        return False
    except OSError as exc:
        tail, head, size = b"", str(exc).encode(), -1
    if _ends_whole(head, tail, size):
        return True
    _discard(path, "is cut short or not an image")
    return False


def _ends_whole(head: bytes, tail: bytes, size: int) -> bool:
    if head.startswith(b"\xff\xd8"):
        return tail.endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG"):
        return tail[4:8] == b"IEND"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return int.from_bytes(head[4:8], "little") + 8 <= size
    return False
