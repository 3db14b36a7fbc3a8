"""The card's tables: configs and tasks, example `qa` rows, licences, documents, drops, decontamination.

Each function returns one Markdown block from the publish statistics; `cell` makes any text safe for a table cell
(one line, `|` escaped, cut at a limit). Does not own: the card's prose, header or pictures (card.py, charts.py,
card_examples.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from longdocvqa.core.contract import ordered_splits
from longdocvqa.core.recipe import Recipe
from longdocvqa.hub.stats import PublishStats


def task_shares(stats: PublishStats, unit: str) -> dict[str, float]:
    """Share of each task over all splits of `sft`, by tokens or by examples (rounded to 6 digits)."""
    source = stats.task_tokens if unit == "tokens" else stats.task_counts
    totals: dict[str, int] = {}
    for per_task in source.values():
        for task, value in per_task.items():
            totals[task] = totals.get(task, 0) + value
    whole = sum(totals.values()) or 1
    return {task: round(value / whole, 6) for task, value in sorted(totals.items())}


def contents_table(recipe: Recipe, stats: PublishStats) -> str:
    lines = [
        "## Contents",
        "",
        "| config | " + " | ".join(card_splits(stats)) + " |",
        "|---|" + "---|" * len(card_splits(stats)),
    ]
    for config in ("sft", "qa", "documents"):
        counts = " | ".join(str(stats.rows[config].get(s, 0)) for s in card_splits(stats))
        lines.append(f"| {config} | {counts} |")
    shares = task_shares(stats, recipe.assemble.mixture_unit)
    lines += ["", f"Examples and tokens per task (`sft`; shares by {recipe.assemble.mixture_unit}):", ""]
    lines += ["| task | split | examples | tokens | share | target |", "|---|---|---|---|---|---|"]
    targets = {str(task): share for task, share in recipe.assemble.mixture.items()}
    for split in card_splits(stats):
        for task, count in sorted(stats.task_counts.get(split, {}).items()):
            target = targets.get(task)
            lines.append(
                f"| {task} | {split} | {count} | {stats.task_tokens[split][task]:,} | "
                f"{shares.get(task, 0):.3f} | {'' if target is None else f'{target:.3f}'} |"
            )
    return "\n".join(lines)


def qa_examples_table(stats: PublishStats) -> str:
    lines = [
        "## Example rows (`qa`)",
        "",
        "Rows that passed every check that ran (answer found on an evidence page for extraction tasks, the "
        "verifier's agreement when verification was on) and are used by an `sft` example.",
        "",
        "| task | question | answer | format | evidence pages |",
        "|---|---|---|---|---|",
    ]
    for task, rows in sorted(stats.samples.items()):
        for row in rows:
            pages = ", ".join(str(p) for p in row["evidence_pages"])
            lines.append(
                f"| {task} | {cell(row['question'])} | {cell(row['answer'])} | {row['answer_format']} | {pages} |"
            )
    return "\n".join(lines)


def sources_section(stats: PublishStats) -> str:
    lines = ["## Source documents and licences", "", licence_table(stats), "", document_table(stats)]
    return "\n".join(lines)


def licence_table(stats: PublishStats) -> str:
    """Per licence: documents, `sft` examples and `qa` rows (every row carries its document's licence)."""
    rows = ["| licence | documents | sft examples | qa rows |", "|---|---|---|---|"]
    sft_rows: Mapping[str, int] = stats.licence_rows.get("sft", {})
    qa_rows: Mapping[str, int] = stats.licence_rows.get("qa", {})
    names = sorted(set(stats.licences) | set(sft_rows) | set(qa_rows))
    for name in names:
        sft, qa = sft_rows.get(name, 0), qa_rows.get(name, 0)
        rows.append(f"| {cell(name)} | {stats.licences.get(name, 0)} | {sft} | {qa} |")
    return "\n".join(rows) if names else "No documents."


def document_table(stats: PublishStats) -> str:
    total = sum(stats.rows["documents"].values())
    lines = ["| file | pages | licence | source | split |", "|---|---|---|---|---|"]
    for doc in stats.documents:
        lines.append(
            f"| {cell(doc['file_name'])} | {doc['num_pages']} | {doc['licence'] or 'unknown'} | "
            f"{cell(doc['source'] or '')} | {doc['split']} |"
        )
    if total > len(stats.documents):
        lines += ["", f"... and {total - len(stats.documents):,} more: see the `documents` config."]
    return "\n".join(lines)


def card_splits(stats: PublishStats) -> list[str]:
    return ordered_splits({split for config in ("sft", "qa", "documents") for split in stats.rows[config]}) or [
        "train"
    ]


def decontamination_section(benchmarks: list[str], within_pool: bool, report: Mapping[str, Any]) -> str:
    """What decontamination ran: the benchmarks and counts, or a visible line saying none was configured."""
    if benchmarks:
        return decontamination_table(report)
    within = within_pool
    pool = (report.get("within_pool") or {}).get("pool_near_dup", 0)
    line = f"Near-duplicates removed inside the pool: {pool}." if within else "No near-duplicate removal was run."
    return (
        "**No benchmark was configured: these documents were not decontaminated against any evaluation "
        f"benchmark.** {line}"
    )


def decontamination_table(report: Mapping[str, Any]) -> str:
    """One row per benchmark and rule: documents or questions dropped, and the matched benchmark items."""
    if not report:
        return "Not run."
    if "benchmarks" not in report:  # a plain measure -> value mapping
        return table(report, ("benchmark / measure", "value"))
    rows = ["| benchmark | kind | rule | dropped | matched benchmark items |", "|---|---|---|---|---|"]
    for name, source in sorted((report.get("benchmarks") or {}).items()):
        for rule, hit in source.get("dropped", {}).items():
            items = ", ".join(f"`{cell(i, 60)}`" for i in hit.get("benchmark_ids", [])[:10]) or "-"
            rows.append(f"| {cell(name)} | {source.get('kind', '')} | {rule} | {hit.get('count', 0)} | {items} |")
    if len(rows) == 2:
        rows.append("| (no benchmark configured) | | | | |")
    pool = (report.get("within_pool") or {}).get("pool_near_dup", 0)
    settings = report.get("settings") or {}
    how = ", ".join(f"{k}={v}" for k, v in settings.items() if k in ("num_perm", "shingle_words", "threshold",
                                                                     "window_pages", "question_ngram"))  # fmt: skip
    return "\n".join(rows) + f"\n\nNear-duplicates removed inside the pool: {pool}. MinHash LSH settings: {how}."


def table(data: Mapping[str, Any], head: tuple[str, str]) -> str:
    if not data:
        return "None."
    rows = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    rows += [f"| {cell(str(k))} | {cell(str(v))} |" for k, v in sorted(data.items())]
    return "\n".join(rows)


def cell(text: Any, limit: int = 120) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
