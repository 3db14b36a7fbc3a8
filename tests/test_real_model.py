"""Against a real model server: llama.cpp (xllamacpp wheel) serving SmolLM2-135M-Instruct on loopback.

A 135M model writes schema-valid but meaningless QA, so these tests check the real protocol, that
`response_format: json_schema` is honoured, that runaway generations end (max_tokens, timeouts) and
that semantic-check failures are counted drops, never crashes. Content is tested with the scripted server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from llm_fixtures import real_document
from pydantic import BaseModel, ConfigDict

from longdocvqa.core.recipe_generate import EndpointConfig, GenerateConfig
from longdocvqa.core.records import QA
from longdocvqa.generate.document import generate_document, open_clients
from longdocvqa.llm import Invalid, LLMClient

xserve = pytest.importorskip("xserve")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(xserve.missing() is not None, reason=str(xserve.missing()))]

KNOWN_REASONS = {"truncated", "invalid_json", "schema_violation", "evidence_outside_segment", "not_single_page",
                 "answer_format_mismatch", "no_anchor", "anchor_outside_segment", "answer_in_question",
                 "answer_not_in_evidence", "duplicate_question"}  # fmt: skip


class Colour(BaseModel):
    model_config = ConfigDict(extra="forbid")
    colour: Literal["red", "green", "blue"]
    confident: bool


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with xserve.llama_server() as url:
        yield url


def endpoint(url: str, **overrides: object) -> EndpointConfig:
    values = {"base_url": url, "model": xserve.MODEL_ALIAS, "api_key_env": None, "timeout_s": 120.0,
              "max_concurrency": 1, "max_retries": 1, "max_tokens": 160, "temperature": 0.0, "seed": 7}  # fmt: skip
    return EndpointConfig.model_validate({**values, **overrides})


def small_segment():
    """Two real pages of R-data, cut to ~400 characters each: a short prompt for a 2-core CPU."""
    doc, layout, (segment,) = real_document()
    texts = [t[:400] for t in segment.page_texts[:2]]
    return doc, layout, segment.model_copy(update={"end_page": segment.start_page + 1, "page_texts": texts})


def test_generation_through_llama_cpp_counts_every_outcome(base_url: str, tmp_path: Path) -> None:
    doc, layout, segment = small_segment()
    # llama.cpp slows to ~2 tokens/s when the grammar keeps rejecting the 135M model's choices, so the
    # budget is bounded twice: max_tokens per reply and timeout_s per request (no retries, no re-asks). With 96
    # tokens the three replies take ~25 s together; with 200, up to 60 s each (all three timed out under load).
    ep = endpoint(base_url, max_tokens=96, timeout_s=60.0, max_retries=0)
    config = GenerateConfig.model_validate({"generator": {"kind": "openai", "endpoint": ep.model_dump()},
                                            "input_mode": "text", "max_invalid_retries": 0})  # fmt: skip
    ledger = tmp_path / "llm_calls.sqlite"

    def generate() -> tuple[list, list, dict]:
        client, _ = open_clients(config, str(ledger))

        async def go() -> tuple[list, list]:
            try:
                return await generate_document(doc, layout, [segment], config, 0, client, None)
            finally:
                await client.aclose()

        records, rejects = asyncio.run(go())
        return records, rejects, client.usage()

    records, rejects, usage = generate()
    assert len(records) + len(rejects) == 3  # one item per task: a valid QA or a counted drop
    assert {r.reason for r in rejects} <= KNOWN_REASONS | {"endpoint_error"}, rejects
    unfinished = sum(r.reason == "endpoint_error" for r in rejects)  # a grammar-slowed call may time out
    assert unfinished < 3, rejects  # at least one real reply, or the rest proves nothing
    assert usage["sent"] == 3 - unfinished and sum(usage["outcomes"].values()) == usage["sent"]
    assert usage["prompt_tokens"] > 300 * usage["sent"] and usage["completion_tokens"] >= usage["sent"]
    again, again_rejects, usage2 = generate()
    assert usage2["replayed"] == usage["sent"] and usage2["sent"] <= unfinished
    if unfinished == 0:
        assert again == records and again_rejects == rejects


def test_json_schema_is_honoured(base_url: str) -> None:
    client = LLMClient(endpoint(base_url, max_tokens=48), None)
    messages = [
        {"role": "user", "content": "The sky on Page 3 is drawn in blue. Which colour is the sky? Answer in JSON."}
    ]

    async def go():
        try:
            return await client.ask(messages, Colour, template_id="colour@test", task="probe")
        finally:
            await client.aclose()

    answer = asyncio.run(go())
    assert answer.ok, answer.detail
    stored = client.ledger.lookup(answer.call_ids[0])
    assert Colour.model_validate(json.loads(stored.text)) == answer.value and stored.finish_reason == "stop"


def test_semantic_failures_are_reasked_then_counted(base_url: str) -> None:
    client = LLMClient(endpoint(base_url, max_tokens=48), None)
    messages = [{"role": "user", "content": "Which colour is the sky on Page 3? Answer in JSON."}]

    def never_anchored(value: Colour) -> Invalid:
        return Invalid("no_anchor", "name the page the colour is printed on")

    async def go():
        try:
            return await client.ask(messages, Colour, template_id="colour@test", task="probe",
                                    temperatures=[0.0, 0.7], max_invalid_retries=1, check=never_anchored)  # fmt: skip
        finally:
            await client.aclose()

    answer = asyncio.run(go())
    assert not answer.ok and answer.reason == "no_anchor" and answer.attempts == 2
    assert client.outcomes == {"no_anchor": 2}
    second = client.ledger.request(answer.call_ids[1])
    assert second["params"]["temperature"] == 0.7 and "rejected (no_anchor)" in second["messages"][-1]["content"]


def test_runaway_generations_end(base_url: str) -> None:
    short = LLMClient(endpoint(base_url, max_tokens=12), None)
    slow = LLMClient(endpoint(base_url, response_mode="text", max_tokens=4000, timeout_s=1.5, max_retries=1), None)
    story = [{"role": "user", "content": "Write a very long story about a lighthouse keeper, then a JSON summary."}]
    probe = [{"role": "user", "content": "Write a question about Page 3 of a manual as JSON."}]

    async def go():
        try:
            cut = await short.ask(probe, QA, template_id="cut@test", task="probe")
            timed_out = await slow.ask(story, Colour, template_id="story@test", task="probe")
            return cut, timed_out
        finally:
            await short.aclose()
            await slow.aclose()

    cut, timed_out = asyncio.run(go())
    assert cut.reason == "truncated"  # stopped by max_tokens, reported, not fatal
    assert timed_out.reason == "endpoint_error" and "timeout" in timed_out.detail
    assert slow.errors["timeout"] == 2  # one attempt plus one retry, then dropped
