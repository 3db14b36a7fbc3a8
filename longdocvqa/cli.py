"""The `longdocvqa` command line: the only place that prints or exits.

Commands stay thin: parse flags, call the library, render results, map errors to exit codes
(0 success, 1 build or external failure, 2 bad recipe or usage). Heavy libraries are imported
inside the commands, so `longdocvqa --help` is instant.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(
    name="longdocvqa",
    help="Build long-document VQA datasets for long-context training of vision-language models "
    "(PDF pool -> pages -> layout -> segments -> QA -> full-document examples -> Hub dataset).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def _fail(exc: Exception) -> None:
    """Print a library error as one clear message and exit with its code."""
    from longdocvqa.errors import LongDocVQAError

    code = exc.exit_code if isinstance(exc, LongDocVQAError) else 1
    _console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    raise typer.Exit(code) from None


def _rich_progress(progress: Any) -> Any:
    """One Rich progress bar per stage (a `pipeline.Progress`)."""
    from longdocvqa.pipeline import Progress

    class RichProgress(Progress):
        @contextmanager  # type: ignore[override]
        def stage(self, name: str, total: int) -> Iterator[Callable[[int], None]]:
            task = progress.add_task(name, total=total)

            def advance(n: int = 1) -> None:
                progress.advance(task, n)

            yield advance
            progress.update(task, completed=total)

        def reject(self, reject: Any) -> None:
            message = f"[yellow]rejected[/] {reject.item}: {reject.reason}: {reject.detail}"
            progress.console.print(message, highlight=False, soft_wrap=True)

    return RichProgress()


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML describing the dataset version (see recipes/).")],
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
) -> None:
    """Build (or resume) a dataset: rerunning the same command reuses all finished work."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from longdocvqa.errors import LongDocVQAError
    from longdocvqa.pipeline import build as run_build
    from longdocvqa.recipe import load_recipe

    try:
        loaded = load_recipe(recipe)
        out_dir = out or Path("runs") / f"{loaded.name}-{loaded.version}"
        if dry_run:
            _print_plan(loaded, limit)
            return
        if not resume:
            _clear_stages(out_dir)
        columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=_console(stderr=True), transient=False) as bar:
            manifest = run_build(loaded, out_dir, workers=workers, limit=limit, progress=_rich_progress(bar))
    except LongDocVQAError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        _interrupted(out or Path("runs"))
    _print_summary(manifest, out_dir)


def _interrupted(out_dir: Path) -> NoReturn:
    """Ctrl-C: one line, exit 130; finished work stays in the run directory and a rerun resumes from it."""
    message = f"interrupted: finished work is kept in {out_dir}; run the same command again to resume"
    _console(stderr=True).print(message, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(130)


def _print_summary(manifest: dict[str, Any], out_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{manifest['name']} {manifest['version']} -> {out_dir}")
    for column in ("stage", "seen", "kept", "reused", "dropped (by reason)", "seconds"):
        table.add_column(column, justify="left" if column in ("stage", "dropped (by reason)") else "right")
    for name, stage in manifest["stages"].items():
        drops = ", ".join(f"{k}: {v}" for k, v in stage["dropped"].items()) or "-"
        table.add_row(
            name, str(stage["seen"]), str(stage["kept"]), str(stage["reused"]), drops, f"{stage['seconds']:.2f}"
        )
    console = _console()
    console.print(table)
    pages = manifest["stages"].get("pool", {}).get("pages", 0)
    counts = f"documents {manifest['documents']} ({pages} pages), segments {manifest['segments']}"
    console.print(f"{counts}, examples {manifest.get('examples', 0)}, {manifest['seconds']:.1f} s")
    console.print(f"rejects: {out_dir / 'rejects.jsonl'}; dataset: {out_dir / 'dataset'}")


def _clear_stages(out_dir: Path) -> None:
    import shutil

    for name in ("stages", "dataset"):
        shutil.rmtree(out_dir / name, ignore_errors=True)


def _print_plan(recipe: Any, limit: int | None) -> None:
    from rich.table import Table

    from longdocvqa.pipeline import plan

    result = plan(recipe, limit=limit)
    table = Table(title=f"plan: {recipe.name} {recipe.version} (nothing is built)")
    for column in ("task", "share", "candidates", "expected examples", "expected tokens", "shortfall tokens"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task, row in result.tasks.items():
        table.add_row(task, f"{row.share:.0%}", f"{row.candidates:,}", f"{row.expected_examples:,}",
                      f"{row.expected_tokens:,}", f"{row.shortfall_tokens:,}")  # fmt: skip
    console = _console()
    console.print(table)
    window = f"in the token window: {result.documents_in_window:,}"
    total = f"mean {result.mean_tokens:,.0f} tokens, expected total {result.expected_tokens:,} tokens"
    console.print(f"documents {result.documents:,} ({window}), {total}")
    for note in result.notes:
        console.print(f"note: {note}")


@app.command()
def validate(
    path_or_repo: Annotated[str, typer.Argument(help="A built dataset folder (OUT/dataset or OUT) or a Hub repo id.")],
    revision: Annotated[str | None, typer.Option(help="Hub revision: tag, branch or commit.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    max_per_kind: Annotated[int, typer.Option(help="Failures listed in full per kind.")] = 20,
) -> None:
    """Load a dataset exactly as a user would and check every row and the card; exit 1 on any failure."""
    from longdocvqa.errors import LongDocVQAError
    from longdocvqa.hub.push import dataset_folder
    from longdocvqa.validate import render_report
    from longdocvqa.validate import validate as run_validate

    target = str(dataset_folder(path_or_repo)) if Path(path_or_repo).exists() else path_or_repo
    try:
        report = run_validate(target, revision, max_per_kind=max_per_kind)
    except LongDocVQAError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(report.to_json())
    else:
        render_report(report, _console())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def push(
    out_dir: Annotated[Path, typer.Argument(help="A build's run directory (or its dataset/ folder).")],
    repo: Annotated[str, typer.Option("--repo", help="Hub dataset repo, ORG/NAME.")],
    tag: Annotated[str | None, typer.Option(help="Version tag; default: v + the recipe version.")] = None,
    private: Annotated[bool, typer.Option("--private/--public", help="Visibility if the repo is created.")] = True,
) -> None:
    """Validate, upload (resumable) as one commit, and tag the version on the Hub. Token: HF_TOKEN or hf login."""
    from longdocvqa.errors import LongDocVQAError
    from longdocvqa.hub.push import push as run_push

    console = _console(stderr=True)
    try:
        result = run_push(out_dir, repo, tag, private, progress=lambda path: console.print(f"uploaded {path}"))
    except LongDocVQAError as exc:
        _fail(exc)
        return
    where = f"{result.repo}@{result.tag}"
    _console().print(f"{result.status}: {where} ({result.files} files, commit {result.commit[:12]})")


@app.command()
def inspect(out_dir: Annotated[Path, typer.Argument(help="A build's run directory.")]) -> None:
    """Show a build's stats, drops by reason and the rejects file."""
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        _console(stderr=True).print(f"error: {manifest_path}: no manifest; is this a run directory?")
        raise typer.Exit(2)
    manifest = json.loads(manifest_path.read_text())
    _print_summary(manifest, out_dir)
    console = _console()
    summary = manifest["stages"].get("assemble", {}).get("summary")
    if summary and summary.get("examples"):
        console.print(
            f"tokens: total {summary['tokens']:,}, mean {summary['mean_tokens']:,.0f}, min {summary['min_tokens']:,}, "
            f"max {summary['max_tokens']:,}, share >= 100K {summary['share_ge_100k']:.1%}, "
            f"mean pages {summary['mean_pages']:.1f}"
        )
        for task, row in summary.get("per_task", {}).items():
            console.print(f"  {task:<15} {row.get('examples', 0):>6} examples {row.get('tokens', 0):>14,} tokens")
    for reason, count in manifest.get("drops", {}).items():
        console.print(f"dropped {reason}: {count}")
    for name in ("length_histogram.png", "pages_histogram.png"):
        for path in (out_dir / "dataset").glob(f"**/*{name.split('_')[0]}*.png"):
            console.print(f"plot: {path}")


@app.command()
def schema(
    what: Annotated[
        str, typer.Argument(help="'qa' (the generator's JSON), 'qa-row' (a published qa row) or 'recipe'.")
    ] = "qa",
) -> None:
    """Print the JSON Schema of the QA record or of the recipe."""
    from longdocvqa.qa import qa_json_schema, qa_record_json_schema
    from longdocvqa.recipe import Recipe

    schemas = {"qa": qa_json_schema, "qa-row": qa_record_json_schema, "recipe": Recipe.model_json_schema}
    if what not in schemas:
        _console(stderr=True).print(f"error: unknown schema {what!r}; choose one of {', '.join(schemas)}")
        raise typer.Exit(2)
    typer.echo(json.dumps(schemas[what](), indent=2))


def main() -> None:
    app()
