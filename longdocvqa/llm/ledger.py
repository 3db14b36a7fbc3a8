"""The call ledger `llm_calls.sqlite`: every call keyed by its request's content hash, finished calls replayed.

Owns: the SQLite schema and its numbered migrations, `Completion` (one finished call), lookups, records of
finished calls, their outcomes and failed attempts. A rerun replays what the ledger holds and sends none twice.
Does not own: the request key (client.py) nor where the ledger lives (the pipeline).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longdocvqa.errors import StageError


@dataclass
class Completion:
    """One finished chat completion (fresh from the server or replayed from the ledger)."""

    key: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    replayed: bool = False


def m001_calls_errors_meta(db: sqlite3.Connection) -> None:
    """The first schema: finished calls, failed attempts, and a meta table.

    Ledgers written before migrations were numbered have exactly these tables at user_version 0: `IF NOT EXISTS`
    makes this step a no-op for them, so they open and keep working (tests/data/ledger/schema0.sqlite)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS calls ("
        " key TEXT PRIMARY KEY, model TEXT NOT NULL, template TEXT NOT NULL, task TEXT NOT NULL,"
        " request TEXT NOT NULL, response TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER,"
        " completion_tokens INTEGER, latency_s REAL, outcome TEXT NOT NULL, created_at REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS errors ("
        " key TEXT NOT NULL, model TEXT NOT NULL, attempt INTEGER NOT NULL, kind TEXT NOT NULL,"
        " status INTEGER, detail TEXT, latency_s REAL, created_at REAL NOT NULL)"
    )
    db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT OR IGNORE INTO meta VALUES ('version', '1')")


Migration = Callable[[sqlite3.Connection], None]
# Applied in order; migration N brings a ledger from user_version N-1 to N. Append new steps, never edit old ones.
MIGRATIONS: tuple[Migration, ...] = (m001_calls_errors_meta,)


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, where: str = "ledger") -> int:
    """Apply the migrations a ledger lacks, in order, in one transaction; returns its schema version now.

    The version lives in `PRAGMA user_version`; several processes opening one ledger migrate it once (the write lock
    is taken before the version is read). A ledger newer than this code is refused, never misread."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(migrations):
            raise StageError(
                f"{where}: call ledger schema version {version} is newer than this longdocvqa knows "
                f"({len(migrations)}); upgrade longdocvqa or build into another --out"
            )
        for number, step in enumerate(migrations[version:], version + 1):
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return max(version, len(migrations))


class Ledger:
    """SQLite record of every call, keyed by the request's content hash; finished calls are replayed."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.schema_version = migrate(self._db, where=self.path)

    def lookup(self, key: str) -> Completion | None:
        """The finished call with this key, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT response, finish_reason, prompt_tokens, completion_tokens, latency_s FROM calls WHERE key=?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        return Completion(key, row[0], row[1] or "", row[2] or 0, row[3] or 0, row[4] or 0.0, replayed=True)

    def request(self, key: str) -> dict[str, Any] | None:
        """The stored request of a finished call (model, template, messages with image hashes, schema, params)."""
        with self._lock:
            row = self._db.execute("SELECT request FROM calls WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def record(self, completion: Completion, *, model: str, template: str, task: str, request: str) -> None:
        """Store a finished call (committed at once, so an interrupted build loses nothing it paid for)."""
        values = (completion.key, model, template, task, request, completion.text, completion.finish_reason)
        usage = (completion.prompt_tokens, completion.completion_tokens, completion.latency_s)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,'completed',?)",
                (*values, *usage, time.time()),
            )

    def set_outcome(self, key: str, outcome: str) -> None:
        """Record how the reply was judged (ok, invalid_json, schema_violation, a semantic reason...)."""
        with self._lock:
            self._db.execute("UPDATE calls SET outcome=? WHERE key=?", (outcome, key))

    def record_error(self, key: str, model: str, attempt: int, kind: str, status: int | None, detail: str) -> None:
        """Log one failed attempt (never replayed: the next run tries again)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO errors VALUES (?,?,?,?,?,?,NULL,?)",
                (key, model, attempt, kind, status, detail, time.time()),
            )

    def count(self, table: str = "calls") -> int:
        """Number of rows in `calls` or `errors`."""
        if table not in ("calls", "errors"):
            raise ValueError(table)
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
