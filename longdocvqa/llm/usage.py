"""Token usage and cost of a client's calls, per task, and the sum of several clients' summaries.

Owns: `TaskUsage` counters, the usage summary of one client (calls sent and replayed, tokens, cost from the
endpoint's prices) and `merge_usage` (client processes sharing an endpoint). Does not own: the ledger's
totals over all runs (core/history.py reads them from the ledger).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from longdocvqa.core.recipe_generate import EndpointConfig


@dataclass
class TaskUsage:
    """Calls and tokens of one task (replayed calls count tokens once paid, not new requests)."""

    calls: int = 0
    sent: int = 0
    replayed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


def merge_usage(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two `LLMClient.usage()` summaries as one (client processes sharing an endpoint): numbers add up."""
    merged = dict(a)
    for key, value in b.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict):
            merged[key] = merge_usage(merged[key], value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = round(merged[key] + value, 6) if isinstance(value, float) else merged[key] + value
    return merged


def usage_summary(
    endpoint: EndpointConfig, usage: dict[str, TaskUsage], errors: Counter[str], outcomes: Counter[str], decreases: int
) -> dict[str, Any]:
    """Calls, tokens and cost per task and in total, failed attempts by kind, reply outcomes, AIMD decreases."""
    ep = endpoint
    by_task = {task: vars(u).copy() for task, u in sorted(usage.items())}
    totals = {k: sum(u[k] for u in by_task.values()) for k in vars(TaskUsage())}
    summary: dict[str, Any] = {"model": ep.model, **totals, "by_task": by_task}
    if ep.price_input_per_mtok is not None or ep.price_output_per_mtok is not None:
        for entry in [summary, *by_task.values()]:
            entry["cost_usd"] = round(
                entry["prompt_tokens"] * (ep.price_input_per_mtok or 0.0) / 1e6
                + entry["completion_tokens"] * (ep.price_output_per_mtok or 0.0) / 1e6,
                6,
            )
    summary["errors"] = dict(sorted(errors.items()))
    summary["outcomes"] = dict(sorted(outcomes.items()))
    summary["throttle_decreases"] = decreases
    return summary
