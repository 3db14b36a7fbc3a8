"""The call ledger's numbered schema migrations: a ledger written before they existed opens, keeps its calls
(replayed without HTTP) and takes new ones; steps run once, in order, all or nothing; a newer ledger is refused."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from llm_fixtures import closing, endpoint, scripted_server  # noqa: F401 - registers the `server` fixture
from openai_server import ScriptedOpenAI

from longdocvqa.core.errors import StageError
from longdocvqa.core.records import QA
from longdocvqa.llm import Ledger, LLMClient
from longdocvqa.llm.ledger import MIGRATIONS, m001_calls_errors_meta, migrate

SCHEMA0 = Path(__file__).resolve().parent / "data" / "ledger" / "schema0.sqlite"
# The call stored in schema0.sqlite (tests/data/ledger/README.md says how it was written).
FIXTURE_MESSAGES = [{"role": "system", "content": "You answer."}, {"role": "user", "content": "What is on Page 3?"}]
FIXTURE_KEY = "6de6c49ca3ce9252ba55a7783d4921a685060afa0daa7238f128b0501f1b629b"


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
def test_a_ledger_from_before_migrations_opens_replays_and_records(server: ScriptedOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "llm_calls.sqlite"
    shutil.copyfile(SCHEMA0, path)
    assert user_version(path) == 0
    ledger = Ledger(path)
    assert ledger.schema_version == len(MIGRATIONS) == user_version(path)
    assert (ledger.count("calls"), ledger.count("errors")) == (1, 1)
    client = LLMClient(endpoint(server, model="ledger-fixture-model"), ledger)

    async def replay_then_ask():
        old = await client.complete(FIXTURE_MESSAGES, template_id="fixture@v1", task="fixture")
        new = await client.ask([{"role": "user", "content": "Page 7: a new question"}], QA, template_id="t@v1",
                               task="extract-single")  # fmt: skip
        return old, new

    old, new = closing(replay_then_ask(), client)
    assert old.key == FIXTURE_KEY and old.replayed and old.text == '{"answer": "a fox"}'
    assert (old.prompt_tokens, old.completion_tokens, old.finish_reason) == (12, 5, "stop")
    assert new.ok and server.requests == 1  # only the new question went over HTTP
    assert ledger.count("calls") == 2
    ledger.close()
    again = Ledger(path)  # reopening migrates nothing and keeps both calls
    assert again.schema_version == len(MIGRATIONS) and again.count("calls") == 2
    assert again.lookup(FIXTURE_KEY) is not None
    again.close()


def test_a_new_ledger_has_the_schema_of_every_migration(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "fresh.sqlite")
    ledger.close()
    db = sqlite3.connect(tmp_path / "fresh.sqlite")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"calls", "errors", "meta"}
    assert db.execute("SELECT value FROM meta WHERE name='version'").fetchone() == ("1",)
    assert int(db.execute("PRAGMA user_version").fetchone()[0]) == len(MIGRATIONS)


def _m002_seen(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO meta VALUES ('m002', 'applied')")  # a second run would violate the primary key


def _m003_index(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX errors_by_key ON errors (key)")


def _m003_broken(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE half_done (x INTEGER)")
    raise RuntimeError("migration 3 failed")


def test_migrations_run_once_in_order_and_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, [m001_calls_errors_meta, _m002_seen]) == 2
    assert migrate(db, [m001_calls_errors_meta, _m002_seen]) == 2  # nothing left to apply: m002 not rerun
    with pytest.raises(RuntimeError, match="migration 3 failed"):
        migrate(db, [m001_calls_errors_meta, _m002_seen, _m003_broken])
    assert int(db.execute("PRAGMA user_version").fetchone()[0]) == 2
    assert db.execute("SELECT name FROM sqlite_master WHERE name='half_done'").fetchone() is None
    assert db.execute("SELECT value FROM meta WHERE name='m002'").fetchone() == ("applied",)
    db.close()


def test_a_ledger_newer_than_the_code_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    migrate(db, [*MIGRATIONS, _m002_seen, _m003_index])
    db.close()
    with pytest.raises(StageError, match=rf"{path}: call ledger schema version {len(MIGRATIONS) + 2} is newer"):
        Ledger(path)
    assert user_version(path) == len(MIGRATIONS) + 2  # refused, not rewritten
