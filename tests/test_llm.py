"""The llm package through the real `openai` client against the scripted loopback server: structured output,
transient retries, Retry-After, AIMD, invalid-output re-asks, the call ledger and image encoding."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest
from llm_fixtures import closing, endpoint, scripted_server  # noqa: F401 - registers the `server` fixture
from openai_server import ScriptedOpenAI
from PIL import Image

from longdocvqa.core.errors import ExternalServiceError, RecipeError
from longdocvqa.core.records import QA
from longdocvqa.llm import (
    ImageInput,
    Invalid,
    Ledger,
    LLMClient,
    OutputError,
    image_part,
    parse_output,
    response_format,
    retry_after_s,
    text_part,
)

PAGES = "[Current Case]\nPage 7:\nThe quick brown fox jumps over the dog\nA second line of useful text here\n" \
        "Another distinctive line of prose follows\n"  # fmt: skip
MESSAGES = [
    {"role": "system", "content": "You write QA."},
    {"role": "user", "content": "Single-Page Focus. " + PAGES},
]


def make_client(srv: ScriptedOpenAI, ledger: Ledger | str | Path | None = None, **overrides) -> LLMClient:
    return LLMClient(endpoint(srv, **overrides), ledger, backoff_base_s=0.01, backoff_max_s=0.05)


def ask(client: LLMClient, messages=MESSAGES, **kwargs):
    options = {"template_id": "test@v1", "task": "extract-single", **kwargs}
    return closing(client.ask(messages, QA, **options), client)


@pytest.mark.slow
def test_json_schema_request_and_parse(server: ScriptedOpenAI) -> None:
    answer = ask(make_client(server))
    assert answer.ok and answer.value is not None
    assert answer.value.evidence_pages == [7] and answer.value.answer in PAGES
    body = server.bodies[0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"] == QA.model_json_schema()
    assert body["max_tokens"] == 1024 and body["seed"] == 0 and body["temperature"] == 0.0


@pytest.mark.slow
def test_text_mode_reads_evidence_then_json(server: ScriptedOpenAI) -> None:
    answer = ask(make_client(server, response_mode="text"))
    assert "response_format" not in server.bodies[0]
    assert answer.ok and answer.evidence_description.startswith("Page 7")


@pytest.mark.slow
def test_json_object_mode(server: ScriptedOpenAI) -> None:
    answer = ask(make_client(server, response_mode="json_object"))
    assert server.bodies[0]["response_format"] == {"type": "json_object"}
    assert answer.ok


@pytest.mark.slow
def test_extra_body_is_passed_through(server: ScriptedOpenAI) -> None:
    ask(make_client(server, extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}}))
    assert server.bodies[0]["top_k"] == 20
    assert server.bodies[0]["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.slow
def test_server_errors_are_retried(server: ScriptedOpenAI) -> None:
    server.push("server_error", "server_error")
    client = make_client(server)
    answer = ask(client)
    assert answer.ok and server.requests == 3
    assert client.errors["server_error"] == 2
    assert client.ledger.count("errors") == 2 and client.ledger.count("calls") == 1


@pytest.mark.slow
def test_retry_after_is_a_floor_for_the_backoff(server: ScriptedOpenAI) -> None:
    server.retry_after = "1"
    server.push("rate_limit")
    client = make_client(server)
    assert ask(client).ok
    assert client.retry_waits_s[0] >= 1.0  # backoff alone would be <= 0.01 s
    assert client.errors["rate_limited"] == 1


def test_retry_after_header_forms() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


@pytest.mark.slow
def test_transient_retries_are_bounded(server: ScriptedOpenAI) -> None:
    server.push(*["server_error"] * 10)
    answer = ask(make_client(server, max_retries=2))
    assert not answer.ok and answer.reason == "endpoint_error"
    assert server.requests == 3
    assert "server_error" in answer.detail


@pytest.mark.slow
def test_truncated_body_and_timeout_are_transient(server: ScriptedOpenAI) -> None:
    server.hang_s = 3.0
    server.push("truncated", "hang")
    client = make_client(server, timeout_s=0.5)
    answer = ask(client)
    assert answer.ok and server.requests == 3
    assert client.errors["connection"] == 1 and client.errors["timeout"] == 1


@pytest.mark.slow
def test_wrong_key_or_url_stops_the_build(server: ScriptedOpenAI) -> None:
    server.push("auth_error")
    with pytest.raises(ExternalServiceError, match="HTTP 401"):
        ask(make_client(server))
    assert server.requests == 1  # not retried
    bad = LLMClient(endpoint(server, base_url=server.base_url.replace("/v1", "/nope")), None)
    with pytest.raises(ExternalServiceError, match="HTTP 404"):
        ask(bad)


@pytest.mark.slow
def test_missing_base_url_is_a_recipe_error(monkeypatch: pytest.MonkeyPatch, server: ScriptedOpenAI) -> None:
    monkeypatch.delenv("LDV_TEST_URL", raising=False)
    with pytest.raises(RecipeError, match="LDV_TEST_URL"):
        LLMClient(endpoint(server, base_url=None, base_url_env="LDV_TEST_URL"))
    monkeypatch.setenv("LDV_TEST_URL", server.base_url)
    assert ask(LLMClient(endpoint(server, base_url=None, base_url_env="LDV_TEST_URL"))).ok


@pytest.mark.slow
def test_aimd_shrinks_on_429_and_recovers(server: ScriptedOpenAI) -> None:
    server.latency_s = 0.02
    server.push(*["rate_limit"] * 12)
    client = make_client(server, max_concurrency=8, max_retries=8)

    async def run() -> list:
        variants = [[MESSAGES[0], {"role": "user", "content": f"Single-Page Focus {i}. " + PAGES}] for i in range(48)]
        return await asyncio.gather(*(client.ask(m, QA, template_id="t@v1", task="extract-single") for m in variants))

    answers = closing(run(), client)
    assert all(a.ok for a in answers)
    assert client.limiter.decreases >= 2 and client.limiter.min_limit_seen <= 4
    assert client.limiter.limit > client.limiter.min_limit_seen  # additive increase after the 429s stopped


@pytest.mark.slow
def test_invalid_output_is_reasked_with_the_error_appended(server: ScriptedOpenAI) -> None:
    server.push("invalid_json")
    client = make_client(server)
    answer = ask(client, temperatures=[0.0, 0.4, 0.8], max_invalid_retries=2)
    assert answer.ok and answer.attempts == 2 and len(answer.call_ids) == 2
    second = server.bodies[1]
    assert second["temperature"] == 0.4
    assert second["messages"][2]["role"] == "assistant"
    assert second["messages"][2]["content"] == client.ledger.lookup(answer.call_ids[0]).text
    assert "rejected (invalid_json)" in second["messages"][3]["content"]
    assert client.outcomes == {"invalid_json": 1, "ok": 1}


@pytest.mark.slow
def test_invalid_output_is_dropped_with_its_reason(server: ScriptedOpenAI) -> None:
    server.push("schema_violation", "schema_violation", "schema_violation")
    answer = ask(make_client(server), max_invalid_retries=2)
    assert not answer.ok and answer.reason == "schema_violation" and answer.attempts == 3
    assert "answer_format" in answer.detail and server.requests == 3


@pytest.mark.slow
def test_length_cut_reply_is_reported_as_truncated(server: ScriptedOpenAI) -> None:
    server.push("length")
    answer = ask(make_client(server), max_invalid_retries=0)
    assert answer.reason == "truncated"


@pytest.mark.slow
def test_semantic_check_failure_is_reasked(server: ScriptedOpenAI) -> None:
    def check(qa: QA) -> Invalid | None:
        return Invalid("evidence_outside_segment", "pages outside") if qa.evidence_pages[0] > 100 else None

    server.push("bad_evidence")
    answer = ask(make_client(server), max_invalid_retries=1, check=check)
    assert answer.ok and answer.value.evidence_pages == [7]
    assert "rejected (evidence_outside_segment)" in server.bodies[1]["messages"][-1]["content"]


@pytest.mark.slow
def test_ledger_replays_finished_calls_without_http(server: ScriptedOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "llm_calls.sqlite"
    server.push("invalid_json")
    first = ask(make_client(server, ledger=path), max_invalid_retries=2)
    sent = server.requests
    again = make_client(server, ledger=path)
    second = ask(again, max_invalid_retries=2)
    assert server.requests == sent == 2
    assert second.value == first.value and second.call_ids == first.call_ids
    usage = again.usage()
    assert usage["sent"] == 0 and usage["replayed"] == 2 and usage["prompt_tokens"] > 0


@pytest.mark.slow
def test_ledger_never_stores_the_api_key(server: ScriptedOpenAI, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LDV_TEST_KEY", "sk-very-secret-key-123")
    path = tmp_path / "calls.sqlite"
    assert ask(make_client(server, ledger=path, api_key_env="LDV_TEST_KEY")).ok
    for file in tmp_path.iterdir():
        assert b"sk-very-secret" not in file.read_bytes()
    rows = sqlite3.connect(path).execute("SELECT model, template, task, outcome, prompt_tokens FROM calls").fetchall()
    assert rows == [("scripted", "test@v1", "extract-single", "ok", rows[0][4])] and rows[0][4] > 0


@pytest.mark.slow
def test_request_key_covers_what_changes_the_reply(server: ScriptedOpenAI) -> None:
    client = make_client(server)
    params = client._params(0.0)
    key = client.request_key(MESSAGES, "t@v1", None, params)
    assert key == make_client(server).request_key(MESSAGES, "t@v1", None, params)
    assert key != client.request_key(MESSAGES, "t@v2", None, params)
    assert key != client.request_key(MESSAGES, "t@v1", None, client._params(0.3))
    assert key != make_client(server, model="other").request_key(MESSAGES, "t@v1", None, params)
    other_url = make_client(server, base_url="http://127.0.0.1:1/v1")
    assert key == other_url.request_key(MESSAGES, "t@v1", None, params)  # where the model runs is not content


@pytest.mark.slow
def test_identical_concurrent_calls_are_sent_once(server: ScriptedOpenAI) -> None:
    server.latency_s = 0.05
    client = make_client(server)

    async def run() -> list:
        return await asyncio.gather(*(client.ask(MESSAGES, QA, template_id="t@v1", task="x") for _ in range(5)))

    answers = closing(run(), client)
    assert server.requests == 1 and len({a.value.question for a in answers}) == 1


@pytest.mark.slow
def test_usage_counts_tokens_and_cost_per_task(server: ScriptedOpenAI) -> None:
    client = make_client(server, price_input_per_mtok=2.0, price_output_per_mtok=10.0)
    ask(client, task="reasoning")
    usage = client.usage()
    entry = usage["by_task"]["reasoning"]
    assert entry["calls"] == entry["sent"] == 1
    expected = entry["prompt_tokens"] * 2.0 / 1e6 + entry["completion_tokens"] * 10.0 / 1e6
    assert entry["cost_usd"] == pytest.approx(expected, abs=1e-6) and usage["cost_usd"] == entry["cost_usd"]


@pytest.mark.slow
def test_images_are_sent_as_small_jpeg_data_urls(server: ScriptedOpenAI, tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (1224, 1584), "white").save(png, format="PNG")
    image = ImageInput(png.getvalue(), max_pixels=200_000)
    server.register_image(image.data_url, "The quick brown fox jumps over the dog\nA second line of useful text")
    messages = [MESSAGES[0], {"role": "user", "content": [text_part("[Current Case]"), text_part("Page 3:"),
                                                          image_part(image)]}]  # fmt: skip
    client = make_client(server, ledger=tmp_path / "calls.sqlite")
    answer = ask(client, messages=messages)
    assert answer.ok and answer.value.evidence_pages == [3]
    url = server.bodies[0]["messages"][1]["content"][2]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.format == "JPEG" and sent.width * sent.height <= 200_000
        assert abs(sent.width / sent.height - 1224 / 1584) < 0.01
    stored = sqlite3.connect(tmp_path / "calls.sqlite").execute("SELECT request FROM calls").fetchone()[0]
    assert f"sha256:{image.sha256}" in stored and "base64" not in stored
    assert client.ledger.request(answer.call_ids[0])["messages"][1]["content"][2]["image_url"]["url"].startswith(
        "sha256:"
    )
    assert hashlib.sha256(stored.encode()).hexdigest() == answer.call_ids[0]  # the key is the hash of the request


def test_parse_output_variants() -> None:
    qa = {"question": "On Page 3, what?", "answer": 42, "answer_format": "Integer", "evidence_pages": [3],
          "evidence_sources": ["Text"]}  # fmt: skip
    fenced = f"[Evidence Description]: Page 3 says so.\n[JSON]: ```json\n{json.dumps(qa)}\n```"
    value, evidence = parse_output(fenced, QA)
    assert value.answer == "42" and evidence == "Page 3 says so."
    with pytest.raises(OutputError) as bad:
        parse_output('{"question": "x", "answer": "y"}', QA)
    assert bad.value.invalid.reason == "schema_violation"
    with pytest.raises(OutputError) as broken:
        parse_output('{"question": "x", "ans', QA)
    assert broken.value.invalid.reason == "invalid_json"


def test_response_format_modes() -> None:
    assert response_format(QA, "text") is None
    assert response_format(QA, "json_object") == {"type": "json_object"}
    assert response_format(QA, "json_schema")["json_schema"]["name"] == "QA"


@pytest.mark.slow
def test_a_flood_of_calls_is_admitted_a_few_at_a_time(server: ScriptedOpenAI) -> None:
    server.latency_s = 0.01
    client = make_client(server, max_concurrency=4)
    inner, active, peak = client._complete, [0], [0]

    async def counted(*args, **kwargs):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            return await inner(*args, **kwargs)
        finally:
            active[0] -= 1

    client._complete = counted  # type: ignore[method-assign]
    variants = [[MESSAGES[0], {"role": "user", "content": f"Single-Page Focus {i}. " + PAGES}] for i in range(60)]

    async def flood() -> list:
        return await asyncio.gather(*(client.ask(m, QA, template_id="t@v1", task="extract-single") for m in variants))

    answers = closing(flood(), client)
    assert all(a.ok for a in answers) and server.requests == 60
    assert peak[0] == 8  # 2 x max_concurrency hashed and waiting, not all 60 at once
