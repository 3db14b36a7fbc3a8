"""The call ledger with many writers: each client process writes its own shard (`llm_calls.shards/`), replays from
the merged ledger and every readable shard, and the driver merges the shards into `llm_calls.sqlite` when the
generate stage ends; shards a crash left behind are replayed and merged on resume, so nothing is paid twice."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)
from openai_server import ScriptedOpenAI
from test_interrupt import _kill_and_check, _start, _wait_for

from longdocvqa.core.recipe import load_recipe
from longdocvqa.llm import Completion, Ledger
from longdocvqa.llm.ledger import SHARD_DIR, merge_shards, shard_path, shard_paths
from longdocvqa.pipeline import build

NAMES = ["R-data.pdf", "etoolbox.pdf", "mathtools.pdf", "latexbug.pdf"]


def _calls(path: Path) -> int:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
    finally:
        db.close()


def _record(ledger: Ledger, key: str) -> None:
    ledger.record(Completion(key, f"reply {key}", "stop", 3, 2, 0.1), model="m", template="t", task="x", request="{}")


def _recipe(write_recipe, pdf_dir: Path, server: ScriptedOpenAI, processes: int) -> Path:
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 30.0,
                "max_retries": 1, "max_concurrency": 2}  # fmt: skip
    return write_recipe(
        [str(pdf_dir / n) for n in NAMES],
        decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text", "processes": processes},
    )


def _parquet(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "dataset").rglob("*.parquet"))}


def test_shards_replay_each_other_once_their_writer_is_gone_and_merge_into_the_ledger(tmp_path: Path) -> None:
    main = tmp_path / "llm_calls.sqlite"
    Ledger(main).close()
    first, second = Ledger(shard_path(main)), Ledger(shard_path(main))
    assert first.path != second.path and len(shard_paths(main)) == 2
    _record(first, "a")
    assert second.lookup("a") is None  # opened while `first` writes: its file is locked, never read half-written
    _record(second, "b")
    first.close()
    third = Ledger(shard_path(main))  # e.g. a Ray actor restarted after `first` died
    hit = third.lookup("a")
    assert hit is not None and hit.replayed and hit.text == "reply a"
    assert third.lookup("b") is None  # `second` is still writing
    assert merge_shards(main) == 1  # `first` only: the live writers' shards wait for the next merge
    assert len(shard_paths(main)) == 2 and _calls(main) == 1
    second.close(), third.close()
    assert merge_shards(main) == 1 and not shard_paths(main) and not (tmp_path / SHARD_DIR).exists()
    fresh = Ledger(shard_path(main))
    assert {k for k in "ab" if fresh.lookup(k)} == {"a", "b"} and fresh.request("b") == {}  # replayed from main
    fresh.close()
    assert merge_shards(main) == 0 and _calls(main) == 2


@pytest.mark.slow
def test_two_client_processes_write_two_shards_merged_into_one_ledger_and_a_rerun_calls_nothing(
    server: ScriptedOpenAI, write_recipe, pdf_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shards_seen: set[str] = set()
    most_at_once = 0

    def watch(_index: int, _body: dict) -> str:
        nonlocal most_at_once
        present = {p.name for p in (out / SHARD_DIR).glob("*.sqlite")}
        shards_seen.update(present)
        most_at_once = max(most_at_once, len(present))
        return "ok"

    server.policy = watch
    recipe = load_recipe(_recipe(write_recipe, pdf_dir, server, processes=2))
    first = build(recipe, out, workers=1)
    sent, dataset = server.requests, _parquet(out)
    # One file per client process, written by that process alone; a plan's top-up round starts two more, after the
    # previous round's two were merged (never more than two at once).
    assert sent > 0 and most_at_once == 2 and len(shards_seen) % 2 == 0
    assert not (out / SHARD_DIR).exists()  # merged when the stage ended
    assert _calls(out / "llm_calls.sqlite") == first["stages"]["generate"]["usage"]["generator"]["sent"] == sent
    shutil.rmtree(out / "stages" / "generate")  # forget the stored stage: every call must come from the ledger
    again = build(recipe, out, workers=1)
    assert server.requests == sent and again["stages"]["generate"]["reused"] == 0
    assert dataset and _parquet(out) == dataset and again["stages"]["generate"]["kept"] > 0


@pytest.mark.slow
def test_shards_a_killed_build_left_behind_are_replayed_and_merged_on_resume(
    server: ScriptedOpenAI, write_recipe, pdf_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    recipe = _recipe(write_recipe, pdf_dir, server, processes=2)
    server.latency_s = 0.3  # slow replies: the kill lands while client processes wait on the endpoint
    proc = _start(recipe, out)
    _wait_for(lambda: len(server.bodies) >= 4, "answered requests")
    _kill_and_check(proc, out)  # before the end of the stage: nothing merged
    server.latency_s = 0.0
    left = shard_paths(out / "llm_calls.sqlite")
    paid = sum(_calls(p) for p in left)
    assert len(left) == 2 and paid > 0 and _calls(out / "llm_calls.sqlite") == 0
    before = server.requests
    build(load_recipe(_recipe(write_recipe, pdf_dir, server, processes=1)), out, workers=1)  # one process resumes
    resumed_calls = server.requests - before
    assert resumed_calls == _calls(out / "llm_calls.sqlite") - paid  # the killed build's calls are not paid again
    assert not (out / SHARD_DIR).exists() and (out / "manifest.json").is_file()
