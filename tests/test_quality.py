"""The QA review through the scripted loopback server, whose verifier and judges answer from the pages they are
shown (issue 28 item 1): verification catches a wrong generator and agrees with a right one, the rubric judge
scores and filters, multi-page necessity relabels or drops QA one page can answer, schema-mode replies fit the
schema sent, and a loopback build reports agreement, judge figures and calls by role (issue 24)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from llm_fixtures import generate_config, real_document
from openai_server import ScriptedOpenAI, candidate_lines

from longdocvqa.core.recipe import load_recipe
from longdocvqa.core.records import QARecord, Reject
from longdocvqa.generate.document import generate_document, open_clients, open_judge
from longdocvqa.generate.quality import quality_summary
from longdocvqa.pipeline import build

TASKS = ["extract-single", "extract-multi", "reasoning"]


class SwappingServer(ScriptedOpenAI):
    """Writes plausible wrong QA: every answer swapped for another line of the same page, every count off by one."""

    def plant(self, body: dict[str, Any], qa: dict[str, Any]) -> dict[str, Any]:
        texts, page = self.page_texts(body["messages"]), qa["evidence_pages"][0]
        if qa["answer_format"] == "Integer":
            return {**qa, "answer": str(int(qa["answer"]) + 1)}
        items = qa["answer"] if isinstance(qa["answer"], list) else [qa["answer"]]
        pages = [page, *sorted(texts)]  # the same page first
        other = next(b for p in pages for _, b in candidate_lines(texts[p]) if b not in items)
        return {**qa, "answer": [other, *items[1:]] if isinstance(qa["answer"], list) else other}


class OnePageServer(ScriptedOpenAI):
    """Its extract-multi QA cite two pages but ask about a line of the first alone (answerable from one page)."""

    def plant(self, body: dict[str, Any], qa: dict[str, Any]) -> dict[str, Any]:
        if qa["answer_format"] != "List":
            return qa
        texts, (first, second) = self.page_texts(body["messages"]), qa["evidence_pages"]
        before, line = candidate_lines(texts[first])[0]
        question = f'On Page {first}, which line directly follows the line "{before}"?'
        return {
            **qa,
            "question": question,
            "answer": line,
            "answer_format": "String",
            "evidence_pages": [first, second],
        }


@pytest.fixture
def serve():
    started: list[ScriptedOpenAI] = []

    def _start(kind: type[ScriptedOpenAI] = ScriptedOpenAI) -> ScriptedOpenAI:
        started.append(kind().start())
        return started[-1]

    yield _start
    for server in started:
        server.stop()


def run(config, ledger: Path | None = None, name: str = "R-data.pdf") -> tuple[list[QARecord], list[Reject]]:
    doc, layout, segments = real_document(name)
    client, verifier = open_clients(config, str(ledger) if ledger else None, backoff_base_s=0.01)
    judge = open_judge(config, client, backoff_base_s=0.01)

    async def go():
        try:
            return await generate_document(doc, layout, segments, config, 0, client, None, verifier=verifier,
                                            judge=judge)  # fmt: skip
        finally:
            for c in (client, verifier, judge):
                if c is not None:
                    await c.aclose()

    return asyncio.run(go())


@pytest.mark.slow
def test_the_verifier_catches_a_wrong_generator(serve) -> None:
    server = serve(SwappingServer)
    records, rejects = run(generate_config(server, verify={"enabled": True}))
    assert records == [] and len(rejects) == 3
    assert {r.reason for r in rejects} == {"unverified"} and {r.extra["task"] for r in rejects} == set(TASKS)
    assert server.schema_errors == []


@pytest.mark.slow
def test_a_verifier_that_echoes_the_generator_would_let_the_wrong_qa_through(serve) -> None:
    """What the test above guards against: the old circular verifier (its own answers from memory) agrees."""
    server = serve(SwappingServer)
    server.verifier_echo = True
    records, rejects = run(generate_config(server, verify={"enabled": True}))
    assert len(records) == 3 and rejects == []


@pytest.mark.slow
def test_the_verifier_agrees_with_a_right_generator(serve) -> None:
    server = serve()
    records, rejects = run(generate_config(server, verify={"enabled": True}), name="etoolbox.pdf")
    assert rejects == [] and len(records) == 3
    assert all("answerability=exact" in r.verification or "answerability=judge" in r.verification for r in records)
    quality = quality_summary(records, rejects, generate_config(server, verify={"enabled": True}))
    assert {t: q["verification"]["agreement_rate"] for t, q in quality.items()} == dict.fromkeys(TASKS, 1.0)


@pytest.mark.slow
def test_the_judge_scores_from_the_pages_and_drops_wrong_qa_naming_the_rubric(serve, tmp_path) -> None:
    right, wrong = serve(), serve(SwappingServer)
    judge = {"enabled": True, "endpoint": {"base_url": right.base_url, "model": "judge", "api_key_env": None}}
    config = generate_config(wrong, judge=judge)
    records, rejects = run(config)
    assert (
        records == []
        and {r.reason for r in rejects} == {"below_threshold"}
        and {r.stage for r in rejects} == {"judge"}
    )
    assert {r.extra["rubric"] for r in rejects} == {"grounded_correct"}
    assert all("failing rubric grounded_correct (1/5)" in r.detail for r in rejects)
    config = generate_config(right, judge={**judge, "rubrics": {"grounded_correct": 0.5, "needs_document": 0.5}})
    records, rejects = run(config, ledger=tmp_path / "ledger.sqlite")
    assert rejects == [] and len(records) == 3
    assert all(r.judge_score == 5.0 and r.judge_rubrics == {"grounded_correct": 5, "needs_document": 5}
               for r in records)  # fmt: skip
    asked = right.requests
    assert run(config, ledger=tmp_path / "ledger.sqlite")[0] == records and right.requests == asked  # replayed


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["relabel", "drop"])
def test_multi_page_qa_answerable_from_one_page_is_relabelled_or_dropped(serve, choice: str) -> None:
    server = serve(OnePageServer)
    config = generate_config(server, tasks=["extract-multi"], verify={"enabled": True, "multi_page": choice})
    records, rejects = run(config)
    if choice == "drop":
        assert records == [] and [r.reason for r in rejects] == ["answerable_from_one_page"]
    else:
        (record,) = records
        assert record.task == "extract-single" and len(record.evidence_pages) == 1
        assert record.verification.endswith(f"multi_page=single:{record.evidence_pages[0]}")
    necessity_calls = [b for b in server.bodies if "[Verification]" in json.dumps(b)]
    assert len(necessity_calls) == 2  # the verification, then the first evidence page (enough): not the second
    counts = quality_summary(records, rejects, config)["extract-multi"]["multi_page"]  # the manifest's counts
    assert counts == {
        "checked": 1,
        "needed": 0,
        "relabelled": int(choice == "relabel"),
        "dropped": int(choice == "drop"),
    }


@pytest.mark.slow
def test_multi_page_qa_that_needs_its_pages_is_kept(serve) -> None:
    server = serve()
    config = generate_config(server, tasks=["extract-multi"], verify={"enabled": True, "multi_page": "drop"})
    records, rejects = run(config, name="etoolbox.pdf")
    multi = [r for r in records if r.task == "extract-multi"]
    assert len(multi) == 1 and multi[0].verification.endswith("multi_page=needed") and rejects == []
    assert quality_summary(records, rejects, config)["extract-multi"]["multi_page"]["needed"] == 1
    pages = len(set(multi[0].evidence_pages))
    calls = [b for b in server.bodies if "[Verification]" in json.dumps(b)]
    assert len(calls) == 1 + pages  # the verification, then one call per evidence page (none was enough)


@pytest.mark.slow
def test_schema_mode_replies_are_checked_against_the_schema_sent(serve) -> None:
    server = serve()
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}  # fmt: skip
    body = {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    assert server.check_schema(body, '{"answer": "x"}') is None
    assert "missing ['answer']" in (server.check_schema(body, '{"answr": "x"}') or "")
    assert "int is not string" in (server.check_schema(body, '{"answer": 3}') or "")
    run(generate_config(server, verify={"enabled": True}, judge={"enabled": True}))
    assert server.schema_errors == [bad for bad in server.schema_errors if "answr" in bad or "int is" in bad]


@pytest.mark.slow
def test_a_loopback_build_reports_agreement_judge_and_calls_by_role(serve, write_recipe, pdf_dir, tmp_path) -> None:
    server = serve()
    endpoint = {"base_url": server.base_url, "model": "scripted-vlm", "api_key_env": None, "timeout_s": 10.0,
                "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0}  # fmt: skip
    judge = {"enabled": True, "endpoint": {**endpoint, "model": "scripted-judge", "price_input_per_mtok": 3.0}}
    recipe = load_recipe(write_recipe(
        [str(pdf_dir / "R-data.pdf"), str(pdf_dir / "etoolbox.pdf")], decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text",
                  "verify": {"enabled": True}, "judge": judge},
        assemble={"budget_tokens": None},
    ))  # fmt: skip
    manifest = build(recipe, tmp_path / "out", workers=1)
    generate = manifest["stages"]["generate"]
    for task in TASKS:
        assert generate["quality"][task]["verification"]["agreement_rate"] == 1.0
        assert generate["quality"][task]["judge"]["drop_rate"] == 0.0
        roles = generate["calls_by_role"][task]
        assert set(roles) == {"generation", "verification", "judge"} and all(r["cost_usd"] > 0 for r in roles.values())
        judge_cost = roles["judge"]["prompt_tokens"] * 3.0 / 1e6 + roles["judge"]["completion_tokens"] * 2.0 / 1e6
        assert roles["judge"]["cost_usd"] == pytest.approx(judge_cost, abs=1e-5)  # the judge endpoint's own prices
    card = (tmp_path / "out" / "dataset" / "README.md").read_text()
    assert "Verification by `scripted-vlm`" in card and "| 100.0% |" in card
    assert "Rubric judge `scripted-judge`, threshold 4" in card
    rows = [r for f in (tmp_path / "out/dataset/data/qa").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert rows and all(r["judge_score"] == 5.0 and len(r["judge_rubrics"]) == 4 for r in rows)
    asked = server.requests
    build(recipe, tmp_path / "out", workers=1)
    assert server.requests == asked


@pytest.mark.slow
def test_the_planted_error_benchmark_meets_its_targets_on_three_pdfs(pdf_dir, tmp_path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from quality import run_bench

    pool = tmp_path / "pool"
    pool.mkdir()
    for name in ("R-data.pdf", "R-FAQ.pdf", "etoolbox.pdf"):
        (pool / name).symlink_to(pdf_dir / name)
    result = run_bench(str(pool), tmp_path / "out", share=0.5)
    kinds = result["by_kind"]
    assert len(kinds) >= 5 and kinds["clean"]["planted"] > 0
    assert result["totals"]["checks"]["planted_published_share"] > 0.1  # the checks alone let plausible errors by
    assert kinds["same_page_swap"]["published_checks"] > 0
    assert result["totals"]["verify"]["planted_published_share"] <= 0.02
    assert result["totals"]["judge"]["planted_published_share"] <= 0.02
    assert result["totals"]["verify"]["clean_kept_vs_checks"] >= 0.95


def test_dry_run_forecasts_review_calls_on_evidence_pages_only(write_recipe, pdf_dir) -> None:
    from longdocvqa.assembly.planning import EST_PAGE_TEXT_TOKENS, EST_PROMPT_TEXT_TOKENS, EST_VERIFY_PAGES
    from longdocvqa.pipeline import plan_with_units

    endpoint = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": None}
    recipe_file = write_recipe([str(pdf_dir)], generate={"generator": {"kind": "openai", "endpoint": endpoint},
                               "input_mode": "text"}, assemble={"budget_tokens": None})  # fmt: skip
    plain = load_recipe(recipe_file)
    reviewed = plain.model_copy(deep=True)
    reviewed.generate.verify.enabled, reviewed.generate.verify.multi_page = True, "drop"
    reviewed.generate.judge.enabled = True
    _, planner, units = plan_with_units(plain)
    _, reviewed_planner, reviewed_units = plan_with_units(reviewed)
    before, after = planner.forecast(units), reviewed_planner.forecast(reviewed_units)
    for task, row in after.items():
        generation = before[task]["calls"]
        multi = EST_VERIFY_PAGES * generation if task in ("extract-multi", "reasoning") else 0  # one call per page
        assert row["review_calls"] == {
            "verify": generation,
            "judge": generation,
            **({"multi_page": multi} if multi else {}),
        }
        assert row["calls"] == generation * 3 + multi
        review_pages = 2 * generation * EST_VERIFY_PAGES + multi  # verify and judge see the evidence, necessity 1
        assert row["text_tokens"] - before[task]["text_tokens"] == (
            EST_PROMPT_TEXT_TOKENS * (row["calls"] - generation) + EST_PAGE_TEXT_TOKENS * review_pages
        )


def test_the_paper_recipe_verifies_by_default_on_its_own_endpoint() -> None:
    from longdocvqa.generate import make_generator

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "mmprolong-128k.yaml")
    generator = make_generator(recipe.generate)
    assert recipe.generate.verify.enabled and recipe.generate.verify.endpoint is None
    assert generator.verifier_model == recipe.generate.generator.endpoint.model  # the same endpoint verifies
    assert generator.judge_model is None  # the judge is off unless the recipe turns it on
