"""The build history: one JSON line per build in OUT/runs.jsonl, and the cumulative totals the manifest keeps.

A record says when a build started and ended, how it was invoked (argv with secrets masked), which versions of
longdocvqa and its key libraries ran, where the tokenizer came from, how long each stage took, and which model
calls it paid for. Calls and cost come from the ledger (OUT/llm_calls.sqlite): a call is paid once, when it is
first answered, so summing the ledger is the cost of producing the dataset however many runs it took.
Does not own: the manifest itself (pipeline.py) or the ledger (llm/ledger.py); it only reads the ledger.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from longdocvqa import __version__
from longdocvqa.core.readback import warn
from longdocvqa.core.recipe import Recipe

RUNS_FILE = "runs.jsonl"
MASK = "***"
KEY_LIBRARIES = (
    "pymupdf", "pydantic", "openai", "datasets", "huggingface_hub", "pyarrow", "tokenizers", "numpy", "pillow",
    "transformers", "torch",
)  # fmt: skip
_SECRET_FLAG = re.compile(r"^--?[\w-]*(token|key|secret|password|passwd|auth)[\w-]*$", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|Bearer\s+\S+)")
_SECRET_ENV = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD)", re.IGNORECASE)


def masked_argv(argv: Sequence[str]) -> list[str]:
    """argv with the values of secret-looking flags, token-shaped strings and secret env values replaced by ***."""
    secrets = {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8}
    out: list[str] = []
    hide_next = False
    for arg in argv:
        flag, eq, _ = arg.partition("=")
        if hide_next:
            out.append(MASK)
        elif eq and _SECRET_FLAG.match(flag):
            out.append(f"{flag}={MASK}")
        else:
            out.append(_mask_values(arg, secrets))
        hide_next = not eq and bool(_SECRET_FLAG.match(arg))
    return out


def _mask_values(arg: str, secrets: set[str]) -> str:
    for secret in secrets:
        arg = arg.replace(secret, MASK)
    return _SECRET_VALUE.sub(MASK, arg)


def library_versions() -> dict[str, str]:
    """Installed versions of longdocvqa, Python and the key libraries (absent ones are left out; none imported)."""
    versions = {"longdocvqa": __version__, "python": sys.version.split()[0]}
    for name in KEY_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def ledger_calls(
    ledger: Path, recipe: Recipe, since: float | None = None, until: float | None = None
) -> dict[str, Any]:
    """Answered calls in the ledger (optionally those answered between `since` and `until`, epoch seconds): count,
    tokens and cost per model, priced with the recipe's endpoint prices (cost is None where no price is set)."""
    none: dict[str, Any] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": None, "by_model": {}}
    if not ledger.is_file():
        return none
    query = "SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) FROM calls"
    query += " WHERE created_at >= ? AND created_at <= ? GROUP BY model"
    db = sqlite3.connect(str(ledger), timeout=60.0)  # only SELECTs; read-only mode cannot open a WAL ledger
    try:
        rows = db.execute(query, (since or 0.0, until or float("inf"))).fetchall()
    except sqlite3.DatabaseError as exc:  # garbage or a foreign database: no calls to count, one warning line
        warn(f"{ledger}: the call ledger cannot be read ({exc}); its calls are not counted")
        return none
    finally:
        db.close()
    prices = _prices(recipe)
    by_model = {model: _priced(int(n), int(p or 0), int(c or 0), prices.get(model)) for model, n, p, c in sorted(rows)}
    costs = [m["cost_usd"] for m in by_model.values() if m["cost_usd"] is not None]
    return {
        "calls": sum(m["calls"] for m in by_model.values()),
        "prompt_tokens": sum(m["prompt_tokens"] for m in by_model.values()),
        "completion_tokens": sum(m["completion_tokens"] for m in by_model.values()),
        "cost_usd": round(sum(costs), 6) if costs else None,
        "by_model": by_model,
    }


def _prices(recipe: Recipe) -> dict[str, tuple[float, float]]:
    endpoints = [recipe.generate.generator.endpoint, recipe.generate.verify.endpoint]
    return {
        e.model: (e.price_input_per_mtok or 0.0, e.price_output_per_mtok or 0.0)
        for e in endpoints
        if e is not None and (e.price_input_per_mtok is not None or e.price_output_per_mtok is not None)
    }


def _priced(calls: int, prompt: int, completion: int, price: tuple[float, float] | None) -> dict[str, Any]:
    cost = None if price is None else round((prompt * price[0] + completion * price[1]) / 1e6, 6)
    return {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost}


def run_record(
    *, started_at: str, finished_at: str, seconds: float, manifest: Mapping[str, Any], calls: Mapping[str, Any],
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One line of runs.jsonl."""
    stages = manifest.get("stages", {})
    return {
        "started_at": started_at,
        "finished_at": finished_at,
        "seconds": round(seconds, 3),
        "argv": masked_argv(sys.argv if argv is None else argv),
        "recipe_fingerprint": manifest.get("recipe_fingerprint"),
        "versions": library_versions(),
        "tokenizer_source": stages.get("assemble", {}).get("tokenizer_source"),
        "stage_seconds": {name: stage.get("seconds", 0.0) for name, stage in stages.items()},
        "examples": manifest.get("examples", 0),
        "calls": dict(calls),
    }


def append_run(run_root: Path, record: Mapping[str, Any]) -> Path:
    """Append `record` as one line of OUT/runs.jsonl (flushed to disk: the history survives a crash after it)."""
    path = run_root / RUNS_FILE
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def read_runs(run_root: Path) -> list[dict[str, Any]]:
    """Every record of OUT/runs.jsonl (a torn last line, from a crash while appending, is skipped)."""
    path = run_root / RUNS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def cumulative(runs: Sequence[Mapping[str, Any]], all_calls: Mapping[str, Any]) -> dict[str, Any]:
    """What producing the dataset took over every run: runs, wall seconds, seconds per stage, and the ledger's
    paid calls, tokens and cost."""
    stage_seconds: dict[str, float] = {}
    for run in runs:
        for name, seconds in run.get("stage_seconds", {}).items():
            stage_seconds[name] = round(stage_seconds.get(name, 0.0) + seconds, 3)
    return {
        "runs": len(runs),
        "first_started_at": runs[0]["started_at"] if runs else None,
        "seconds": round(sum(r.get("seconds", 0.0) for r in runs), 3),
        "stage_seconds": stage_seconds,
        "calls": dict(all_calls),
    }
