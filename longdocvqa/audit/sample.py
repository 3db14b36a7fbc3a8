"""What is audited: the published QA rows of a run, and a seeded, task-stratified sample of them.

Each task's rows are shuffled once by the seed and the sample takes a prefix of that order, so a larger sample with
the same seed extends a smaller one (verdicts already given stay in it). Does not own: the verdicts (store.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import RecipeError

DEFAULT_SAMPLE = 100


@dataclass(frozen=True)
class Run:
    """A run directory and its published dataset."""

    root: Path

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"


@dataclass
class Sample:
    """The drawn rows, in audit order, and how they were drawn."""

    rows: list[dict[str, Any]]
    seed: int
    size: int
    population: int
    tasks: list[str] = field(default_factory=list)
    strata: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """How the sample was drawn (written to OUT/audit/sample.json; the report and the card quote it)."""
        return {"seed": self.seed, "size": len(self.rows), "requested": self.size, "population": self.population,
                "tasks": self.tasks, "strata": self.strata, "qa_ids": [r["id"] for r in self.rows],
                "drawn_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


def find_run(path: Path) -> Run:
    """The run of `path` (a run directory or its dataset/ folder); RecipeError when it holds no published QA."""
    path = Path(path)
    root = path.parent if (path / "data" / "qa").is_dir() else path
    run = Run(root)
    if not qa_files(run):
        raise RecipeError(f"{path}: no published QA (dataset/data/qa/*.parquet); is this a built run directory?")
    return run


def qa_files(run: Run) -> list[Path]:
    return sorted((run.dataset / "data" / "qa").glob("*.parquet"))


def read_qa(run: Run) -> list[dict[str, Any]]:
    """Every published QA row (all splits), judge and verification columns included when the build wrote them."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in qa_files(run):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def read_documents(run: Run) -> dict[str, dict[str, Any]]:
    """sha256 -> the documents row (file name, title, page count, page sizes)."""
    import pyarrow.parquet as pq

    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((run.dataset / "data" / "documents").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            docs[row["sha256"]] = row
    return docs


def draw(rows: list[dict[str, Any]], size: int, seed: int, tasks: list[str] | None = None) -> Sample:
    """A sample of `size` rows, stratified by task (each task's share of the population, largest remainder), in an
    order that mixes the tasks; `tasks` restricts the population."""
    if size < 1:
        raise RecipeError(f"--sample {size}: give at least 1")
    by_task = _by_task(rows, tasks)
    population = sum(len(group) for group in by_task.values())
    quota = allocate({task: len(group) for task, group in by_task.items()}, size)
    rng = random.Random(seed)
    chosen: list[dict[str, Any]] = []
    for task in sorted(by_task):
        group = sorted(by_task[task], key=lambda row: row["id"])
        random.Random(f"{seed}/{task}").shuffle(group)
        chosen.extend(group[: quota[task]])
    rng.shuffle(chosen)
    return Sample(chosen, seed, size, population, sorted(by_task), {t: q for t, q in quota.items() if q})


def _by_task(rows: list[dict[str, Any]], tasks: list[str] | None) -> dict[str, list[dict[str, Any]]]:
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if not tasks or row["task"] in tasks:
            by_task.setdefault(row["task"], []).append(row)
    if not by_task:
        known = ", ".join(sorted({row["task"] for row in rows})) or "none"
        raise RecipeError(f"--task {', '.join(tasks or [])}: no published QA of that task (tasks: {known})")
    return by_task


def allocate(counts: dict[str, int], size: int) -> dict[str, int]:
    """Per-task quotas summing to min(size, population), proportional to `counts` (largest remainder)."""
    total = sum(counts.values())
    size = min(size, total)
    exact = {task: size * n / total for task, n in counts.items()}
    quota = {task: int(share) for task, share in exact.items()}
    by_remainder = sorted(counts, key=lambda t: (-(exact[t] - quota[t]), t))
    for task in by_remainder[: size - sum(quota.values())]:
        quota[task] += 1
    return quota
