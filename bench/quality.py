"""Planted-error benchmark (issue 24): how many wrong QA the checks, the verifier and the rubric judge let through.

A loopback OpenAI-compatible server (tests/openai_server.py's ScriptedOpenAI) writes QA and makes a chosen share of
them wrong in six ways; its verifier and judges answer from the page texts they are shown (never from what it
generated). The same pool is built three times into one run folder (generation calls replayed from the ledger, so
all three see the very same QA; hence one question per segment and task, as a series' later prompt lists the
earlier questions kept): checks only, checks + verification, checks + rubric judge. Per error kind it
reports the share of planted QA published in the `qa` config, and the share of clean QA kept relative to checks
only. Targets with verification on: at most 2% of planted errors published, at least 95% of clean QA kept.

    PYTHONPATH=. .venv/bin/python bench/quality.py --pdfs ../shared/pdfs --share 0.4 --out /tmp/quality
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from openai_server import ScriptedOpenAI, candidate_lines  # noqa: E402

from longdocvqa.core.recipe import parse_recipe  # noqa: E402

KINDS = {  # error kinds that fit each task's QA
    "extract-single": ("same_page_swap", "fabricated", "outside_segment", "wrong_page", "wrong_format"),
    "extract-multi": ("same_page_swap", "fabricated", "outside_segment", "wrong_format"),
    "reasoning": ("wrong_count", "outside_segment"),
}
CONFIGS = {
    "checks": {"verify": {"enabled": False}, "judge": {"enabled": False}},
    "verify": {"verify": {"enabled": True}, "judge": {"enabled": False}},
    "judge": {"verify": {"enabled": False}, "judge": {"enabled": True}},
}


class PlantingServer(ScriptedOpenAI):
    """The scripted server, planting an error in a seeded `share` of generation items (fixed per item: re-asks of
    the same prompt keep the kind); `items` maps each question it wrote to (item, kind)."""

    def __init__(self, share: float, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.share, self.seed = share, seed
        self.questions: dict[tuple[str, str], tuple[str, str]] = {}  # (question, answer) -> (item, kind)
        self.item_kind: dict[str, str] = {}
        self._plant_lock = threading.Lock()

    def plant(self, body: dict[str, Any], qa: dict[str, Any]) -> dict[str, Any]:
        item = hashlib.sha256(json.dumps(body["messages"][:2], sort_keys=True).encode()).hexdigest()[:16]
        rng = random.Random(f"{self.seed}/{item}")
        task = _task_of(body)
        kind = rng.choice(KINDS[task]) if rng.random() < self.share else "clean"
        if kind != "clean":  # a kind that does not fit this QA falls back to a fabricated answer (always plantable)
            texts = self.page_texts(body["messages"])
            planted = _corrupt(qa, kind, texts, rng)
            kind, qa = (
                (kind, planted) if planted is not None else ("fabricated", _corrupt(qa, "fabricated", texts, rng))
            )
        with self._plant_lock:
            self.questions[(qa["question"], _answer_text(qa["answer"]))] = (item, kind)
            self.item_kind[item] = kind
        return qa


def _answer_text(answer: str | list[str]) -> str:
    """The answer as the qa config stores it (a List as its JSON text)."""
    return json.dumps(answer, ensure_ascii=False) if isinstance(answer, list) else answer


def _task_of(body: dict[str, Any]) -> str:
    prompt = json.dumps(body["messages"][:2])
    return "reasoning" if "Non-Trivial Synthesis" in prompt else "extract-multi" if "Multi-Page" in prompt else (
        "extract-single")  # fmt: skip


def _other_line(text: str, not_these: list[str], rng: random.Random) -> str | None:
    lines = [b for _, b in candidate_lines(text) if b not in not_these]
    return rng.choice(lines) if lines else None


def _corrupt(qa: dict[str, Any], kind: str, texts: dict[int, str], rng: random.Random) -> dict[str, Any] | None:
    """`qa` with one planted error of `kind`; None where that kind cannot be planted in it (no second line on the
    page, no neighbouring page, a count that is not a number, an answer that already is an integer)."""
    page, answer = qa["evidence_pages"][0], qa["answer"]
    items = answer if isinstance(answer, list) else [answer]
    if kind == "same_page_swap":  # a plausible answer: another line of the same page
        other = _other_line(texts.get(page, ""), items, rng)
        return None if other is None else {**qa, "answer": [other, *items[1:]] if isinstance(answer, list) else other}
    if kind == "fabricated":
        made_up = "the quarterly compliance ledger is reconciled by the steering committee"
        return {**qa, "answer": [made_up, *items[1:]] if isinstance(answer, list) else made_up}
    if kind == "outside_segment":
        return {**qa, "evidence_pages": [max(texts) + 3 + rng.randrange(20)]}
    if kind == "wrong_page":  # question and evidence point at a neighbouring page without the quoted line
        neighbour = next((p for p in (page + 1, page - 1) if p in texts), None)
        if neighbour is None or f"On Page {page}," not in qa["question"]:
            return None
        question = qa["question"].replace(f"On Page {page},", f"On Page {neighbour},")
        return {**qa, "question": question, "evidence_pages": [neighbour]}
    if kind == "wrong_format":  # a word given as an Integer; a List flattened into a String
        if isinstance(answer, list):
            return {**qa, "answer": "; ".join(answer), "answer_format": "String"}
        return None if answer.strip().lstrip("+-").isdigit() else {**qa, "answer_format": "Integer"}
    if kind == "wrong_count" and str(answer).isdigit():  # a wrong computed answer
        return {**qa, "answer": str(int(answer) + rng.choice((1, 2, 3)))}
    return None


def recipe_for(
    pdfs: str, server: ScriptedOpenAI, review: dict[str, Any], per_document: int, questions: int,
    input_mode: str = "text",
) -> Any:  # fmt: skip
    endpoint = {"base_url": server.base_url, "model": "scripted-vlm", "api_key_env": None, "timeout_s": 30.0,
                "max_concurrency": 16}  # fmt: skip
    judge_endpoint = {**endpoint, "model": "scripted-judge"}
    generate: dict[str, Any] = {
        "generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": input_mode,
        "questions_per_segment": questions,
        "verify": review["verify"], "judge": {**review["judge"], "endpoint": judge_endpoint},
    }  # fmt: skip
    return parse_recipe({
        "name": "quality-bench", "version": "0.1.0", "pool": {"paths": [pdfs], "min_pages": 8, "max_pages": 1000},
        "render": {"dpi": 36, "quality": 50}, "segment": {"per_document": per_document},
        "decontaminate": {"within_pool": False}, "generate": generate,
        "assemble": {"min_tokens": 1, "max_tokens": 131072, "budget_tokens": None, "max_pixels": 50176},
        "isolation": {"seconds_per_document": 0},
    })  # fmt: skip


def published_items(out: Path, server: PlantingServer) -> set[str]:
    import pyarrow.parquet as pq

    rows = [row for f in (out / "dataset" / "data" / "qa").glob("*.parquet")
            for row in pq.read_table(f, columns=["question", "answer"]).to_pylist()]  # fmt: skip
    keys = {(row["question"], row["answer"]) for row in rows}
    return {server.questions[key][0] for key in keys if key in server.questions}


def run_bench(
    pdfs: str, out: Path, share: float, seed: int = 0, per_document: int = 4, questions: int = 1,
    input_mode: str = "text",
) -> dict:  # fmt: skip
    """Build the pool three times through one planting server; per error kind, the share published per config."""
    from longdocvqa.pipeline import build

    server = PlantingServer(share, seed).start()
    published: dict[str, set[str]] = {}
    seconds: dict[str, float] = {}
    manifests: dict[str, Any] = {}
    try:
        for name, review in CONFIGS.items():
            started = time.perf_counter()
            recipe = recipe_for(pdfs, server, review, per_document, questions, input_mode)
            manifests[name] = build(recipe, out, workers=2)
            seconds[name] = round(time.perf_counter() - started, 1)
            published[name] = published_items(out, server)
            shutil.copyfile(out / "rejects.jsonl", out / f"rejects-{name}.jsonl")
    finally:
        server.stop()
    return summarise(server.item_kind, published, seconds, manifests)


def summarise(item_kind: dict[str, str], published: dict[str, set[str]], seconds: dict[str, float],
              manifests: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    kinds = sorted({k for k in item_kind.values()})
    table: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        items = {i for i, k in item_kind.items() if k == kind}
        row: dict[str, Any] = {"planted": len(items)}
        for name in CONFIGS:
            row[f"published_{name}"] = len(items & published[name])
            row[f"share_{name}"] = round(len(items & published[name]) / len(items), 4) if items else None
        table[kind] = row
    planted = {i for i, k in item_kind.items() if k != "clean"}
    clean_checks = {i for i, k in item_kind.items() if k == "clean"} & published["checks"]
    totals = {
        name: {
            "planted_published_share": round(len(planted & published[name]) / max(1, len(planted)), 4),
            "clean_kept_vs_checks": round(len(clean_checks & published[name]) / max(1, len(clean_checks)), 4),
        }
        for name in CONFIGS
    }
    calls = {name: m["stages"]["generate"].get("calls_by_role", {}) for name, m in manifests.items()}
    quality = {name: m["stages"]["generate"].get("quality", {}) for name, m in manifests.items()}
    return {"by_kind": table, "totals": totals, "seconds": seconds, "calls_by_role": calls, "quality": quality}


def markdown(result: dict[str, Any]) -> str:
    head = "| kind | planted | published, checks only | with verification | with judge |\n|---|---|---|---|---|"
    rows = [f"| {kind} | {r['planted']} | " + " | ".join(
        f"{r[f'published_{n}']} ({r[f'share_{n}']:.1%})" for n in CONFIGS) + " |"
        for kind, r in result["by_kind"].items()]  # fmt: skip
    totals = result["totals"]
    rows.append("| **all planted** | | " + " | ".join(f"{totals[n]['planted_published_share']:.1%}" for n in CONFIGS)
                + " |")  # fmt: skip
    rows.append("| **clean kept vs checks** | | " + " | ".join(
        f"{totals[n]['clean_kept_vs_checks']:.1%}" for n in CONFIGS) + " |")  # fmt: skip
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdfs", default=str(Path(__file__).resolve().parents[2] / "shared" / "pdfs"))
    parser.add_argument("--share", type=float, default=0.4, help="share of generation items given a planted error")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-document", type=int, default=4, help="segments per document")
    parser.add_argument(
        "--questions",
        type=int,
        default=1,
        help="questions per segment and task (above 1, a later "
        "question's prompt lists the earlier ones kept, so the builds no longer ask the same QA)",
    )
    parser.add_argument(
        "--input-mode",
        choices=("text", "images+text"),
        default="text",
        help="what the generator, verifier and judge are sent: page texts, or rendered "
        "page images with their texts (pages rendered; the loopback server reads the texts)",
    )
    args = parser.parse_args()
    result = run_bench(args.pdfs, args.out, args.share, args.seed, args.per_document, args.questions, args.input_mode)
    (args.out / "quality.json").write_text(json.dumps(result, indent=1))
    print(markdown(result))
    print(json.dumps({"totals": result["totals"], "seconds": result["seconds"]}, indent=1))
    ok = result["totals"]["verify"]
    met = ok["planted_published_share"] <= 0.02 and ok["clean_kept_vs_checks"] >= 0.95
    print(f"targets with verification (<= 2% planted published, >= 95% clean kept): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
