"""`validate`, `push` and `inspect`: what is done with a built dataset.

Owns: these commands' flags and what they print (the validation report's tables too). Does not own: the checks
(hub/validate.py), the upload (hub/push.py) or the manifest (pipeline.py writes it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from longdocvqa.cli.output import console, fail, plain, summary
from longdocvqa.core.errors import LongDocVQAError, RecipeError
from longdocvqa.core.manifest import load_manifest
from longdocvqa.core.safetext import printable
from longdocvqa.hub.push import dataset_folder, push_dataset
from longdocvqa.hub.validate import KINDS, ValidationReport, failure_counts, validate_dataset

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def validate(
    path_or_repo: Annotated[str, typer.Argument(help="A built dataset folder (OUT/dataset or OUT) or a Hub repo id.")],
    revision: Annotated[str | None, typer.Option(help="Hub revision: tag, branch or commit.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    max_per_kind: Annotated[int, typer.Option(help="Failures listed in full per kind.")] = 20,
) -> None:
    """Load a dataset exactly as a user would and check every row and the card; exit 1 on any failure."""

    target = str(dataset_folder(path_or_repo)) if Path(path_or_repo).exists() else path_or_repo
    try:
        report = validate_dataset(target, revision, max_per_kind=max_per_kind)
    except LongDocVQAError as exc:
        fail(exc)
    if as_json:
        typer.echo(report.to_json())
    else:
        render_report(report, console())
    if not report.ok:
        raise typer.Exit(1)


def push(
    out_dir: Annotated[Path, typer.Argument(help="A build's run directory (or its dataset/ folder).")],
    repo: Annotated[str, typer.Option("--repo", help="Hub dataset repo, ORG/NAME.")],
    tag: Annotated[str | None, typer.Option(help="Version tag; default: v + the recipe version.")] = None,
    private: Annotated[bool, typer.Option("--private/--public", help="Visibility if the repo is created.")] = True,
) -> None:
    """Validate, upload (resumable) as one commit, and tag the version on the Hub. Token: HF_TOKEN or hf login."""

    progress = console(stderr=True)
    try:
        result = push_dataset(
            out_dir, repo, tag, private, failures=failure_counts,
            progress=lambda p: progress.print(plain(f"uploaded {p}")),
        )  # fmt: skip
    except LongDocVQAError as exc:
        fail(exc)
    where = f"{result.repo}@{result.tag}"
    console().print(plain(f"{result.status}: {where} ({result.files} files, commit {result.commit[:12]})"))


def inspect(
    out_dir: Annotated[Path, typer.Argument(help="A build's run directory (or its dataset/ folder).")],
) -> None:
    """Show a build's stats (stages in pipeline order), drops by reason, history and the rejects file."""
    out_dir = _run_folder(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        fail(RecipeError(f"{manifest_path}: no manifest; is this a run directory?"))
    try:
        manifest = load_manifest(manifest_path)
    except LongDocVQAError as exc:
        fail(exc)
    summary(manifest, out_dir)
    out = console()
    tokens = manifest["stages"].get("assemble", {}).get("summary")
    if tokens and tokens.get("examples"):
        out.print(
            f"tokens: total {tokens['tokens']:,}, mean {tokens['mean_tokens']:,.0f}, min {tokens['min_tokens']:,}, "
            f"max {tokens['max_tokens']:,}, share >= 100K {tokens['share_ge_100k']:.1%}, "
            f"mean pages {tokens['mean_pages']:.1f}"
        )
        for task, row in tokens.get("per_task", {}).items():
            out.print(f"  {task:<15} {row.get('examples', 0):>6} examples {row.get('tokens', 0):>14,} tokens")
    for reason, count in manifest.get("drops", {}).items():
        out.print(plain(f"dropped {reason}: {count}"))
    _print_history(manifest.get("cumulative"))
    for name in ("length_histogram.png", "pages_histogram.png"):
        for path in (out_dir / "dataset").glob(f"**/*{name.split('_')[0]}*.png"):
            out.print(plain(f"plot: {path}"))


def _run_folder(path: Path) -> Path:
    """The run directory of `path`: itself, or its parent when given the run's dataset/ folder."""
    if not (path / "manifest.json").is_file() and (path.parent / "manifest.json").is_file():
        return path.parent
    return path


def _print_history(total: dict[str, Any] | None) -> None:
    """Totals over every build of this run directory (OUT/runs.jsonl and the call ledger)."""
    if not total:
        return
    calls = total.get("calls") or {}
    cost = calls.get("cost_usd")
    console().print(
        f"history: {total['runs']} builds since {total['first_started_at']}, {total['seconds']:.1f} s in all; "
        f"model calls paid {calls.get('calls', 0):,}"
        + (f", cost ${cost:,.4f}" if cost is not None else "")
        + " (per build: runs.jsonl)"
    )


def render_report(report: ValidationReport, console: Console) -> None:
    """Print the report with Rich: rows checked, failures per kind (first N each), warnings, verdict."""
    from rich.table import Table
    from rich.text import Text

    title = f"validate {report.target}" + (f" @ {report.revision}" if report.revision else "")
    checked = Table(title=Text(printable(title)))
    checked.add_column("config")
    checked.add_column("rows checked", justify="right")
    for config, splits in report.rows_checked.items():
        checked.add_row(config, ", ".join(f"{s}: {n}" for s, n in sorted(splits.items())) or "0")
    console.print(checked)
    if report.failures:
        console.print(_failure_table(report))
    for warning in report.warnings:
        console.print(Text.assemble(("warning ", "yellow"), printable(warning)))
    failures = f": {sum(report.failure_counts.values())} failures"
    verdict = Text.assemble(("OK", "green")) if report.ok else Text.assemble(("FAILED", "red"), failures)
    console.print(verdict)


def _failure_table(report: ValidationReport) -> Table:
    from rich.table import Table

    table = Table(title=f"failures (first {report.max_per_kind} per kind)")
    for column in ("check", "config", "split", "row", "message"):
        table.add_column(column, overflow="fold")
    for failure in sorted(report.failures, key=lambda f: KINDS.index(f.kind) if f.kind in KINDS else len(KINDS)):
        table.add_row(failure.kind, failure.config, failure.split, failure.row, failure.message)
    for kind, count in report.failure_counts.items():
        if count > report.max_per_kind:
            table.add_row(kind, "", "", "", f"... {count - report.max_per_kind} more")
    return table


COMMANDS: dict[str, Callable[..., None]] = {"validate": validate, "push": push, "inspect": inspect}
