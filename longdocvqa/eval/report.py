"""The evaluation's outputs: scores.json, predictions.jsonl, rejects.jsonl, the accuracy-vs-length plot (and
its plotted numbers, accuracy_vs_length.json), a table.

scores.json holds `accuracy` (0-1, mean score over every evaluated (question, length)), `f1` (MMLongBench-Doc's F1
over "Not answerable"), and the same two per length, per task, per answer format, per evidence position
(single-page, cross-page, unanswerable) and per (length, task); questions skipped at a length (their own document is
longer) are counted per length and left out of the means. Files are written atomically; they carry no timestamps.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longdocvqa.core.charts import Chart, charts_available, line_chart
from longdocvqa.core.store import atomic_write_json, atomic_write_text
from longdocvqa.eval.score import accuracy_and_f1, evidence_position

if TYPE_CHECKING:
    from longdocvqa.eval.data import EvalSet
    from longdocvqa.eval.run import EvalConfig, Prediction

PLOT_NAME = "accuracy_vs_length.png"


def summarise(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """accuracy, f1 and count of evaluated prediction rows (those with a score)."""
    scored = [(r["answer"], r["extracted"], float(r["score"])) for r in rows if r["score"] is not None]
    accuracy, f1 = accuracy_and_f1(scored)
    return {"accuracy": round(accuracy, 6), "f1": round(f1, 6), "evaluated": len(scored)}


def _grouped(rows: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(key(row))].append(row)
    return {name: summarise(group) for name, group in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))}


def _sort_key(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.isdigit() else (1, name)


def compute_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The scores.json body (without the run's settings) from prediction rows."""
    scored = [row for row in rows if row["score"] is not None]
    by_length = _grouped(scored, lambda r: r["length"])
    skipped: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row["skipped"]:
            skipped[str(row["length"])][row["skipped"]] += 1
    for length, entry in by_length.items():
        entry["skipped"] = dict(skipped.get(length, {}))
    for length in skipped.keys() - by_length.keys():
        by_length[length] = {"accuracy": None, "f1": None, "evaluated": 0, "skipped": dict(skipped[length])}
    by_length_task: dict[str, dict[str, Any]] = defaultdict(dict)
    for (length, task), entry in _pairs(scored).items():
        by_length_task[length][task] = entry
    return {
        **summarise(scored),
        "skipped": sum(1 for row in rows if row["skipped"]),
        "failed_calls": sum(1 for row in rows if row["error"]),
        "by_length": dict(sorted(by_length.items(), key=lambda kv: int(kv[0]))),
        "by_task": _grouped(scored, lambda r: r["task"]),
        "by_answer_format": _grouped(scored, lambda r: r["answer_format"]),
        "by_evidence_position": _grouped(scored, lambda r: evidence_position(r["answer"], r["evidence_pages"])),
        "by_length_task": dict(by_length_task),
    }


def _pairs(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(str(row["length"]), row["task"])].append(row)
    return {key: summarise(group) for key, group in sorted(groups.items(), key=lambda kv: (int(kv[0][0]), kv[0][1]))}


def write_outputs(
    config: EvalConfig, data: EvalSet, predictions: Sequence[Prediction], usage: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write scores.json, predictions.jsonl, rejects.jsonl and the plot under `config.out`."""
    out = Path(config.out)
    rows = [p.row() for p in predictions]
    scores = compute_scores(rows)
    scores["run"] = {
        "dataset": config.dataset, "split": data.split, "model": config.endpoint.model,
        "judge": config.judge.model if config.judge else None, "lengths": config.lengths,
        "input_mode": config.input_mode, "questions": len({r["question_id"] for r in rows}),
        "documents": len(data.documents), "rejected_items": len(data.rejects), "usage": usage,
    }  # fmt: skip
    paths = {name: out / name for name in ("scores.json", "predictions.jsonl", "rejects.jsonl", PLOT_NAME)}
    atomic_write_json(paths["scores.json"], scores)
    atomic_write_text(paths["predictions.jsonl"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    rejects = "".join(r.model_dump_json() + "\n" for r in data.rejects)
    atomic_write_text(paths["rejects.jsonl"], rejects)
    if charts_available() is None:  # a broken install without matplotlib still gets its scores
        plot_chart(scores).write(paths[PLOT_NAME])  # and accuracy_vs_length.json, the plotted numbers
    return scores, paths


def plot_chart(scores: dict[str, Any]) -> Chart:
    """Accuracy against context length: one line per task and one (black, dashed) for all tasks; the title states
    the overall accuracy and how many (question, length) pairs it averages."""
    lengths = [k for k, v in scores["by_length"].items() if v["evaluated"]]
    tasks = sorted({task for entry in scores["by_length_task"].values() for task in entry})
    series: dict[str, list[float | None]] = {
        task: [scores["by_length_task"].get(n, {}).get(task, {}).get("accuracy") for n in lengths] for task in tasks
    }
    series["all"] = [scores["by_length"][n]["accuracy"] for n in lengths]
    labels = [f"{int(n) // 1024}K" if int(n) >= 1024 else n for n in lengths]
    title = f"Accuracy vs context length: {scores['accuracy']:.3f} overall over {scores['evaluated']:,} answers"
    return line_chart(labels, series, xlabel="context length (tokens, K = 1024)", ylabel="accuracy", title=title)


def scores_table(scores: dict[str, Any]) -> Any:
    """A Rich table: accuracy per task (rows) and length (columns), with the overall row and column."""
    from rich.table import Table

    lengths = list(scores["by_length"])
    table = Table(title=f"accuracy (F1 over 'Not answerable': {scores['f1']:.3f})")
    table.add_column("task")
    for length in lengths:
        table.add_column(f"{int(length) // 1024}K" if int(length) >= 1024 else length, justify="right")
    table.add_column("all", justify="right")
    for task, entry in scores["by_task"].items():
        cells = [_cell(scores["by_length_task"].get(length, {}).get(task)) for length in lengths]
        table.add_row(task, *cells, _cell(entry))
    table.add_row("all", *[_cell(scores["by_length"][length]) for length in lengths], _cell(scores), style="bold")
    return table


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("evaluated"):
        return "-"
    return f"{entry['accuracy']:.3f} ({entry['evaluated']})"
