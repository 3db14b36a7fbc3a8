"""The call ledger `llm_calls.sqlite`: every call keyed by its request's content hash, finished calls replayed.

Owns: the SQLite schema and its numbered migrations, `Completion` (one finished call), lookups, records of
finished calls, their outcomes and failed attempts, and the writer shards below. A rerun replays what the ledger
holds and sends none twice. Does not own: the request key (client.py) nor where the ledger lives (the pipeline).

Many writers (client processes, Ray actors on many nodes): SQLite's locking, and WAL's shared-memory index, are
not reliable on NFS/Lustre, so no two processes write one file. A one-process build writes `llm_calls.sqlite`
itself, as always. When calls are spread over processes or actors, each writer opens its own shard,
`llm_calls.shards/<host>-<pid>-<random>.sqlite` (`shard_path`), in WAL mode with an exclusive lock (no shared
memory: one process, one file, safe on a network filesystem). It looks finished calls up in its shard, then,
read-only, in `llm_calls.sqlite` and in every other shard present when it opened (a restarted actor replays what
the dead one paid for; a shard still locked by a live writer is skipped: it holds that writer's calls, not this
one's). When the stage ends, and at the start of the next one in case a crash came first, the driver merges every
shard into `llm_calls.sqlite` (`merge_shards`: INSERT OR IGNORE by key, one transaction per shard, then the shard is
deleted); a shard that cannot be read yet (its writer is alive) is left for the next merge, never lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import StageError
from longdocvqa.core.readback import warn


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


SHARD_DIR = "llm_calls.shards"  # beside the ledger: one file per writer process (module docstring)


def shard_path(ledger: str | Path) -> Path:
    """A new writer shard of the ledger at `ledger`, named so no other process on any node picks the same one."""
    return Path(ledger).parent / SHARD_DIR / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.sqlite"


def shard_paths(ledger: str | Path) -> list[Path]:
    """The writer shards present beside the ledger at `ledger`."""
    return sorted((Path(ledger).parent / SHARD_DIR).glob("*.sqlite"))


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
    """SQLite record of every call, keyed by the request's content hash; finished calls are replayed. Opened on a
    path inside `SHARD_DIR` it is one writer's shard (module docstring)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        shard = path is not None and Path(path).parent.name == SHARD_DIR
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._open(shard)
        except sqlite3.DatabaseError as exc:  # not a database (garbage, cut short): kept aside, a new one started
            if path is None or isinstance(exc, sqlite3.OperationalError):
                raise
            self._db.close()
            _set_aside(Path(path), exc)
            self._open(shard)
        self._replay = _open_read_only(_replay_sources(Path(self.path))) if shard else []

    def _open(self, shard: bool) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60.0, isolation_level=None)
        if shard:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no shared-memory index, NFS-safe
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.schema_version = migrate(self._db, where=self.path)

    def _find(self, sql: str, key: str) -> tuple[Any, ...] | None:
        """The first row `sql` finds for `key`: in this ledger, then in the read-only replay sources."""
        with self._lock:
            row = self._db.execute(sql, (key,)).fetchone()
            for source in () if row is not None else self._replay:
                with contextlib.suppress(sqlite3.Error):  # a source that cannot be read is no replay, not a failure
                    row = source.execute(sql, (key,)).fetchone()
                if row is not None:
                    break
        return row

    def lookup(self, key: str) -> Completion | None:
        """The finished call with this key, if any."""
        row = self._find(
            "SELECT response, finish_reason, prompt_tokens, completion_tokens, latency_s FROM calls WHERE key=?", key
        )
        if row is None:
            return None
        return Completion(key, row[0], row[1] or "", row[2] or 0, row[3] or 0, row[4] or 0.0, replayed=True)

    def request(self, key: str) -> dict[str, Any] | None:
        """The stored request of a finished call (model, template, messages with image hashes, schema, params)."""
        row = self._find("SELECT request FROM calls WHERE key=?", key)
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

    def absorb(self, shard: Path) -> int:
        """Copy a writer shard's calls (INSERT OR IGNORE by key) and failed attempts into this ledger in one
        transaction; returns the number of calls new here. Raises sqlite3.Error if the shard is still locked."""
        probe = sqlite3.connect(str(shard), timeout=1.0, isolation_level=None)
        try:
            migrate(probe, where=str(shard))  # the write lock: fails while its writer lives; same schema as here
        finally:
            probe.close()
        with self._lock:
            self._db.execute("ATTACH DATABASE ? AS shard", (str(shard),))
            try:
                return self._copy_attached()
            finally:
                self._db.execute("DETACH DATABASE shard")

    def _copy_attached(self) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            before = self._db.total_changes
            self._db.execute("INSERT OR IGNORE INTO main.calls SELECT * FROM shard.calls")
            added = self._db.total_changes - before
            self._db.execute("INSERT INTO main.errors SELECT * FROM shard.errors EXCEPT SELECT * FROM main.errors")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return added

    def close(self) -> None:
        with self._lock:
            for db in (self._db, *self._replay):
                db.close()


def _set_aside(path: Path, exc: BaseException) -> None:
    """Move an unreadable ledger (and its WAL files) to `<name>.unreadable-<n>`, never deleting what it may hold."""
    n = 1
    while path.with_name(f"{path.name}.unreadable-{n}").exists():
        n += 1
    aside = path.with_name(f"{path.name}.unreadable-{n}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            Path(f"{path}{suffix}").rename(f"{aside}{suffix}")
    warn(f"{path}: the call ledger is not a readable database ({exc}); kept as {aside.name}, a new ledger is started")


def _replay_sources(shard: Path) -> list[Path]:
    """What a writer shard replays from besides itself: the merged ledger, then every other shard present."""
    ledger = shard.parent.parent / "llm_calls.sqlite"
    return [ledger, *(p for p in shard_paths(ledger) if p != shard)]


def _open_read_only(paths: Sequence[Path]) -> list[sqlite3.Connection]:
    """Read-only connections to the ledgers at `paths` that exist and can be read now (not locked by a writer)."""
    sources = []
    for path in paths:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.2, check_same_thread=False)
        try:
            db.execute("SELECT key FROM calls LIMIT 1").fetchall()
        except sqlite3.Error:
            db.close()
            continue
        sources.append(db)
    return sources


def merge_shards(ledger: str | Path) -> int:
    """Merge every writer shard beside the ledger at `ledger` into it and delete each merged shard; a shard whose
    writer still runs is left for the next merge. Returns the number of calls new to the ledger (0: no shards)."""
    shards = shard_paths(ledger)
    if not shards:
        return 0
    merged, main = 0, Ledger(ledger)
    try:
        for shard in shards:
            try:
                merged += main.absorb(shard)
            except sqlite3.Error:
                continue  # locked by a live writer (or unreadable): kept, merged next time
            for suffix in ("", "-wal", "-shm"):
                Path(f"{shard}{suffix}").unlink(missing_ok=True)
    finally:
        main.close()
    with contextlib.suppress(OSError):
        shards[0].parent.rmdir()  # only if empty
    return merged
