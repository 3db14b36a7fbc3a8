"""Statistics of an assembly (per task and overall, length and page histograms, their plots) and the dry-run
estimate of what a build would assemble from page sizes alone (`build --dry-run`).

Does not own: building, measuring or sampling examples (assemble.py, sampling.py), drawing charts (core/charts.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from longdocvqa.assembly.sampling import Candidate
from longdocvqa.assembly.tokens import document_image_tokens
from longdocvqa.core import charts
from longdocvqa.core.recipe import AssembleConfig
from longdocvqa.core.records import OCR_TASKS, PdfDoc, Reject

LONG_EXAMPLE_TOKENS = 100_000  # "share >= 100K" in the paper's tables (decimal K, as its totals add up)
_EST_QA_TEXT_TOKENS = 80  # dry-run estimate of system prompt + question + answer, without a tokenizer
_EST_LABEL_TOKENS = 5  # "\nPage 17: "


class Histogram(BaseModel):
    """Counts per series over bins [edges[i], edges[i+1])."""

    edges: list[int]
    counts: dict[str, list[int]]


class TaskStats(BaseModel):
    examples: int
    tokens: int
    token_share: float
    example_share: float
    mean_tokens: float
    min_tokens: int
    max_tokens: int
    share_ge_100k: float
    mean_pages: float


class AssembleStats(BaseModel):
    """Statistics of the sampled examples for the manifest and the card."""

    examples: int
    tokens: int
    mean_tokens: float
    min_tokens: int
    max_tokens: int
    share_ge_100k: float = Field(description="share of examples with >= 100,000 tokens")
    mean_pages: float
    per_task: dict[str, TaskStats]
    pool: dict[str, dict[str, int]] = Field(description="candidates in the window per task: examples, tokens")
    requested: dict[str, Any]
    shortfall: str | None = None
    rejects: dict[str, int]
    length_histogram: Histogram
    pages_histogram: Histogram


def compute_stats(
    picks: Sequence[Candidate],
    candidates: Sequence[Candidate],
    rejects: Sequence[Reject],
    config: AssembleConfig,
    shortfall: str | None = None,
) -> AssembleStats:
    """Token and page statistics of the sample, per task and overall, with histograms."""
    overall = _summary([p.num_tokens for p in picks], [p.num_pages for p in picks])
    by_task: dict[str, list[Candidate]] = defaultdict(list)
    for pick in picks:
        by_task[pick.task].append(pick)
    total_tokens, total_examples = max(1, overall["tokens"]), max(1, len(picks))
    per_task = {}
    for task, items in sorted(by_task.items()):
        summary = _summary([c.num_tokens for c in items], [c.num_pages for c in items])
        per_task[task] = TaskStats(token_share=summary["tokens"] / total_tokens,
                                   example_share=len(items) / total_examples, **summary)  # fmt: skip
    pool: dict[str, dict[str, int]] = defaultdict(lambda: {"examples": 0, "tokens": 0})
    for cand in candidates:
        pool[cand.task]["examples"] += 1
        pool[cand.task]["tokens"] += cand.num_tokens
    return AssembleStats(
        **overall, per_task=per_task, pool=dict(sorted(pool.items())), requested=_requested(config),
        shortfall=shortfall, rejects=dict(sorted(Counter(r.reason for r in rejects).items())),
        length_histogram=histogram(picks, "tokens", config), pages_histogram=histogram(picks, "pages", config),
    )  # fmt: skip


def _summary(tokens: Sequence[int], pages: Sequence[int]) -> dict[str, Any]:
    count = len(tokens)
    return {
        "examples": count,
        "tokens": sum(tokens),
        "mean_tokens": sum(tokens) / count if count else 0.0,
        "min_tokens": min(tokens, default=0),
        "max_tokens": max(tokens, default=0),
        "share_ge_100k": sum(t >= LONG_EXAMPLE_TOKENS for t in tokens) / count if count else 0.0,
        "mean_pages": sum(pages) / count if count else 0.0,
    }


def _requested(config: AssembleConfig) -> dict[str, Any]:
    keys = ("distribution", "min_tokens", "max_tokens", "mixture", "mixture_unit", "budget_tokens", "on_shortfall")
    requested = {key: getattr(config, key) for key in keys}
    requested["short_share"] = config.short_data.share
    if config.distribution == "target":
        requested["target"] = config.target
    if config.distribution == "long-biased":
        requested["long_bias"] = config.long_bias
    return requested


def histogram(picks: Sequence[Candidate], what: Literal["tokens", "pages"], config: AssembleConfig) -> Histogram:
    """Counts per task over about 30 equal bins: tokens across the observed range within [min_tokens, max_tokens],
    pages across the observed range (bins of whole pages)."""
    values = [(p.task, p.num_tokens if what == "tokens" else p.num_pages) for p in picks]
    window = (config.min_tokens, config.max_tokens) if what == "tokens" else None
    edges = charts.bin_edges([v for _, v in values], window)
    by_task: dict[str, list[int]] = defaultdict(list)
    for task, value in values:
        by_task[task].append(value)
    return Histogram(edges=edges, counts={t: charts.bin_counts(v, edges) for t, v in sorted(by_task.items())})


def write_length_plots(stats: AssembleStats, out_dir: str | Path) -> dict[str, Path]:
    """Draw `length_histogram.png` (x: tokens, y: examples) and `pages_histogram.png`, stacked by task, each with
    its plotted numbers in a `.json` beside it; each title states its own chart's summary. Returns the two paths
    (not written when matplotlib cannot be imported)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"length": out / "length_histogram.png", "pages": out / "pages_histogram.png"}
    if charts.charts_available():  # matplotlib missing: nothing drawn, the card says in one line it has no charts
        return paths
    length = charts.stacked_histogram(stats.length_histogram.edges, stats.length_histogram.counts,
                                      title=length_title(stats), xlabel="tokens per example")  # fmt: skip
    pages = charts.stacked_histogram(stats.pages_histogram.edges, stats.pages_histogram.counts,
                                     title=pages_title(stats), xlabel="pages per example")  # fmt: skip
    return {"length": length.write(paths["length"]), "pages": pages.write(paths["pages"])}


def length_title(stats: AssembleStats) -> str:
    """`Tokens per example: 18 examples, mean 2,603 (min 2,104, max 3,088)`, plus the share >= 100K when the
    recipe's window reaches 100K."""
    title = (f"Tokens per example: {stats.examples:,} examples, mean {stats.mean_tokens:,.0f} "
             f"(min {stats.min_tokens:,}, max {stats.max_tokens:,})")  # fmt: skip
    if int(stats.requested.get("max_tokens") or 0) >= LONG_EXAMPLE_TOKENS:
        title += f", {stats.share_ge_100k:.1%} >= {LONG_EXAMPLE_TOKENS // 1000}K"
    return title


def pages_title(stats: AssembleStats) -> str:
    """`Pages per example: 18 examples, mean 21.3`."""
    return f"Pages per example: {stats.examples:,} examples, mean {stats.mean_pages:.1f}"


# ---------------------------------------------------------------------------------------------- dry-run plan


class TaskPlan(BaseModel):
    share: float
    candidates: int
    candidate_tokens: int
    expected_examples: int
    expected_tokens: int
    shortfall_tokens: int = 0


class AssemblyPlan(BaseModel):
    """What a build would assemble, from page sizes alone (for `build --dry-run`)."""

    documents: int
    documents_in_window: int
    mean_tokens: float
    budget_tokens: int | None
    short_share: float
    tasks: dict[str, TaskPlan]
    expected_tokens: int
    notes: list[str]


def estimate_assembly(
    docs: Iterable[PdfDoc],
    config: AssembleConfig,
    *,
    render_dpi: int,
    qas_per_document: int = 1,
) -> AssemblyPlan:
    """Expected examples and tokens per task: each document's length (exact image tokens, estimated text) and
    `qas_per_document` QAs per task (segments per document x questions per segment)."""
    lengths = [_estimated_length(doc, config, render_dpi) for doc in docs]
    inside = [n for n in lengths if n is not None and config.min_tokens <= n <= config.max_tokens]
    mean = sum(inside) / len(inside) if inside else 0.0
    long_budget = None if config.budget_tokens is None else config.budget_tokens * (1 - config.short_data.share)
    tasks: dict[str, TaskPlan] = {}
    for task, task_share in config.mixture.items():
        if task_share > 0:
            tasks[task] = _task_plan(task_share, len(inside), sum(inside), mean, long_budget, qas_per_document)
    expected = sum(t.expected_tokens for t in tasks.values())
    share = config.short_data.share
    notes = ["text tokens are estimated (question and answer unknown before generation)"]
    if any(task in OCR_TASKS for task in tasks):
        notes.append("OCR transcription targets are not included in the estimate")
    if share:
        notes.append(f"plus about {expected * share / (1 - share):,.0f} tokens of short data ({share:.0%})")
    return AssemblyPlan(documents=len(lengths), documents_in_window=len(inside), mean_tokens=mean,
                        budget_tokens=config.budget_tokens, short_share=share, tasks=tasks, expected_tokens=expected,
                        notes=notes)  # fmt: skip


def _estimated_length(doc: PdfDoc, config: AssembleConfig, dpi: int) -> int | None:
    try:
        image = document_image_tokens(doc.page_sizes_pt, dpi, config.min_pixels, config.max_pixels)
    except ValueError:
        return None
    labels = doc.num_pages * _EST_LABEL_TOKENS if config.page_labels else 0
    return image + labels + _EST_QA_TEXT_TOKENS


def _task_plan(
    share: float, docs: int, doc_tokens: int, mean: float, long_budget: float | None, per_doc: int
) -> TaskPlan:
    candidates, candidate_tokens = docs * per_doc, doc_tokens * per_doc
    if long_budget is None:
        return TaskPlan(share=share, candidates=candidates, candidate_tokens=candidate_tokens,
                        expected_examples=candidates, expected_tokens=candidate_tokens)  # fmt: skip
    need = share * long_budget  # by examples too: every task draws from the same documents, so equal mean lengths
    tokens = int(min(need, candidate_tokens))
    examples = int(tokens / mean) if mean else 0
    return TaskPlan(share=share, candidates=candidates, candidate_tokens=candidate_tokens, expected_examples=examples,
                    expected_tokens=tokens, shortfall_tokens=int(max(0.0, need - candidate_tokens)))  # fmt: skip
