"""The audit's figures: accuracy per task and overall with a 95% Wilson score interval, unclear counted apart.

`summarize` turns the latest verdict per QA into the summary; `save_summary` writes it to OUT/audit/report.json
and the manifest's `audit` key, and rewrites the card's hand-audit line in OUT/dataset/README.md, so the next
`push` uploads it and the next publish (which reads OUT/audit/report.json) writes it. Does not own: the verdict
file (store.py), the card's wording (hub/card.py `audit_line`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from longdocvqa.audit.sample import Run
from longdocvqa.core.store import atomic_write_json, atomic_write_text
from longdocvqa.hub.card import audit_line

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95% interval
REPORT_FILE = "report.json"
CARD_PREFIX = "- Hand audit:"


def wilson_interval(correct: int, judged: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (E. B. Wilson, 1927); (0, 1) when nothing was judged."""
    if judged == 0:
        return 0.0, 1.0
    p = correct / judged
    scale = 1 + z * z / judged
    centre = (p + z * z / (2 * judged)) / scale
    half = z * math.sqrt(p * (1 - p) / judged + z * z / (4 * judged * judged)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def tally(verdicts: list[str]) -> dict[str, Any]:
    """Counts, accuracy over correct + wrong, and its 95% Wilson interval."""
    counts = {name: verdicts.count(name) for name in ("correct", "wrong", "unclear")}
    judged = counts["correct"] + counts["wrong"]
    low, high = wilson_interval(counts["correct"], judged)
    accuracy = counts["correct"] / judged if judged else None
    return {**counts, "judged": judged, "accuracy": accuracy, "ci95": [round(low, 6), round(high, 6)]}


def summarize(
    verdicts: Mapping[str, Mapping[str, Any]], task_of: Mapping[str, str], sample: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The audit summary: overall and per task (a QA no longer published counts under 'unknown')."""
    per_task: dict[str, list[str]] = {}
    for qa_id, record in verdicts.items():
        per_task.setdefault(task_of.get(qa_id, "unknown"), []).append(record["verdict"])
    every = [v for group in per_task.values() for v in group]
    times = sorted(str(record.get("time", "")) for record in verdicts.values())
    keys = ("seed", "size", "population", "tasks", "strata", "drawn_at")
    about = {k: sample[k] for k in keys if k in sample} if sample else {}
    return {"overall": tally(every), "per_task": {task: tally(per_task[task]) for task in sorted(per_task)},
            "sample": about, "audited_at": times[-1] if times else None,
            "verdicts": len(verdicts)}  # fmt: skip


def report_lines(summary: Mapping[str, Any]) -> list[str]:
    """The report as text lines, one per task and one overall."""
    lines = [f"{'task':<16} {'correct':>7} {'wrong':>6} {'unclear':>7} {'accuracy':>9}  95% Wilson CI"]
    rows = [*summary["per_task"].items(), ("overall", summary["overall"])]
    for task, row in rows:
        accuracy = f"{100 * row['accuracy']:.1f}%" if row["accuracy"] is not None else "-"
        low, high = (100 * v for v in row["ci95"])
        lines.append(f"{task:<16} {row['correct']:>7} {row['wrong']:>6} {row['unclear']:>7} {accuracy:>9}  "
                     f"{low:.1f}-{high:.1f}%")  # fmt: skip
    lines.append(audit_line(summary).removeprefix("- "))
    return lines


def save_summary(run: Run, summary: dict[str, Any]) -> list[Path]:
    """Write the summary to OUT/audit/report.json, the manifest and the card's hand-audit line; the files written."""
    written = [run.audit_dir / REPORT_FILE]
    atomic_write_json(written[0], summary)
    manifest = run.root / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["audit"] = summary
        atomic_write_json(manifest, data)
        written.append(manifest)
    card = run.dataset / "README.md"
    if card.is_file() and refresh_card(card, summary):
        written.append(card)
    return written


def refresh_card(card: Path, summary: Mapping[str, Any] | None) -> bool:
    """Replace the card's hand-audit line; False when the card has none (written before audits existed)."""
    lines = card.read_text(encoding="utf-8").split("\n")
    at = next((i for i, line in enumerate(lines) if line.startswith(CARD_PREFIX)), None)
    if at is None:
        return False
    lines[at] = audit_line(summary)
    atomic_write_text(card, "\n".join(lines))
    return True


def saved_summary(root: Path) -> dict[str, Any] | None:
    """The last saved audit summary of run directory `root` (None before any `--report`)."""
    path = root / "audit" / REPORT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
