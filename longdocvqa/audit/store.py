"""The verdicts: OUT/audit/verdicts.jsonl, one JSON line per verdict, appended and never rewritten.

Each line is written with one write(2) on an O_APPEND descriptor under an exclusive flock and fsynced before the
call returns, so a reload or a crash loses no verdict that was answered, and two tabs (or two servers) never
interleave their lines. A later verdict on the same QA replaces the earlier one when read; a torn last line (power
loss mid-write) is skipped when read. Does not own: the accuracy figures (report.py).
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import RecipeError

VERDICTS = ("correct", "wrong", "unclear")
FILE_NAME = "verdicts.jsonl"
MAX_NOTE_CHARS = 4000


def verdict_record(qa_id: str, verdict: str, note: str = "", auditor: str | None = None) -> dict[str, Any]:
    """One verdict line as a dict; RecipeError for an unknown verdict."""
    if verdict not in VERDICTS:
        raise RecipeError(f"verdict {verdict!r}: choose one of {', '.join(VERDICTS)}")
    record: dict[str, Any] = {"qa_id": qa_id, "verdict": verdict, "note": note[:MAX_NOTE_CHARS],
                              "time": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    if auditor:
        record["auditor"] = auditor
    return record


def append_verdict(path: Path, record: dict[str, Any]) -> None:
    """Append one line to `path` atomically: lock, O_APPEND, a single write, fsync."""
    data = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, data)
        if written != len(data):  # a short write on a full disk: say so rather than leave half a line unnoticed
            raise OSError(f"{path}: wrote {written} of {len(data)} bytes (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    if created:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_verdicts(path: Path) -> dict[str, dict[str, Any]]:
    """qa_id -> its latest verdict line; unreadable lines (a torn last line) are skipped."""
    latest: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return latest
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("verdict") in VERDICTS and isinstance(record.get("qa_id"), str):
                latest[record["qa_id"]] = record
    return latest
