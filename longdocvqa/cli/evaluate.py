"""`longdocvqa eval`: score a model on full long documents at chosen context lengths.

Owns: the command's flags, turned into one `EvalConfig`, its progress bar and what it prints. Does not own: the
evaluation (eval/run.py), its scores table (eval/report.py) or its settings' rules (EvalConfig).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from longdocvqa.cli.output import console, fail, plain
from longdocvqa.core.errors import LongDocVQAError, RecipeError
from longdocvqa.core.recipe import format_errors
from longdocvqa.eval.report import scores_table
from longdocvqa.eval.run import EvalConfig, endpoint, run_eval


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
                raise RecipeError("give both --judge-base-url and --judge-model")
            judge = endpoint(judge_base_url, judge_model, judge_api_key_env, max_tokens=256, timeout_s=timeout_s)
        config = EvalConfig(
            dataset=dataset, split=split, revision=revision, out=out, input_mode=input_mode,  # type: ignore[arg-type]
            endpoint=endpoint(base_url, model, api_key_env, **settings), judge=judge, pdf_dir=pdf_dir,
            lengths=_lengths(lengths), limit=limit, dpi=dpi, seed=seed,
        )  # fmt: skip
    except ValidationError as exc:  # a bad setting is a usage error (exit 2), worded as a recipe's problems are
        fail(RecipeError("invalid eval settings\n" + "\n".join(format_errors(exc))))
    except LongDocVQAError as exc:
        fail(exc)
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console(stderr=True)) as bar:
            task = bar.add_task("eval", total=None)
            result = run_eval(config, progress=lambda n: bar.advance(task, n),
                              on_total=lambda n: bar.update(task, total=n))  # fmt: skip
    except LongDocVQAError as exc:
        fail(exc)
    out_console = console()
    out_console.print(scores_table(result.scores))
    usage = result.scores["run"]["usage"]["model"]
    out_console.print(f"accuracy {result.scores['accuracy']:.4f} over {result.scores['evaluated']} (question, "
                      f"length) pairs; skipped {result.scores['skipped']}; model calls sent {usage['sent']}, "
                      f"replayed {usage['replayed']}; rejected items {len(result.rejects)}")  # fmt: skip
    out_console.print(plain(f"scores: {out / 'scores.json'}; predictions: {out / 'predictions.jsonl'}"))


def _lengths(text: str) -> list[int]:
    """'32768, 65536' -> [32768, 65536]; anything but whole numbers is a usage error (exit 2)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    bad = [part for part in parts if not part.lstrip("-").isdigit()]
    if bad:
        raise RecipeError(f"--lengths: not a whole number of tokens: {', '.join(bad)}")
    return [int(part) for part in parts]


COMMANDS: dict[str, Callable[..., None]] = {"eval": eval_command}
