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
from typing import Annotated, Any

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


class _RichProgress:
    """One Rich progress bar per stage."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[Callable[[int], None]]:
        task = self.progress.add_task(name, total=total)
        yield lambda n=1: self.progress.advance(task, n)
        self.progress.update(task, completed=total)

    def reject(self, reject: Any) -> None:
        self.progress.console.print(
            f"[yellow]rejected[/] {reject.item}: {reject.reason}: {reject.detail}", highlight=False, soft_wrap=True
        )


@app.command()
def build(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML describing the dataset version (see recipes/).")],
    out: Annotated[Path | None, typer.Option("--out", help="Run directory; default runs/<name>-<version>.")] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel worker processes; default: all cores.")] = None,
    limit: Annotated[int | None, typer.Option(help="Process at most N pool documents (for a quick look).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (documents, examples, tokens).")] = False,
) -> None:
    """Build (or resume) a dataset: rerunning the same command reuses all finished work."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from longdocvqa.errors import LongDocVQAError
    from longdocvqa.pipeline import build as run_build
    from longdocvqa.recipe import load_recipe

    try:
        loaded = load_recipe(recipe)
        out_dir = out or Path("runs") / f"{loaded.name}-{loaded.version}"
        columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=_console(stderr=True), transient=False) as bar:
            manifest = run_build(loaded, out_dir, workers=workers, limit=limit, progress=_RichProgress(bar))
    except LongDocVQAError as exc:
        _fail(exc)
        return
    _print_summary(manifest, out_dir)


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
    console.print(f"documents {manifest['documents']}, segments {manifest['segments']}, {manifest['seconds']:.1f} s")


@app.command()
def inspect(out_dir: Annotated[Path, typer.Argument(help="A build's run directory.")]) -> None:
    """Show a build's stats, drops by reason and the rejects file."""
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        _console(stderr=True).print(f"error: {manifest_path}: no manifest; is this a run directory?")
        raise typer.Exit(2)
    _print_summary(json.loads(manifest_path.read_text()), out_dir)


@app.command()
def schema(
    what: Annotated[str, typer.Argument(help="'qa' (the generator's JSON) or 'recipe'.")] = "qa",
) -> None:
    """Print the JSON Schema of the QA record or of the recipe."""
    from longdocvqa.recipe import Recipe
    from longdocvqa.records import QA

    models = {"qa": QA, "recipe": Recipe}
    if what not in models:
        _console(stderr=True).print(f"error: unknown schema {what!r}; choose 'qa' or 'recipe'")
        raise typer.Exit(2)
    typer.echo(json.dumps(models[what].model_json_schema(), indent=2))


def main() -> None:
    app()
