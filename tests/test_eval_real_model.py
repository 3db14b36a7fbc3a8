"""`longdocvqa eval` against a real model server: llama.cpp (xllamacpp) serving SmolLM2-135M-Instruct on loopback,
text-only input (page text of real PDFs), end to end through the CLI.

A 135M model answers badly, so this checks the real protocol and the whole path (prompt, call, extraction, scoring,
outputs, ledger replay), not the accuracy; accuracy is tested with the scripted server (test_eval.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import QUESTIONS, make_benchmark
from typer.testing import CliRunner

from longdocvqa.cli import app

xserve = pytest.importorskip("xserve")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(xserve.missing() is not None, reason=str(xserve.missing()))]

LENGTHS = (1024, 1536)  # Qwen2.5-VL tokens; SmolLM2's own count is similar, within the server's 8K context
EXCERPTS = {
    "latexbug.pdf": 1,
    "ulineno.pdf": 1,
    "brief.pdf": 1,
}  # one real page each: a 2-core CPU reads ~100 tokens/s
SMALL = [{**q, "evidence_pages": "[1]"} for q in QUESTIONS if q["doc_id"] == "latexbug.pdf"]


def test_eval_end_to_end_through_llama_cpp(tmp_path: Path) -> None:
    bench = make_benchmark(tmp_path / "bench", excerpts=EXCERPTS, questions=SMALL)
    out = tmp_path / "out"
    with xserve.llama_server() as url:
        args = ["eval", str(bench), "--base-url", url, "--model", xserve.MODEL_ALIAS, "--out", str(out),
                "--lengths", ",".join(map(str, LENGTHS)), "--input", "text", "--max-tokens", "16",
                "--max-concurrency", "1", "--timeout-s", "600"]  # fmt: skip
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    scores = json.loads((out / "scores.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(SMALL) * len(LENGTHS)
    evaluated = [r for r in rows if not r["skipped"]]
    assert evaluated and scores["evaluated"] == len(evaluated) and scores["failed_calls"] == 0
    assert all(r["raw_answer"] and r["score"] is not None and r["prompt_tokens"] <= r["length"] for r in evaluated)
    assert set(scores["by_length"]) == {str(n) for n in LENGTHS}
    assert all(0.0 <= r["score"] <= 1.0 for r in evaluated)
    # the aggregate is the mean of the per-row scores, overall and per length
    assert scores["accuracy"] == pytest.approx(sum(r["score"] for r in evaluated) / len(evaluated), abs=1e-6)
    for length, entry in scores["by_length"].items():
        mine = [r["score"] for r in evaluated if str(r["length"]) == length]
        assert entry["evaluated"] == len(mine)
        if mine:
            assert entry["accuracy"] == pytest.approx(sum(mine) / len(mine), abs=1e-6)
    usage = scores["run"]["usage"]["model"]
    assert usage["sent"] == 0 and usage["replayed"] == len(evaluated)  # the second run replayed every call
    assert usage["prompt_tokens"] > 500 * len(evaluated)  # the server's own count: full documents were sent
    assert "replayed" in again.output and (out / "accuracy_vs_length.png").is_file()
