"""`longdocvqa build`: build (or resume) a dataset, or with --dry-run print its plan.

Owns: the build command's flags, where the build runs (--executor), its progress bars and reject lines, the plan
tables of --dry-run, and what Ctrl-C prints. Does not own: the run lock and the recipe's file checks (pipeline.build
holds both for the whole build), the stages, or the summary table (output.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from longdocvqa.cli.output import console, fail, plain, summary
from longdocvqa.core import bundled
from longdocvqa.core.errors import LongDocVQAError, RecipeError
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.store import RunDir
from longdocvqa.pipeline import build as run_build
from longdocvqa.pipeline import check_recipe_files, plan_with_units
from longdocvqa.runner.loop import Progress
from longdocvqa.runner.ray import ray_executor

_SAMPLED_OUT = {"budget", "mixture"}


def build(
    recipe: Annotated[
        str,
        typer.Argument(
            help="Recipe YAML describing the dataset version, or the name of a bundled recipe (longdocvqa recipe "
            "list); a file of that name wins.",
        ),
    ],
    out: Annotated[Path | None, typer.Option("--out", help="Run directory; default runs/<name>-<version>.")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel worker processes; default: all cores.")] = None,
    limit: Annotated[int | None, typer.Option(help="Process at most N pool documents (for a quick look).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (documents, examples, tokens).")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Reuse finished work (default); --no-resume recomputes every "
            "stage but still replays model calls from the ledger, so nothing is paid twice.",
        ),
    ] = True,
    executor: Annotated[
        str,
        typer.Option(
            help="Where per-document work runs: 'local' (this machine's processes) or 'ray' (a Ray cluster; needs "
            "the package's 'ray' extra). Changes how the build runs, never what it produces.",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to join (e.g. ray://head:10001 or auto); default: $RAY_ADDRESS, else a local Ray "
            "with --workers CPUs. On a cluster, OUT and the pool must be on a folder every node mounts.",
        ),
    ] = None,
    ray_cpus_per_task: Annotated[
        float, typer.Option(help="CPUs each per-document Ray task reserves (pool, layout).")
    ] = 1.0,
) -> None:
    """Build (or resume) a dataset: rerunning the same command reuses all finished work."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bars

    out_dir: Path | None = None
    try:
        _check_executor(executor)
        loaded = bundled.load(recipe)
        out_dir = run_folder(loaded, out, absolute=executor == "ray")
        if dry_run:
            check_recipe_files(loaded)  # prompts and exemplars: a recipe error is exit 2 here too
            print_plan(loaded, limit)
            return
        if not resume:
            clear_finished_work(loaded, out_dir)
        columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with (
            _executor(executor, loaded, workers, ray_address, ray_cpus_per_task) as runs_on,
            Bars(*columns, console=console(stderr=True), transient=False) as bars,
        ):
            manifest = run_build(loaded, out_dir, workers=workers, limit=limit, progress=_bars(bars), executor=runs_on)
        summary(manifest, out_dir)
    except LongDocVQAError as exc:
        fail(exc)
    except KeyboardInterrupt:
        interrupted(out_dir)


def run_folder(recipe: Recipe, out: Path | None, absolute: bool = False) -> Path:
    """The run directory: --out, else runs/<name>-<version>; `absolute` for a cluster, whose tasks on other nodes
    (or in another folder) must write to the same place."""
    out_dir = out or Path("runs") / f"{recipe.name}-{recipe.version}"
    return out_dir.absolute() if absolute else out_dir


def clear_finished_work(recipe: Recipe, out_dir: Path) -> None:
    """--no-resume: drop the finished stages and the dataset (the call ledger stays), after the recipe's files are
    checked (a bad recipe clears nothing) and under the run's lock (another build may be using the folder)."""
    import shutil

    check_recipe_files(recipe)
    run = RunDir(out_dir)
    with run.lock():
        for folder in (run.root / "stages", run.dataset_dir):
            shutil.rmtree(folder, ignore_errors=True)


def interrupted(out_dir: Path | None) -> NoReturn:
    """Ctrl-C: one line naming the run directory, exit 130; finished work stays there and a rerun resumes."""
    where = f"finished work is kept in {out_dir}" if out_dir is not None else "before the build started"
    console(stderr=True).print(plain(f"interrupted: {where}; run the same command again to resume"))
    raise typer.Exit(130)


def _check_executor(kind: str) -> None:
    """A usage error (exit 2) before any work when `--executor` names no executor."""
    if kind not in ("local", "ray"):
        raise RecipeError(f"--executor: {kind!r} is not one of 'local', 'ray'")


def _executor(
    kind: str, recipe: Recipe, workers: int | None, address: str | None, cpus_per_task: float
) -> contextlib.AbstractContextManager[Any]:
    """The executor `--executor` names, for the length of the build (None: the local default)."""
    if kind == "local":
        return contextlib.nullcontext(None)
    return ray_executor(recipe, workers=workers, address=address, cpus_per_task=cpus_per_task)


def _bars(bars: Any) -> Progress:
    """One Rich progress bar per stage (a `runner.Progress`); rejects print as `rejected ITEM: REASON: DETAIL`."""

    class RichProgress(Progress):
        @contextmanager  # type: ignore[override]
        def stage(self, name: str, total: int) -> Iterator[Callable[[int], None]]:
            task = bars.add_task(name, total=total)

            def advance(n: int = 1) -> None:
                bars.advance(task, n)

            yield advance
            bars.update(task, completed=total)

        def reject(self, reject: Any) -> None:
            if reject.reason in _SAMPLED_OUT:
                return  # usable QAs or documents the budget or mixture left out: counted in the table, not news
            bars.console.print(plain(f"{reject.item}: {reject.reason}: {reject.detail}", "rejected ", "yellow"))

    return RichProgress()


def print_plan(recipe: Recipe, limit: int | None) -> None:
    """--dry-run: what the build would produce, per task, from the pool's page sizes alone."""
    from rich.table import Table

    result, planner, units = plan_with_units(recipe, limit=limit)
    table = Table(title=plain(f"plan: {recipe.name} {recipe.version} (nothing is built)"))
    for column in ("task", "share", "candidates", "expected examples", "expected tokens", "shortfall tokens"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task, row in result.tasks.items():
        table.add_row(task, f"{row.share:.0%}", f"{row.candidates:,}", f"{row.expected_examples:,}",
                      f"{row.expected_tokens:,}", f"{row.shortfall_tokens:,}")  # fmt: skip
    out = console()
    out.print(table)
    window = f"in the token window: {result.documents_in_window:,}"
    total = f"mean {result.mean_tokens:,.0f} tokens, expected total {result.expected_tokens:,} tokens"
    out.print(f"documents {result.documents:,} ({window}), {total}")
    for note in result.notes:
        out.print(plain(f"note: {note}"))
    _print_calls(planner, units)


def _print_calls(planner: Any, units: Any) -> None:
    """Per task: what the plan stage would send to the model (estimates from page sizes)."""
    from rich.table import Table

    forecast = planner.forecast(units)
    priced = any("cost_usd" in row for row in forecast.values())
    table = Table(title="model calls the plan needs (before decontamination; text tokens estimated)")
    columns = ["task", "documents", "model calls", "prompt tokens", "image tokens", "text tokens", "output tokens"]
    for column in columns + (["cost (USD)"] if priced else []):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task, row in forecast.items():
        cells = [task] + [f"{row[k]:,}" for k in ("documents", "calls", "prompt_tokens", "image_tokens",
                                                   "text_tokens", "output_tokens")]  # fmt: skip
        table.add_row(*cells, *([f"{row.get('cost_usd', 0.0):,.2f}"] if priced else []))
    out = console()
    out.print(table)
    used, total = len(units.documents()), len(planner.docs)
    calls = sum(row["calls"] for row in forecast.values())
    out.print(f"the plan uses {used:,} of {total:,} pool documents ({len(units.units):,} document-task units); "
              f"{calls:,} model calls vs {planner.generate_everything_calls():,} to generate every task "
              "for every document")  # fmt: skip


COMMANDS: dict[str, Callable[..., None]] = {"build": build}
