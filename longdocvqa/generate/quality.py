"""What a build's QA review found, for the manifest and the card: verification agreement, multi-page necessity and
the rubric judge per task, and model calls split into generation, verification and judge.

Owns: `quality_summary` (counts from the generate stage's records and rejects, so a rerun that replays everything
reports the same figures), `usage_split` (an `LLMClient.usage()` summary regrouped by role) and `quality_markdown`
(the card's paragraph). Does not own: the review itself (openai.py, verify.py, judge.py) or the card (hub/).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import QA_TASKS, QARecord, Reject

_VERIFY_REJECTS = {"unverified": "unverified", "verify_failed": "failed"}
# Task keys of the client's usage: "verify/<task>", "judge/<task>" (answer agreement) and "necessity/<task>" are
# verification, "rubric/<task>" the rubric judge, a bare task name generation.
_ROLE_OF_PREFIX = {"verify": "verification", "judge": "verification", "necessity": "verification", "rubric": "judge"}
_USAGE_KEYS = ("calls", "sent", "replayed", "prompt_tokens", "completion_tokens", "cost_usd")


def _labels(record: QARecord) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in record.verification.split(";") if part)


def _original_task(record: QARecord, labels: Mapping[str, str]) -> str:
    relabelled = labels.get("multi_page", "").startswith("single") and record.task == "extract-single"
    return "extract-multi" if relabelled else record.task


def _empty() -> dict[str, Any]:
    return {
        "verification": dict.fromkeys(("asked", "agreed_exact", "agreed_judge", "unverified", "failed"), 0),
        "multi_page": dict.fromkeys(("checked", "needed", "relabelled", "dropped"), 0),
        "judge": {"judged": 0, "kept": 0, "dropped": 0, "failed": 0, "rubric_sums": defaultdict(float)},
    }


def quality_summary(records: Iterable[QARecord], rejects: Iterable[Reject], config: GenerateConfig) -> dict[str, Any]:
    """Per QA task: verification (asked, agreed exactly, agreed by judge, unverified, failed, agreement rate),
    multi-page necessity (checked, needed, relabelled, dropped) and the judge (judged, kept, dropped, failed, drop
    rate, per-rubric means); only the parts the recipe turned on."""
    tasks: dict[str, dict[str, Any]] = defaultdict(_empty)
    for record in records:
        if record.task in QA_TASKS:
            _count_record(tasks, record)
    for reject in rejects:
        if reject.stage in ("verify", "judge") and isinstance(reject.extra.get("task"), str):
            _count_reject(tasks[str(reject.extra["task"])], reject)
    return {task: _finish(row, config) for task, row in sorted(tasks.items())}


def _count_record(tasks: dict[str, dict[str, Any]], record: QARecord) -> None:
    labels = _labels(record)
    row = tasks[_original_task(record, labels)]
    outcome = labels.get("answerability", "not_run")
    if outcome in ("exact", "judge"):
        row["verification"]["asked"] += 1
        row["verification"]["agreed_exact" if outcome == "exact" else "agreed_judge"] += 1
    if "multi_page" in labels:
        row["multi_page"]["checked"] += 1
        row["multi_page"]["needed" if labels["multi_page"] == "needed" else "relabelled"] += 1
    if record.judge_rubrics is not None:
        _add_judged(row["judge"], record.judge_rubrics, "kept")


def _count_reject(row: dict[str, Any], reject: Reject) -> None:
    if reject.reason in _VERIFY_REJECTS:
        row["verification"]["asked"] += 1
        row["verification"][_VERIFY_REJECTS[reject.reason]] += 1
    elif reject.reason == "answerable_from_one_page":
        row["verification"]["asked"] += 1
        row["verification"]["agreed_exact"] += 1  # it agreed before the one-page check dropped it
        row["multi_page"]["checked"] += 1
        row["multi_page"]["dropped"] += 1
    elif reject.reason == "below_threshold" and isinstance(scores := reject.extra.get("scores"), dict):
        _add_judged(row["judge"], scores, "dropped")
    elif reject.reason == "judge_failed":
        row["judge"]["failed"] += 1


def _add_judged(judge: dict[str, Any], scores: Mapping[str, Any], outcome: str) -> None:
    judge["judged"] += 1
    judge[outcome] += 1
    for rubric, score in scores.items():
        judge["rubric_sums"][rubric] += float(score)


def _finish(row: dict[str, Any], config: GenerateConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if config.verify.enabled:
        verify = row["verification"]
        agreed = verify["agreed_exact"] + verify["agreed_judge"]
        rate = round(agreed / verify["asked"], 4) if verify["asked"] else None
        out["verification"] = {**verify, "agreement_rate": rate}
        if config.verify.multi_page != "off":
            out["multi_page"] = row["multi_page"]
    if config.judge.enabled:
        judge = row["judge"]
        sums = judge.pop("rubric_sums")
        judged = judge["judged"]
        means = {rubric: round(sums[rubric] / judged, 3) for rubric in config.judge.rubrics} if judged else {}
        out["judge"] = {**judge, "drop_rate": round(judge["dropped"] / judged, 4) if judged else None,
                        "rubric_means": means}  # fmt: skip
    return out


def usage_split(usage: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Calls, tokens (and cost where the endpoint has prices) per QA task, split into generation, verification and
    judge, summed over the clients of `usage` ({"generator": LLMClient.usage(), "verifier": ..., "judge": ...})."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for summary in usage.values():
        for key, counts in (summary.get("by_task") or {}).items():
            prefix, _, rest = key.partition("/")
            role, task = (_ROLE_OF_PREFIX[prefix], rest) if prefix in _ROLE_OF_PREFIX and rest else ("generation", key)
            cell = out.setdefault(task, {}).setdefault(role, {})
            for name in _USAGE_KEYS:
                if name in counts:
                    cell[name] = round(cell.get(name, 0) + counts[name], 6)
    return {task: dict(sorted(roles.items())) for task, roles in sorted(out.items())}


def quality_markdown(quality: Mapping[str, Any], verifier: str | None, judge: str | None, threshold: float) -> str:
    """The card's account of the review: agreement rate per task, multi-page necessity, the judge's drop rate and
    per-rubric means; "" when nothing was reviewed."""
    lines = []
    if verifier and any("verification" in row for row in quality.values()):
        lines += [f"Verification by `{verifier}` (it sees only the evidence pages and answers the question):", "",
                  "| task | asked | agreed exactly | agreed by judge | unverified | failed | agreement rate |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for task, row in quality.items():
            v = row.get("verification")
            if v:
                rate = "n/a" if v["agreement_rate"] is None else f"{v['agreement_rate']:.1%}"
                lines.append(f"| {task} | {v['asked']} | {v['agreed_exact']} | {v['agreed_judge']} | "
                             f"{v['unverified']} | {v['failed']} | {rate} |")  # fmt: skip
        lines += _multi_page_lines(quality)
    if judge and any("judge" in row for row in quality.values()):
        lines += ["", f"Rubric judge `{judge}`, threshold {threshold:g} (weighted 1-5 score):", "",
                  "| task | judged | dropped | drop rate | rubric means |", "|---|---|---|---|---|"]  # fmt: skip
        for task, row in quality.items():
            j = row.get("judge")
            if j:
                rate = "n/a" if j["drop_rate"] is None else f"{j['drop_rate']:.1%}"
                means = ", ".join(f"{k} {v:.2f}" for k, v in j["rubric_means"].items()) or "n/a"
                lines.append(f"| {task} | {j['judged']} | {j['dropped']} | {rate} | {means} |")
    return "\n".join(lines).strip()


def _multi_page_lines(quality: Mapping[str, Any]) -> list[str]:
    rows = {task: row["multi_page"] for task, row in quality.items() if "multi_page" in row}
    if not rows:
        return []
    parts = [f"{task}: {m['checked']} checked, {m['needed']} needed several pages, {m['relabelled']} relabelled, "
             f"{m['dropped']} dropped" for task, m in rows.items()]  # fmt: skip
    return ["", "Multi-page necessity (one verifier call per evidence page): " + "; ".join(parts) + "."]
