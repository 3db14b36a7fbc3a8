"""The per-document loop (runner.py) over the local executors: resume skips stored work, a job whose process dies
or overruns is one stored reject, recorded once (rejects, drop counts, progress) and counted against the budget."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import load_recipe
from longdocvqa.core.records import Reject
from longdocvqa.core.store import RunDir, StageOutput
from longdocvqa.runner.executor import Job
from longdocvqa.runner.isolate import Limits
from longdocvqa.runner.local import InProcess, IsolatedProcesses
from longdocvqa.runner.loop import BuildContext, Progress, collect, run_jobs


class _Seen(Progress):
    def __init__(self) -> None:
        self.rejects: list[Reject] = []

    def reject(self, reject: Reject) -> None:
        self.rejects.append(reject)


def _work(root: str, key: str, behaviour: str) -> None:
    if behaviour == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if behaviour == "hang":
        time.sleep(60)
    StageOutput(Path(root), "demo", "fp").write(key, {"key": key, "pid": os.getpid()})


def _context(tmp_path: Path, write_recipe, max_reject_rate: float = 0.9) -> BuildContext:
    recipe = load_recipe(write_recipe([str(tmp_path)], pool={"max_reject_rate": max_reject_rate}))
    return BuildContext(recipe=recipe, run=RunDir(tmp_path / "run"), workers=2, progress=_Seen())


def _jobs(ctx: BuildContext, behaviours: dict[str, str]) -> list[Job]:
    return [Job(key, f"{key}.pdf", (str(ctx.run.root), key, how)) for key, how in behaviours.items()]


def test_failed_jobs_are_one_reject_each_and_a_rerun_does_only_what_is_missing(tmp_path, write_recipe) -> None:
    ctx = _context(tmp_path, write_recipe)
    out = ctx.run.stage("demo", "fp")
    executor = IsolatedProcesses(2, Limits(seconds=5))
    jobs = _jobs(ctx, {"a": "ok", "b": "crash", "c": "hang", "d": "ok"})
    run_jobs(ctx, "demo", out, _work, jobs, executor)
    kept = {job.key: data for job, data in collect(ctx, "demo", out, jobs)}
    assert set(kept) == {"a", "d"} and kept["a"]["pid"] != os.getpid()  # ran in a process of its own
    reasons = {r.item: r.reason for r in ctx.rejects}
    # no memory limit is set, so a SIGSEGV is a crash, never blamed on memory
    assert reasons == {"b.pdf": "worker_crashed", "c.pdf": "timeout"}
    [crash] = [r for r in ctx.rejects if r.item == "b.pdf"]
    assert "SIGSEGV" in crash.detail, crash.detail
    assert ctx.progress.rejects == ctx.rejects  # type: ignore[attr-defined]  # every reject reaches the display
    assert ctx.stats["demo"].dropped == {"timeout": 1, "worker_crashed": 1}

    again = _context(tmp_path, write_recipe)
    run_jobs(again, "demo", out, _work, _jobs(again, {"a": "crash", "b": "crash", "c": "crash", "d": "crash"}))
    stats = again.stats["demo"]
    assert (stats.seen, stats.reused) == (4, 4)  # stored results and stored rejects alike: nothing runs again
    assert {job.key for job, _ in collect(again, "demo", out, jobs)} == {"a", "d"}


def test_over_the_reject_budget_the_stage_stops_naming_the_rejects_file(tmp_path, write_recipe) -> None:
    ctx = _context(tmp_path, write_recipe, max_reject_rate=0.25)
    out = ctx.run.stage("demo", "fp")
    jobs = _jobs(ctx, {"a": "ok", "b": "crash", "c": "crash"})
    run_jobs(ctx, "demo", out, _work, jobs, IsolatedProcesses(1, Limits()))
    with pytest.raises(StageError, match=r"demo: 2 of 3 inputs rejected .*rejects.jsonl"):
        list(collect(ctx, "demo", out, jobs))
    assert len(ctx.run.rejects_path.read_text().splitlines()) == 2


def test_in_process_executor_runs_jobs_in_order_in_this_process(tmp_path, write_recipe) -> None:
    ctx = _context(tmp_path, write_recipe)
    out = ctx.run.stage("demo", "fp")
    jobs = _jobs(ctx, {"x": "ok", "y": "ok"})
    assert [job.key for job, failure in InProcess().map(_work, jobs) if failure is None] == ["x", "y"]
    assert all(out.read(key)["ok"]["pid"] == os.getpid() for key in ("x", "y"))
