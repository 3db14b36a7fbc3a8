"""The `longdocvqa` command line: the only place that prints or exits.

Commands stay thin: parse flags, call the library, render results, map errors to exit codes
(0 success, 1 build or external failure, 2 bad recipe or usage). Heavy libraries are imported
inside the commands, so `longdocvqa --help` is instant.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from longdocvqa.audit import command as audit_command
from longdocvqa.core.errors import LongDocVQAError, RecipeError, RejectedInput
from longdocvqa.core.recipe import Recipe, load_recipe
from longdocvqa.core.safetext import printable
from longdocvqa.core.store import RunDir
from longdocvqa.documents import layoutview
from longdocvqa.eval.report import scores_table
from longdocvqa.eval.run import EvalConfig, endpoint, run_eval
from longdocvqa.generate import qa_json_schema, qa_record_json_schema
from longdocvqa.hub.push import dataset_folder, push_dataset
from longdocvqa.hub.validate import failure_counts, render_report, validate_dataset
from longdocvqa.pipeline import STAGE_ORDER, check_recipe_files, plan_with_units
from longdocvqa.pipeline import build as run_build
from longdocvqa.runner.loop import Progress
from longdocvqa.runner.ray import ray_executor

app = typer.Typer(
    name="longdocvqa",
    help="Build long-document VQA datasets for long-context training of vision-language models "
    "(PDF pool -> pages -> layout -> segments -> QA -> full-document examples -> Hub dataset). "
    "Exit codes: 0 success, 1 build or external failure, 2 bad recipe or usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _hide_flag_types() -> None:
    """Show no `<bool>` beside on/off flags (--dry-run, --resume/--no-resume, --help) in the Rich help: recent Typer
    prints a value type for every option, though a flag takes no value."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "_hides_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._hides_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_hide_flag_types()


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, markup=False)  # paths and PDF titles are data: `[/b]` in a name is printed as is


def _fail(exc: Exception) -> None:
    """Print a library error as one clear message and exit with its code."""

    code = exc.exit_code if isinstance(exc, LongDocVQAError) else 1
    _console(stderr=True).print(_plain(str(exc), "error: ", keep_newlines=True), highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


def _plain(text: str, label: str = "", style: str = "bold red", keep_newlines: bool = False) -> Any:
    """`label` + `text` as Rich Text: never parsed as markup, control characters escaped."""
    from rich.text import Text

    return Text.assemble((label, style), printable(text, keep_newlines=keep_newlines))


_SAMPLED_OUT = {"budget", "mixture"}


def _rich_progress(progress: Any) -> Any:
    """One Rich progress bar per stage (a `runner.Progress`)."""

    class RichProgress(Progress):
        @contextmanager  # type: ignore[override]
        def stage(self, name: str, total: int) -> Iterator[Callable[[int], None]]:
            task = progress.add_task(name, total=total)

            def advance(n: int = 1) -> None:
                progress.advance(task, n)

            yield advance
            progress.update(task, completed=total)

        def reject(self, reject: Any) -> None:
            if reject.reason in _SAMPLED_OUT:
                return  # usable QAs or documents the budget or mixture left out: counted in the table, not news
            message = _plain(f"{reject.item}: {reject.reason}: {reject.detail}", "rejected ", "yellow")
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        loaded = load_recipe(recipe)
        check_recipe_files(loaded)  # prompts and exemplars: a recipe error is exit 2 before any work
        out_dir = out or Path("runs") / f"{loaded.name}-{loaded.version}"
        if executor == "ray":
            out_dir = out_dir.absolute()  # tasks on other nodes (or in another folder) write to the same place
        if dry_run:
            _print_plan(loaded, limit)
            return
        columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with RunDir(out_dir).lock():  # before --no-resume clears anything: another build may be using the folder
            if not resume:
                _clear_stages(out_dir)
            with (
                _executor(executor, loaded, workers, ray_address, ray_cpus_per_task) as runs_on,
                Progress(*columns, console=_console(stderr=True), transient=False) as bar,
            ):
                manifest = run_build(
                    loaded, out_dir, workers=workers, limit=limit, progress=_rich_progress(bar), executor=runs_on
                )
    except LongDocVQAError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        _interrupted(out or Path("runs"))
    _print_summary(manifest, out_dir)


def _executor(
    kind: str, recipe: Any, workers: int | None, address: str | None, cpus_per_task: float
) -> contextlib.AbstractContextManager[Any]:
    """The executor `--executor` names, for the length of the build (None: the local default)."""
    if kind == "local":
        return contextlib.nullcontext(None)
    if kind != "ray":
        raise RecipeError(f"--executor: {kind!r} is not one of 'local', 'ray'")
    return ray_executor(recipe, workers=workers, address=address, cpus_per_task=cpus_per_task)


def _interrupted(out_dir: Path) -> NoReturn:
    """Ctrl-C: one line, exit 130; finished work stays in the run directory and a rerun resumes from it."""
    message = f"interrupted: finished work is kept in {out_dir}; run the same command again to resume"
    _console(stderr=True).print(message, highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(130)


def _print_summary(manifest: dict[str, Any], out_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=_plain(f"{manifest['name']} {manifest['version']} -> {out_dir}"))
    for column in ("stage", "seen", "kept", "reused", "dropped (by reason)", "seconds"):
        table.add_column(column, justify="left" if column in ("stage", "dropped (by reason)") else "right")
    for name, stage in _in_pipeline_order(manifest["stages"]):
        drops = ", ".join(f"{k}: {v}" for k, v in stage["dropped"].items()) or "-"
        table.add_row(
            name, str(stage["seen"]), str(stage["kept"]), str(stage["reused"]), drops, f"{stage['seconds']:.2f}"
        )
    console = _console()
    console.print(table)
    pages = manifest["stages"].get("pool", {}).get("pages", 0)
    counts = f"documents {manifest['documents']} ({pages} pages), segments {manifest['segments']}"
    console.print(f"{counts}, examples {manifest.get('examples', 0)}, {manifest['seconds']:.1f} s")
    console.print(_plain(f"rejects: {out_dir / 'rejects.jsonl'}; dataset: {out_dir / 'dataset'}"))


def _in_pipeline_order(stages: dict[str, Any]) -> list[tuple[str, Any]]:
    """Stages as the pipeline runs them (the manifest's JSON keys are sorted); unknown stages last, by name."""

    def rank(name: str) -> tuple[int, str]:
        return (STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER), name)

    return sorted(stages.items(), key=lambda item: rank(item[0]))


def _run_folder(path: Path) -> Path:
    """The run directory of `path`: itself, or its parent when given the run's dataset/ folder."""
    if not (path / "manifest.json").is_file() and (path.parent / "manifest.json").is_file():
        return path.parent
    return path


def _clear_stages(out_dir: Path) -> None:
    import shutil

    for name in ("stages", "dataset"):
        shutil.rmtree(out_dir / name, ignore_errors=True)


def _print_plan(recipe: Any, limit: int | None) -> None:
    from rich.table import Table

    result, planner, units = plan_with_units(recipe, limit=limit)
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
        console.print(_plain(f"note: {note}"))
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
    console = _console()
    console.print(table)
    used, total = len(units.documents()), len(planner.docs)
    calls = sum(row["calls"] for row in forecast.values())
    console.print(f"the plan uses {used:,} of {total:,} pool documents ({len(units.units):,} document-task units); "
                  f"{calls:,} model calls vs {planner.generate_everything_calls():,} to generate every task "
                  "for every document")  # fmt: skip


@app.command()
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

    console = _console(stderr=True)
    try:
        result = push_dataset(
            out_dir,
            repo,
            tag,
            private,
            failures=failure_counts,
            progress=lambda p: console.print(_plain(f"uploaded {p}")),
        )
    except LongDocVQAError as exc:
        _fail(exc)
        return
    where = f"{result.repo}@{result.tag}"
    _console().print(f"{result.status}: {where} ({result.files} files, commit {result.commit[:12]})")


@app.command()
def inspect(
    out_dir: Annotated[Path, typer.Argument(help="A build's run directory (or its dataset/ folder).")],
) -> None:
    """Show a build's stats (stages in pipeline order), drops by reason, history and the rejects file."""
    out_dir = _run_folder(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        _console(stderr=True).print(_plain(f"{manifest_path}: no manifest; is this a run directory?", "error: "))
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
    _print_history(manifest.get("cumulative"), console)
    for name in ("length_histogram.png", "pages_histogram.png"):
        for path in (out_dir / "dataset").glob(f"**/*{name.split('_')[0]}*.png"):
            console.print(_plain(f"plot: {path}"))


def _print_history(total: dict[str, Any] | None, console: Any) -> None:
    """Totals over every build of this run directory (OUT/runs.jsonl and the call ledger)."""
    if not total:
        return
    calls = total.get("calls") or {}
    cost = calls.get("cost_usd")
    console.print(
        f"history: {total['runs']} builds since {total['first_started_at']}, {total['seconds']:.1f} s in all; "
        f"model calls paid {calls.get('calls', 0):,}"
        + (f", cost ${cost:,.4f}" if cost is not None else "")
        + " (per build: runs.jsonl)"
    )


@app.command()
def schema(
    what: Annotated[
        str, typer.Argument(help="'qa' (the generator's JSON), 'qa-row' (a published qa row) or 'recipe'.")
    ] = "qa",
) -> None:
    """Print the JSON Schema of the QA record or of the recipe."""

    schemas = {"qa": qa_json_schema, "qa-row": qa_record_json_schema, "recipe": Recipe.model_json_schema}
    if what not in schemas:
        _console(stderr=True).print(f"error: unknown schema {what!r}; choose one of {', '.join(schemas)}")
        raise typer.Exit(2)
    typer.echo(json.dumps(schemas[what](), indent=2))


@app.command("eval")
def eval_command(
    dataset: Annotated[
        str,
        typer.Argument(
            help="A build (run directory or its dataset/ folder), a Hub dataset repo, or a benchmark folder in "
            "MMLongBench-Doc's layout (PDFs plus a JSON/JSONL of doc_id, question, answer, answer_format, "
            "evidence_pages)."
        ),
    ],
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible endpoint of the model, .../v1.")],
    model: Annotated[str, typer.Option("--model", help="Model name the endpoint serves.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder: scores.json, predictions.jsonl, plot, ledger.")],
    split: Annotated[
        str, typer.Option(help="Dataset split to evaluate (datasets only; the demo build has only 'train').")
    ] = "test",
    revision: Annotated[str | None, typer.Option(help="Hub revision of a dataset repo.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Environment variable holding the model's API key.")
    ] = None,
    lengths: Annotated[
        str, typer.Option(help="Context lengths in Qwen2.5-VL tokens, comma-separated; each prompt is padded to it.")
    ] = "32768,65536,131072",
    judge_base_url: Annotated[
        str | None, typer.Option("--judge-base-url", help="Endpoint of a judge model that extracts answers.")
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="Judge model name; without one, answers are extracted by rule.")
    ] = None,
    judge_api_key_env: Annotated[
        str | None, typer.Option("--judge-api-key-env", help="Environment variable holding the judge's API key.")
    ] = None,
    input_mode: Annotated[
        str, typer.Option("--input", help="'images' (page images) or 'text' (page text, for text-only models).")
    ] = "images",
    pdf_dir: Annotated[
        Path | None, typer.Option("--pdf-dir", help="The dataset's PDFs (text input on a built dataset).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N questions.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer the model may write, in tokens.")] = 128,
    max_concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    timeout_s: Annotated[float, typer.Option(help="Seconds before one request is retried.")] = 600.0,
    dpi: Annotated[int, typer.Option(help="Rendering of benchmark PDFs (a dataset keeps its build's pages).")] = 144,
    seed: Annotated[int, typer.Option(help="Seed of the padding shuffle and the relevant document's depth.")] = 0,
) -> None:
    """Score a model on full long documents at chosen context lengths (rerunning makes no new model calls)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        settings = {"max_tokens": max_tokens, "max_concurrency": max_concurrency, "timeout_s": timeout_s}
        judge = None
        if judge_model or judge_base_url:
            if not (judge_model and judge_base_url):
                raise typer.BadParameter("give both --judge-base-url and --judge-model")
            judge = endpoint(judge_base_url, judge_model, judge_api_key_env, max_tokens=256, timeout_s=timeout_s)
        config = EvalConfig(
            dataset=dataset, split=split, revision=revision, out=out, input_mode=input_mode,  # type: ignore[arg-type]
            endpoint=endpoint(base_url, model, api_key_env, **settings), judge=judge, pdf_dir=pdf_dir,
            lengths=[int(n) for n in lengths.split(",") if n.strip()], limit=limit, dpi=dpi, seed=seed,
        )  # fmt: skip
    except (ValueError, typer.BadParameter) as exc:
        _console(stderr=True).print(f"error: {exc}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=_console(stderr=True)) as bar:
            task = bar.add_task("eval", total=None)
            result = run_eval(config, progress=lambda n: bar.advance(task, n),
                              on_total=lambda n: bar.update(task, total=n))  # fmt: skip
    except LongDocVQAError as exc:
        _fail(exc)
        return
    console = _console()
    console.print(scores_table(result.scores))
    usage = result.scores["run"]["usage"]["model"]
    console.print(f"accuracy {result.scores['accuracy']:.4f} over {result.scores['evaluated']} (question, length) "
                  f"pairs; skipped {result.scores['skipped']}; model calls sent {usage['sent']}, "
                  f"replayed {usage['replayed']}; rejected items {len(result.rejects)}")  # fmt: skip
    console.print(f"scores: {out / 'scores.json'}; predictions: {out / 'predictions.jsonl'}")


@app.command()
def layout(
    pdf: Annotated[Path, typer.Argument(help="The PDF to look at.")],
    pages: Annotated[str | None, typer.Option(help="Pages to show, e.g. 3-5 or 1,4-6 (1-based); default all.")] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print {"pages": [{"page": N, "blocks": [{"label", "text", "bbox"}]}]}.'),
    ] = False,
    png: Annotated[
        Path | None, typer.Option(help="Folder for page images with every block outlined in its label's colour.")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="'heuristic' (default) or 'pymupdf-layout' (ONNX model).")
    ] = "heuristic",
) -> None:
    """Show the labelled layout blocks (title, section, paragraph, table, figure, ...) the pipeline sees on pages."""

    if backend not in ("heuristic", "pymupdf-layout"):
        _fail(RecipeError(f"--backend {backend!r}: choose 'heuristic' or 'pymupdf-layout'"))
    try:
        doc = layoutview.layout_of(pdf, backend)
    except (RejectedInput, OSError) as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {pdf}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    try:
        chosen = layoutview.parse_pages(pages, doc.num_pages)
    except RecipeError as exc:
        _fail(exc)
    data = layoutview.layout_json(doc, chosen)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=1))
    else:
        _print_layout(data)
    if png is not None:
        written = layoutview.write_pngs(pdf, doc, chosen, png)
        _console(stderr=as_json).print(f"wrote {len(written)} page images to {png}")


def _print_layout(data: dict[str, Any]) -> None:
    console = _console()
    for page in data["pages"]:
        console.print(f"[bold]page {page['page']}[/] ({len(page['blocks'])} blocks)")
        for block in page["blocks"]:
            text = block["text"].replace("\n", " ")
            text = text if len(text) <= 100 else text[:97] + "..."
            console.print(f"  {block['label']:<9} {text}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def audit(
    out_dir: Annotated[Path, typer.Argument(help="A build's run directory (or its dataset/ folder).")],
    sample: Annotated[int, typer.Option(help="QA to sample, stratified by task.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the sample (the same seed gives the same QA).")] = 0,
    task: Annotated[list[str] | None, typer.Option(help="Audit only this task (repeatable).")] = None,
    port: Annotated[int, typer.Option(help="Port of the page (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to serve on; not loopback: a token is printed in the URL.")] = (
        "127.0.0.1"
    ),
    auditor: Annotated[str | None, typer.Option(help="Name recorded with each verdict.")] = None,
    report: Annotated[bool, typer.Option("--report", help="Print accuracy with 95% Wilson CIs, save it.")] = False,
) -> None:
    """Hand-audit a sample of the published QA in the browser (verdicts: OUT/audit/verdicts.jsonl)."""
    options = audit_command.AuditOptions(out_dir, sample, seed, task or [], host, port, auditor)
    say = lambda line: _console().print(_plain(line, style=""), highlight=False, soft_wrap=True)  # noqa: E731
    try:
        audit_command.report(out_dir, say) if report else audit_command.serve(options, say)
    except LongDocVQAError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


def main() -> None:
    app()
