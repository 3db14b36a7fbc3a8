"""The generate package on real parsed PDFs: prompts, semantic checks, generation through the scripted server (text and
image input), drops under mixed failures, ledger replay, verification, the template baseline and OCR tasks."""

from __future__ import annotations

import asyncio
import base64
import io
import random
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
from llm_fixtures import (  # noqa: F401 - `server`
    closing,
    generate_config,
    page_images,
    real_document,
    scripted_server,
)
from openai_server import ScriptedOpenAI
from PIL import Image

from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import QA, QARecord
from longdocvqa.generate.base import drop_duplicates, make_record, qa_json_schema, qa_record_json_schema
from longdocvqa.generate.checks import (
    check_anchor,
    check_answer_format,
    check_answer_in_evidence,
    check_answer_not_in_question,
    check_evidence_pages,
    check_generated,
)
from longdocvqa.generate.document import generate_document, open_clients
from longdocvqa.generate.ocr import transcribe_page
from longdocvqa.generate.prompts import (
    PromptContext,
    load_exemplars,
    page_parts,
    pick_exemplars,
    prompt_messages,
    task_strings,
)
from longdocvqa.generate.verify import answers_match
from longdocvqa.llm import LLMClient

TASKS = ["extract-single", "extract-multi", "reasoning"]


def make_qa(**fields) -> QA:
    values = {"question": "On Page 20, what is it?", "answer": "Octave", "answer_format": "String",
              "evidence_pages": [20], "evidence_sources": ["Text"]}  # fmt: skip
    return QA.model_validate({**values, **fields})


def run(config: GenerateConfig, ledger: Path | None, name: str = "R-data.pdf", page_image=None, **client_kw):
    doc, layout, segments = real_document(name)
    client, verifier = open_clients(config, str(ledger) if ledger else None, backoff_base_s=0.01,
                                           backoff_max_s=0.05, **client_kw)  # fmt: skip

    async def go():
        try:
            return await generate_document(doc, layout, segments, config, 0, client, page_image, verifier=verifier)
        finally:
            for c in (client, verifier):
                if c is not None:
                    await c.aclose()

    records, rejects = asyncio.run(go())
    return records, rejects, client


# ----------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("task", TASKS)
def test_prompt_holds_every_part_of_the_paper_template(task: str) -> None:
    _, _, (segment,) = real_document()
    config = GenerateConfig(input_mode="text", exemplars="builtin://exemplars_v1.jsonl")
    exemplars = pick_exemplars(load_exemplars(config.exemplars), task, 2, random.Random(0))
    pages = page_parts(segment, segment.pages, "text", None, config.max_pixels)
    messages = prompt_messages(PromptContext(segment, task, config, "text", pages, exemplars))
    system, user = messages[0]["content"], messages[1]["content"]
    strings = task_strings("v1")[task]
    assert "expert at synthesizing document question-answering" in system
    assert strings["description"] in user and strings["restriction"] in user
    for needle in ('"String"', '"Integer"', '"Float"', '"List"', '"Text"', '"Layout"', '"Figure"', '"Table"',
                   "Page indexing rule", "not the page number printed", "Scope constraint", "[Evidence Description]:",
                   "[JSON]:", "[In-context Exemplar 1]", "[In-context Exemplar 2]",
                   f"pages {segment.start_page} to {segment.end_page} of the document"):  # fmt: skip
        assert needle in user, needle
    assert "[In-context Exemplar 3]" not in user
    assert all(exemplar["task"] == task for exemplar in exemplars)
    labels = [f"Page {p}:\n" for p in segment.pages]
    positions = [user.index(label) for label in labels]
    assert positions == sorted(positions) and positions[0] > user.index("[Current Case]")


def test_no_exemplars_without_a_file_and_json_mode_format() -> None:
    _, _, (segment,) = real_document()
    config = GenerateConfig(input_mode="text")
    ctx = PromptContext(segment, "reasoning", config, "json_schema", [])
    user = prompt_messages(ctx)[1]["content"]
    assert "Exemplar" not in user and "Reply with one JSON object only" in user


def test_image_mode_labels_each_page_before_its_image() -> None:
    doc, layout, (segment,) = real_document()
    parts = page_parts(segment, segment.pages[:3], "images+text", page_images(doc, layout, None, 50_000), 50_000)
    kinds = [(p["type"], p.get("text", "")[:20]) for p in parts]
    first = segment.start_page
    assert kinds[:3] == [("text", f"Page {first}:"), ("image_url", ""), ("text", f"Text layer of Page {first}:"[:20])]
    assert len(parts) == 9


# ----------------------------------------------------------------------------------------------- checks


def test_answer_format_checks() -> None:
    ok = [("Integer", "1,234"), ("Integer", "2023"), ("Float", "$45.20"), ("Float", "98.5%"), ("Float", "12"),
          ("Float", "EUR 3,100.50"), ("String", "two weeks"), ("List", ["a", "b"])]  # fmt: skip
    bad = [("Integer", "12.5"), ("Integer", "about 3"), ("Float", "n/a"), ("String", ["a"]), ("List", []),
           ("List", "a, b"), ("String", "  ")]  # fmt: skip
    for fmt, answer in ok:
        assert check_answer_format(make_qa(answer_format=fmt, answer=answer)) is None, (fmt, answer)
    for fmt, answer in bad:
        problem = check_answer_format(make_qa(answer_format=fmt, answer=answer))
        assert problem is not None and problem.reason == "answer_format_mismatch", (fmt, answer)


def test_evidence_and_anchor_checks_on_a_real_segment() -> None:
    _, _, (segment,) = real_document()  # R-data pages 19-27
    assert check_evidence_pages(make_qa(evidence_pages=[19, 27]), "extract-multi", segment) is None
    assert check_evidence_pages(make_qa(evidence_pages=[5]), "extract-multi", segment).reason == (
        "evidence_outside_segment"
    )
    assert check_evidence_pages(make_qa(evidence_pages=[20, 21]), "extract-single", segment).reason == (
        "not_single_page"
    )
    assert check_anchor(make_qa(question="Based on Pages 20, 21, and 25, list it."), segment) is None
    assert check_anchor(make_qa(question="On pages 19-22, what is listed?"), segment) is None
    section = make_qa(question="In the Relational databases section, which package talks to ODBC?")
    assert check_anchor(section, segment) is None
    assert check_anchor(make_qa(question="What is the reported revenue?"), segment).reason == "no_anchor"
    outside = check_anchor(make_qa(question="On Page 3 and Page 20, what is it?"), segment)
    assert outside.reason == "anchor_outside_segment"


def test_answer_not_in_question() -> None:
    assert check_answer_not_in_question(make_qa(question="On Page 20, is Octave an Octave system?")).reason == (
        "answer_in_question"
    )
    assert check_answer_not_in_question(make_qa(question="On Page 20, which system?")) is None
    number = make_qa(question="How many on Page 20?", answer="20", answer_format="Integer")
    assert check_answer_not_in_question(number) is None  # page references are not the answer


def test_answer_must_appear_on_an_evidence_page() -> None:
    _, layout, (segment,) = real_document()
    line = next(t for t in layout.page_text(20).splitlines() if len(t.split()) >= 4)
    found = make_qa(answer=line.upper(), evidence_pages=[20])
    assert check_answer_in_evidence(found, layout) == (None, "found")
    problem, outcome = check_answer_in_evidence(make_qa(answer="a banana republic"), layout)
    assert outcome == "failed" and problem.reason == "answer_not_in_evidence"
    figure = make_qa(answer="a banana republic", evidence_sources=["Figure"])
    assert check_answer_in_evidence(figure, layout) == (None, "skipped")
    scanned = layout.model_copy(deep=True)
    scanned.pages[19].image_only = True
    assert check_answer_in_evidence(make_qa(answer="a banana republic"), scanned) == (None, "skipped")


def test_answers_match() -> None:
    assert answers_match("$1,200.00", "1200", "Float") is True
    assert answers_match("12", "13", "Integer") is False
    assert answers_match("Two Weeks", "two weeks.", "String") is True
    assert answers_match(["b", "A"], ["a", "B"], "List") is True
    assert answers_match("a long answer of more than six words here", "x", "String") is None


# ----------------------------------------------------------------------------------------------- generation


def _assert_valid_rows(records: list[QARecord]) -> None:
    schema = qa_record_json_schema()
    for record in records:
        jsonschema.validate(record.model_dump(mode="json"), schema)
        assert record.id == make_record(
            QA(question=record.question, answer=record.answer, answer_format=record.answer_format,
               evidence_pages=record.evidence_pages, evidence_sources=record.evidence_sources),
            task=record.task, segment=real_document()[2][0], generator=record.generator,
            prompt_version=record.prompt_version, evidence_description=record.evidence_description,
            call_id=record.call_id, verification=record.verification,
        ).id  # fmt: skip


@pytest.mark.slow
def test_text_mode_generation_and_free_rerun(server: ScriptedOpenAI, tmp_path: Path) -> None:
    config = generate_config(server, questions_per_segment=2, exemplars="builtin://exemplars_v1.jsonl")
    records, rejects, client = run(config, tmp_path / "llm_calls.sqlite")
    assert rejects == [] and Counter(r.task for r in records) == {t: 2 for t in TASKS}
    _assert_valid_rows(records)
    assert all(r.generator == "scripted" and r.prompt_version == "v1" and r.call_id for r in records)
    assert {r.verification for r in records if r.task != "reasoning"} == {"evidence_text=found;answerability=not_run"}
    sent = server.requests
    assert sent == 6 and client.usage()["sent"] == 6
    again, _, client2 = run(config, tmp_path / "llm_calls.sqlite")
    assert server.requests == sent and again == records and client2.usage()["replayed"] == 6


@pytest.mark.slow
def test_second_question_sees_the_first(server: ScriptedOpenAI) -> None:
    config = generate_config(server, questions_per_segment=2, tasks=["reasoning"])
    records, _, _ = run(config, None)
    second_prompt = server.bodies[1]["messages"][1]["content"]
    assert records[0].question in second_prompt and "write a different one" in second_prompt


@pytest.mark.slow
def test_image_mode_sends_labelled_jpeg_pages(server: ScriptedOpenAI) -> None:
    doc, layout, (segment,) = real_document()
    config = generate_config(server, input_mode="images", max_pixels=300_000)
    records, rejects, _ = run(config, None, page_image=page_images(doc, layout, server, 300_000))
    assert rejects == [] and sorted(r.task for r in records) == sorted(TASKS)
    content = server.bodies[0]["messages"][1]["content"]
    images = [i for i, p in enumerate(content) if p["type"] == "image_url"]
    assert len(images) == len(segment.pages)
    for page, i in zip(segment.pages, images, strict=True):
        assert content[i - 1] == {"type": "text", "text": f"Page {page}:"}
        url = content[i]["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,") and len(url) < 200_000
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
            assert image.width * image.height <= 300_000


@pytest.mark.slow
def test_mixed_failures_end_in_valid_qa_or_counted_drops(server: ScriptedOpenAI, tmp_path: Path) -> None:
    server.hang_s = 2.0
    server.random_failures(0.3, seed=1, kinds=(*qa_mod_kinds(), "hang"))
    ledger = tmp_path / "llm_calls.sqlite"
    config = generate_config(server, {"timeout_s": 1.0, "max_retries": 3}, questions_per_segment=4)
    records, rejects, client = run(config, ledger, name="R-FAQ.pdf")
    items = 4 * len(TASKS)
    assert len(records) + len(rejects) == items
    assert all(r.reason and r.stage == "generate" for r in rejects)
    _valid = [QA.model_validate(r.model_dump(include=set(QA.model_fields))) for r in records]
    assert len(_valid) == len(records) and records
    assert sum(server.by_kind[k] for k in server.by_kind if k != "ok") > 0
    assert max(server.answered_ok.values()) == 1  # no call that got its reply was ever sent again
    sent = server.requests
    again, again_rejects, _ = run(config, ledger, name="R-FAQ.pdf")
    failed_for_good = sum(r.reason == "endpoint_error" for r in rejects)
    assert server.requests - sent <= failed_for_good * (config.generator.endpoint.max_retries + 1)
    if failed_for_good == 0:
        assert server.requests == sent and again == records and again_rejects == rejects


def qa_mod_kinds() -> tuple[str, ...]:
    return ("invalid_json", "schema_violation", "bad_evidence", "no_anchor", "rate_limit", "server_error",
            "truncated", "length")  # fmt: skip


@pytest.mark.slow
def test_semantic_failures_are_reasked_then_dropped(server: ScriptedOpenAI) -> None:
    server.push("no_anchor", "bad_evidence", "bad_evidence")
    config = generate_config(server, tasks=["extract-single"], max_invalid_retries=1)
    records, rejects, client = run(config, None)
    assert records == [] and [r.reason for r in rejects] == ["evidence_outside_segment"]
    assert rejects[0].extra["attempts"] == 2 and client.outcomes["no_anchor"] == 1
    records, rejects, _ = run(config, None)  # the script is used up: a clean reply now
    assert len(records) == 1 and rejects == []


@pytest.mark.slow
def test_verification_agrees_or_drops(server: ScriptedOpenAI) -> None:
    config = generate_config(server, verify={"enabled": True})
    records, rejects, client = run(config, None)
    assert rejects == [] and len(records) == 3
    assert all(r.verification.endswith(("answerability=exact", "answerability=judge")) for r in records)
    assert any(task.startswith("verify/") for task in client.usage()["by_task"])
    server.verify_wrong = True
    records, rejects, _ = run(config, None, name="R-FAQ.pdf")
    assert records == [] and {r.reason for r in rejects} == {"unverified"} and {r.stage for r in rejects} == {"verify"}


def test_duplicate_questions_are_dropped() -> None:
    _, _, (segment,) = real_document()
    one = make_record(make_qa(), task="extract-single", segment=segment, generator="g", prompt_version="v1")
    two = make_record(make_qa(question="on page 20 - what is it"), task="extract-multi", segment=segment,
                             generator="g", prompt_version="v1")  # fmt: skip
    kept, rejects = drop_duplicates([one, two])
    assert kept == [one] and rejects[0].reason == "duplicate_question" and rejects[0].item == two.id


def test_qa_json_schema_validates_generator_output() -> None:
    schema = qa_json_schema()
    jsonschema.validate(make_qa().model_dump(mode="json"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"question": "q", "answer": "a"}, schema)


# ----------------------------------------------------------------------------------------------- offline


@pytest.mark.parametrize("name", ["R-data.pdf", "GS9_Color_Management.pdf", "R-FAQ.pdf"])
def test_template_baseline_is_offline_and_deterministic(name: str) -> None:
    config = GenerateConfig(questions_per_segment=2)
    records, rejects, client = run(config, None, name=name)
    again, again_rejects, _ = run(config, None, name=name)
    assert client is None and records == again and rejects == again_rejects
    assert records and all(r.generator == "template-baseline" for r in records)
    _, layout, (segment,) = real_document(name)
    for record in records:
        qa = QA.model_validate(record.model_dump(include=set(QA.model_fields)))
        assert check_generated(qa, record.task, segment, layout)[0] is None
    assert {r.reason for r in rejects} <= {"no_template_candidate"}


def test_ocr_targets_come_from_layout_blocks() -> None:
    _, layout, _ = real_document()
    config = GenerateConfig(tasks=["ocr-full", "ocr-needle"])
    records, rejects, _ = run(config, None)
    full, needle = records
    assert rejects == [] and full.task == "ocr-full" and needle.task == "ocr-needle"
    assert full.evidence_pages == list(range(1, layout.num_pages + 1))
    headers = [b.text for b in layout.pages[20].blocks if b.label == "header"]
    page21 = full.answer.split("Page 21:\n", 1)[1].split("\n\nPage 22:", 1)[0]
    assert page21 == layout.page_text(21) and not any(h in page21.splitlines() for h in headers)
    assert 1 <= len(needle.evidence_pages) <= 3
    assert all(f"Page {p}:" in needle.answer for p in needle.evidence_pages)
    assert run(config, None)[0] == records  # deterministic from seed + document


@pytest.mark.slow
def test_ocr_backend_transcribes_a_page(server: ScriptedOpenAI) -> None:
    doc, layout, _ = real_document()
    image = page_images(doc, layout, server, 400_000)(20)
    client = LLMClient(generate_config(server).generator.endpoint, None)
    work = transcribe_page(client, image, 20, (612.0, 792.0), max_pixels=400_000)
    blocks, reject = closing(work, client)
    assert reject is None and blocks and blocks[0].text == layout.page_text(20)
    assert blocks[0].bbox == (0.0, 0.0, 612.0, 792.0)


# ----------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_build_with_the_loopback_server_then_rerun_makes_no_request(server, write_recipe, pdf_dir, tmp_path) -> None:
    """A recipe pointing at the scripted server builds QA for the three tasks from page images; reruns are free."""
    import json
    import shutil

    from longdocvqa.core.recipe import load_recipe
    from longdocvqa.documents.segment import sample_segments
    from longdocvqa.pipeline import build

    names = ["R-data.pdf", "etoolbox.pdf"]
    ep = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 10.0, "max_retries": 2}
    recipe = load_recipe(write_recipe([str(pdf_dir / n) for n in names], render={"dpi": 144}, generate={
        "generator": {"kind": "openai", "endpoint": ep}, "input_mode": "images", "max_pixels": 200_000}))  # fmt: skip
    for name in names:  # the server cannot read pixels: tell it what each page image that will be sent shows
        doc, layout, _ = real_document(name)
        page_image = page_images(doc, layout, server, recipe.generate.max_pixels)
        for segment in sample_segments(layout, recipe.segment, recipe.seed):
            for page in segment.pages:
                page_image(page)
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1)
    generate = manifest["stages"]["generate"]
    assert generate["by_task"] == {task: 2 for task in TASKS}, (generate, (out / "rejects.jsonl").read_text())
    assert server.requests == 6
    for body in server.bodies:
        content = body["messages"][1]["content"]
        images = [i for i, part in enumerate(content) if part["type"] == "image_url"]
        assert len(images) >= 8 and all(content[i - 1]["text"].startswith("Page ") for i in images)
    rows = [r for p in sorted((out / "stages" / "generate").glob("*/*/*.json"))
            for r in json.loads(p.read_text())["ok"]["records"]]  # fmt: skip
    schema = qa_record_json_schema()
    for row in rows:
        jsonschema.validate(row, schema)
    build(recipe, out, workers=1)  # finished stage outputs are reused
    shutil.rmtree(out / "stages" / "generate")  # as if killed before writing them: the ledger replays
    again = build(recipe, out, workers=1)
    assert server.requests == 6 and again["stages"]["generate"]["by_task"] == generate["by_task"]
