"""The plan stage: model calls, layout and rendering grow with the dataset asked for, not with the pool.

Pure planner checks on real page sizes, then builds against the scripted OpenAI-compatible server on the 67
shared PDFs (../shared/pdfs beside the clone), counting the HTTP requests it receives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)

from longdocvqa.assembly.planning import DocSize, Planner, dry_streams
from longdocvqa.assembly.sampling import Candidate
from longdocvqa.core.fingerprint import file_sha256
from longdocvqa.core.recipe import Recipe, load_recipe, parse_recipe
from longdocvqa.documents import render
from longdocvqa.pipeline import build, plan_with_units

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pdfs"
LETTER, A4, POSTER = (612.0, 792.0), (595.0, 842.0), (2384.0, 3370.0)


# The demo recipe is CPU-sized (64 tokens per page, 1K-4K window); the figures are stated for the paper's
# pages and window, which the shared PDFs' 32-50-page documents fill (70K-130K tokens).
PAPER_WINDOW = {"min_pixels": 3136, "max_pixels": 12_845_056, "min_tokens": 32_768, "max_tokens": 131_072}
PAPER_DPI = {"dpi": 144}  # the paper's pages (write_recipe renders at 72 DPI otherwise)


def _recipe(**assemble: object) -> Recipe:
    data = {"name": "plan-test", "version": "0.1.0", "pool": {"paths": ["unused"]},
            "assemble": {"budget_tokens": 2_000_000, **assemble}}  # fmt: skip
    return parse_recipe(data)


def _pool(count: int) -> list[DocSize]:
    """Documents of 20-60 letter or A4 pages, named by their index; every 7th is a poster (too long)."""
    docs = []
    for i in range(count):
        size = POSTER if i % 7 == 0 else (LETTER if i % 2 else A4)
        docs.append(DocSize(f"{i:064x}", f"/pool/doc-{i}.pdf", ((*size, 20 + i % 41),)))
    return docs


def _units(planner: Planner) -> list[tuple[str, str]]:
    return [(u.sha256, u.task) for u in planner.initial().units]


def test_plan_is_deterministic_and_independent_of_input_order() -> None:
    docs = _pool(300)
    first = _units(Planner(docs, _recipe()))
    assert first == _units(Planner(list(reversed(docs)), _recipe()))
    assert first != _units(Planner(docs, _recipe().model_copy(update={"seed": 1})))


def test_raising_the_budget_extends_the_plan_and_lowering_it_takes_a_subset() -> None:
    docs = _pool(400)
    budgets = (500_000, 2_000_000, 6_000_000)
    small, base, large = (set(_units(Planner(docs, _recipe(budget_tokens=b)))) for b in budgets)
    assert small < base < large


def test_window_drops_documents_before_rendering_naming_the_file() -> None:
    docs = _pool(50)
    planner = Planner(docs, _recipe())
    plan = planner.initial()
    rejects = planner.rejects(plan)
    window = {r.item for r in rejects if r.reason == "window"}
    assert {f"/pool/doc-{i}.pdf" for i in range(0, 50, 7)} <= window  # posters: far beyond 131,072 tokens
    assert not window & {d.path for d in docs if d.sha256 in plan.documents()}
    accounted = window | {r.item for r in rejects if r.reason == "budget"}
    assert accounted | {d.path for d in docs if d.sha256 in plan.documents()} == {d.path for d in docs}


def test_plan_follows_the_mixture_and_covers_the_budget_with_its_margin() -> None:
    docs = _pool(2000)
    recipe = _recipe(budget_tokens=20_000_000)
    planner = Planner(docs, recipe)
    forecast = planner.forecast(planner.initial())
    total = sum(row["example_tokens"] for row in forecast.values())
    assert 20_000_000 * 1.1 <= total <= 20_000_000 * 1.1 + 131_072
    for task, share in recipe.assemble.mixture.items():
        assert abs(forecast[task]["example_tokens"] / total - share) < 0.01
    everything = planner.generate_everything_calls()
    assert everything == 0  # the template generator calls no model
    assert sum(row["documents"] for row in forecast.values()) < len(docs)


def test_no_budget_plans_every_document_in_the_window() -> None:
    docs = _pool(100)
    planner = Planner(docs, _recipe(budget_tokens=None))
    inside = [d for d, r in zip(planner.docs, planner.window_rejects, strict=True) if r is None]
    assert planner.initial().documents() == {d.sha256 for d in inside}


def test_a_stream_short_of_its_share_draws_its_next_units() -> None:
    planner = Planner(_pool(400), _recipe())
    plan = planner.initial()
    tokens = {d.sha256: int(n) for d, n in zip(planner.docs, planner.tokens, strict=True)}
    real = [Candidate(f"{u.sha256}/{u.task}", u.task, tokens[u.sha256], 40, 0.5, u.sha256) for u in plan.units]
    assert dry_streams(real, planner) == {}  # every stream has more than its share: no top-up
    without_single = [c for c in real if c.task != "extract-single"]
    deficits = dry_streams(without_single, planner)
    assert set(deficits) == {"extract-single"} and deficits["extract-single"] == 0.4 * 2_000_000
    more = planner.more(plan, deficits, 1)
    assert {u.task for u in more} == {"extract-single"} and {u.round for u in more} == {1}
    assert not {(u.sha256, u.task) for u in more} & {(u.sha256, u.task) for u in plan.units}
    assert sum(tokens[u.sha256] for u in more) >= 0.4 * 2_000_000 * 1.1
    assert more == planner.more(plan, deficits, 1)  # the same seeded order every time


@pytest.mark.slow
def test_dry_run_prints_calls_prompt_tokens_and_cost_per_task(write_recipe, pdf_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from longdocvqa.cli import app

    endpoint = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None, "price_input_per_mtok": 0.5,
                "price_output_per_mtok": 1.5}  # fmt: skip
    path = write_recipe([str(pdf_dir)], generate={"generator": {"kind": "openai", "endpoint": endpoint}},
                        render=PAPER_DPI, assemble={**PAPER_WINDOW, "budget_tokens": 400_000})  # fmt: skip
    command = ["build", str(path), "--dry-run", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, command, env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    calls = result.output[result.output.index("model calls the plan needs") :]
    rows = {line.split()[1]: line.split("│") for line in calls.splitlines() if line.startswith("│ extract")}
    assert set(rows) == {"extract-single", "extract-multi"} and "cost (USD)" in calls, result.output
    assert all(int(row[3].replace(",", "")) >= 1 and float(row[-2]) > 0 for row in rows.values())
    assert "model calls vs" in result.output and "pool documents" in result.output
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


# ---------------------------------------------------------------------------------------------- builds


def _endpoint(server) -> dict:
    return {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 5.0, "max_retries": 1,
            "price_input_per_mtok": 0.5, "price_output_per_mtok": 1.5}  # fmt: skip


def _slices(folder: Path, count: int) -> Path:
    """`count` new 40-page PDFs: the first 40 pages of shared PDFs longer than the pool's 50-page limit."""
    folder.mkdir()
    rows = [line.split("\t") for line in (SHARED / "pdfs.tsv").read_text().splitlines()[1:]]
    long = sorted((r[0], r[1]) for r in rows if int(r[2]) > 50)[:count]
    for package, name in long:
        doc, new = pymupdf.open(SHARED / package / name), pymupdf.open()
        new.insert_pdf(doc, from_page=0, to_page=39)
        new.save(folder / f"first40-{name}")
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "pdfs.tsv").is_file(), reason="needs ../shared/pdfs beside the clone")
def test_requests_grow_with_the_dataset_not_with_the_pool(server, write_recipe, tmp_path) -> None:
    def recipe(paths: list[str]):
        return load_recipe(write_recipe(
            paths, generate={"generator": {"kind": "openai", "endpoint": _endpoint(server)}, "input_mode": "text"},
            render=PAPER_DPI, assemble={**PAPER_WINDOW, "budget_tokens": 300_000},
        ))  # fmt: skip

    out = tmp_path / "out"
    manifest = build(recipe([str(SHARED)]), out, workers=2)
    first = server.requests
    kept = manifest["examples"]
    assert kept >= 2 and first <= 1.5 * kept + 2, (first, kept)
    plan = manifest["stages"]["plan"]
    assert plan["kept"] < plan["seen"] and plan["calls"]  # predicted vs actual, per task
    assert all(row["actual_calls"] >= 1 for row in plan["calls"].values())
    _every_document_accounted(out, manifest)

    build(recipe([str(SHARED)]), out, workers=1)
    assert server.requests == first  # rerun: the stored plan, stored QA, the ledger; nothing asked twice

    extra = _slices(tmp_path / "extra", 20)
    build(recipe([str(SHARED), str(extra)]), tmp_path / "bigger", workers=2)
    assert abs((server.requests - first) - first) <= 2, (first, server.requests - first)


@pytest.mark.slow
def test_drops_beyond_the_margin_are_topped_up_in_rounds(server, write_recipe, pdf_dir, tmp_path) -> None:
    from openai_server import _prompt_text

    generate = {"generator": {"kind": "openai", "endpoint": _endpoint(server)}, "input_mode": "text"}
    recipe = load_recipe(
        write_recipe(
            [str(pdf_dir)], generate=generate, render=PAPER_DPI, assemble={**PAPER_WINDOW, "budget_tokens": 400_000}
        )
    )
    _, planner, initial = plan_with_units(recipe)
    paths = {d.sha256: d.path for d in planner.docs}
    doomed = {paths[u.sha256] for u in initial.units if u.task == "extract-single"}
    lines = {path: _long_lines(path) for path in doomed}

    def policy(index: int, body: dict) -> str:  # every extract-single QA of the initially planned documents fails
        prompt = _prompt_text(body["messages"])
        hit = any(sum(line in prompt for line in doc_lines) >= 10 for doc_lines in lines.values())
        return "bad_evidence" if "Single-Page Focus" in prompt and hit else "ok"

    server.policy = policy
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1)
    plan = manifest["stages"]["plan"]
    summary = manifest["stages"]["assemble"]["summary"]
    assert plan["rounds"] >= 1 and summary["shortfall"] is None and summary["per_task"]["extract-single"]["examples"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["item"].split(" ")[0] for r in rejects if r["stage"] == "generate"} == doomed
    stored = json.loads((out / "plan.json").read_text())
    assert {u["round"] for u in stored["units"]} >= {0, 1}
    requests = server.requests
    again = build(recipe, out, workers=1)
    assert server.requests == requests and again["stages"]["plan"]["reused"] == 1  # the stored plan, no new calls
    assert again["examples"] == manifest["examples"]


@pytest.mark.slow
def test_raising_the_budget_pays_only_for_new_units_and_lowering_it_pays_nothing(
    server, write_recipe, pdf_dir, tmp_path
) -> None:
    generate = {"generator": {"kind": "openai", "endpoint": _endpoint(server)}, "input_mode": "text"}

    def run(budget: int) -> tuple[int, set[tuple[str, str]]]:
        recipe = load_recipe(
            write_recipe(
                [str(pdf_dir)], generate=generate, render=PAPER_DPI, assemble={**PAPER_WINDOW, "budget_tokens": budget}
            )
        )
        before = server.requests
        build(recipe, tmp_path / "out", workers=1)
        units = json.loads((tmp_path / "out" / "plan.json").read_text())["units"]
        return server.requests - before, {(u["sha256"], u["task"]) for u in units}

    first, small = run(250_000)
    second, large = run(500_000)
    assert small < large and first == len(small) and second == len(large - small)  # one call per new unit
    third, again = run(250_000)
    assert again == small and third == 0  # a subset: every call replayed from the ledger


def _long_lines(path: str) -> set[str]:
    return {line.strip() for text in render.page_texts(path) for line in text.splitlines() if len(line.strip()) > 30}


def _every_document_accounted(out: Path, manifest: dict) -> None:
    """Each pool document is in the dataset or has a reject line naming its file; QA rejects name their file."""
    import pyarrow.parquet as pq

    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    used = set()
    for shard in (out / "dataset").rglob("*.parquet"):
        if "documents" in shard.parts:
            used |= set(pq.read_table(shard, columns=["sha256"]).column("sha256").to_pylist())
    named = {r["item"].split(" ")[0] for r in rejects}
    missing = [p for p in SHARED.rglob("*.pdf") if file_sha256(p) not in used and str(p.resolve()) not in named]
    assert used and not missing, missing
    assert all(r["item"].startswith("/") for r in rejects if r["stage"] in ("generate", "assemble", "plan"))
    assert any(r["reason"] == "budget" for r in rejects)
