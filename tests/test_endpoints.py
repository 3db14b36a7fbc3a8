"""Several servers behind one endpoint: least-outstanding routing, a failing server drained then probed, its work
moved to the other with nothing lost or paid twice, and the URLs kept out of the fingerprint and the card."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from llm_fixtures import closing, endpoint, scripted_server  # noqa: F401 - registers the `server` fixture
from openai_server import ScriptedOpenAI

from longdocvqa.core.recipe import load_recipe
from longdocvqa.core.recipe_generate import EndpointConfig
from longdocvqa.core.records import QA
from longdocvqa.hub.redact import REDACTED, public_recipe
from longdocvqa.llm import AllDrained, LLMClient, Router
from longdocvqa.pipeline import build
from longdocvqa.stages.generate import generate_fingerprint

PAGES = "[Current Case]\nPage 3:\nThe quick brown fox jumps over the dog\nA second line of useful text here\n"


def test_least_outstanding_choice_and_drain_then_probe() -> None:
    async def go() -> None:
        router = Router(["a", "b", "c"], max_concurrency=2, drain_after=1, cooldown_s=30.0)
        a, b, c = router.routes
        slots = [await router.acquire() for _ in range(4)]
        assert [r.url for r, _ in slots] == ["a", "b", "c", "a"]  # ties: fewer requests so far, then list order
        router.release(*slots[1], "ok")
        assert (await router.acquire(avoid=b))[0] is c  # b has the fewest outstanding, but a retry avoids it
        assert (await router.acquire())[0] is b  # the fewest outstanding
        assert (await router.acquire(avoid=b))[0] is b  # a and c are full: the route to avoid is still used
        router.release(*slots[2], "server_error")  # c fails once (drain_after=1): drained
        assert c.drained_until is not None and c.drains == 1 and c.outstanding == 1 and b.outstanding == 2
        assert router.pick(time.monotonic()) is None  # a and b full, c drained
        due = c.drained_until + 0.001
        assert router.pick(due) is c  # cool-down over: c admits one probe
        c.probing = True
        assert router.pick(due) is None  # one probe at a time
        c.probing = False
        router.release(*slots[0], "ok")
        route, epoch = await router.acquire(avoid=a)
        assert route is a  # c is drained, b is full: the retry goes back to a rather than wait
        router.release(route, epoch, "ok")
        assert router.usage()["2"] == {"requests": 2, "failures": 1, "drains": 1, "probes": 0, "drained": True}

    asyncio.run(go())


def test_waiters_are_served_in_order_and_a_single_url_is_never_drained() -> None:
    async def go() -> None:
        router = Router(["only"], max_concurrency=1, drain_after=1, cooldown_s=30.0)
        (route,) = router.routes
        held = await router.acquire()
        first, second = asyncio.ensure_future(router.acquire()), asyncio.ensure_future(router.acquire())
        await asyncio.sleep(0)
        router.release(*held, "server_error")  # a single URL: counted, never drained (nowhere else to go)
        assert route.drained_until is None and route.failures == 1
        assert (await first)[0] is route and not second.done()
        router.release(*(await first), "ok")
        router.release(*(await second), "ok")
        assert route.requests == 3 and route.outstanding == 0
        held = await router.acquire()
        waiter = asyncio.ensure_future(router.acquire())
        await asyncio.sleep(0)
        router.release(*held, "ok")  # the slot is handed to the waiter ...
        waiter.cancel()  # ... cancelled before it runs: the slot comes back
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert route.outstanding == 0 and (await router.acquire())[0] is route

    asyncio.run(go())


def test_with_every_server_drained_an_attempt_fails_unsent() -> None:
    async def go() -> None:
        router = Router(["a", "b"], max_concurrency=1, drain_after=1, cooldown_s=30.0)
        a_slot, b_slot = await router.acquire(), await router.acquire()
        waiting = asyncio.ensure_future(router.acquire())
        await asyncio.sleep(0)
        router.release(*a_slot, "timeout")
        router.release(*b_slot, "connection")  # both drained: the waiting attempt fails instead of queueing
        with pytest.raises(AllDrained, match="all 2 servers drained"):
            await waiting
        with pytest.raises(AllDrained):
            await router.acquire()
        assert [r.requests for r in router.routes] == [1, 1]

    asyncio.run(go())


@pytest.mark.slow
def test_a_call_whose_servers_are_all_down_ends_as_an_endpoint_error(server: ScriptedOpenAI) -> None:
    server.policy = lambda _i, _body: "server_error"
    dead = "http://127.0.0.1:1/v1"
    ep = endpoint(server, base_url=[dead, server.base_url], max_retries=5, drain_after_failures=1)
    client = LLMClient(ep, backoff_base_s=0.01, backoff_max_s=0.02)
    messages = [{"role": "user", "content": f"Single-Page Focus. {PAGES}"}]
    answer = closing(client.ask(messages, QA, template_id="t", task="extract-single"), client)
    assert answer.reason == "endpoint_error" and "all_drained" in answer.detail
    usage = client.usage()
    assert usage["errors"]["all_drained"] == 4 and server.requests == 1  # one request each, then none sent


@pytest.mark.slow
def test_a_refused_server_is_drained_and_every_call_answered_by_the_other(server: ScriptedOpenAI) -> None:
    dead = "http://127.0.0.1:1/v1"  # nothing listens on port 1: connection refused
    client = LLMClient(endpoint(server, base_url=[dead, server.base_url], max_concurrency=2, drain_after_failures=2))
    messages = [[{"role": "user", "content": f"Single-Page Focus {i}. {PAGES}"}] for i in range(12)]

    async def ask_all() -> list:
        return await asyncio.gather(*(client.ask(m, QA, template_id="t", task="extract-single") for m in messages))

    answers = closing(ask_all(), client)
    assert all(a.ok for a in answers)
    usage = client.usage()
    refused, healthy = usage["endpoints"]["0"], usage["endpoints"]["1"]
    assert refused["drained"] and refused["drains"] >= 1 and refused["failures"] == refused["requests"]
    refusals = usage["errors"].get("connection", 0) + usage["errors"].get("timeout", 0)  # as the transport maps it
    assert refused["failures"] == refusals <= 2 + 1 + refused["probes"]  # drained at 2 in a row, 2 were in flight
    assert healthy["requests"] == server.requests == usage["sent"] == len(messages) and healthy["failures"] == 0


@pytest.mark.slow
def test_two_servers_one_failing_for_a_while(write_recipe, pdf_dir, tmp_path: Path) -> None:
    # the healthy server answers slowly, so the build lasts long enough for the failing one's probes
    failing, healthy, other = ScriptedOpenAI().start(), ScriptedOpenAI(latency_s=0.3).start(), ScriptedOpenAI().start()
    try:
        _two_servers_build(failing, healthy, other, write_recipe, pdf_dir, tmp_path)
    finally:
        for app in (failing, healthy, other):
            app.stop()


def _recipe_file(write_recipe, pdf_dir: Path, base_url: str | list[str]) -> Path:
    ep = {"base_url": base_url, "model": "scripted", "api_key_env": None, "timeout_s": 5.0, "max_retries": 6,
          "max_concurrency": 1, "drain_after_failures": 2, "drain_cooldown_s": 0.05}  # fmt: skip
    return write_recipe(
        [str(pdf_dir / n) for n in ("R-data.pdf", "etoolbox.pdf")],
        decontaminate={"within_pool": False}, assemble={"budget_tokens": None},
        generate={"generator": {"kind": "openai", "endpoint": ep}, "input_mode": "text"},
    )  # fmt: skip


def _recipe(write_recipe, pdf_dir: Path, base_url: str | list[str]):
    return load_recipe(_recipe_file(write_recipe, pdf_dir, base_url))


def _two_servers_build(failing, healthy, other, write_recipe, pdf_dir: Path, tmp_path: Path) -> None:
    failing.push(*["server_error"] * 4)  # its first four requests fail, then it recovers
    recipe_path = _recipe_file(write_recipe, pdf_dir, [failing.base_url, healthy.base_url])
    recipe = load_recipe(recipe_path)
    out = tmp_path / "out"
    # the build with two servers runs through the CLI, as a user runs it: `longdocvqa build`, manifest.json
    command = [sys.executable, "-m", "longdocvqa", "build", str(recipe_path), "--out", str(out), "--workers", "1"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    stats = json.loads((out / "manifest.json").read_text())["stages"]["generate"]
    reference = build(_recipe(write_recipe, pdf_dir, other.base_url), tmp_path / "ref", workers=1)
    assert "incomplete_documents" not in stats and stats.get("dropped", {}).get("endpoint_error", 0) == 0
    assert stats["by_task"] == reference["stages"]["generate"]["by_task"] and stats["kept"] >= 6
    usage = stats["usage"]["generator"]
    bad, good = usage["endpoints"]["0"], usage["endpoints"]["1"]
    assert (bad["requests"], good["requests"]) == (failing.requests, healthy.requests)
    assert bad["failures"] == failing.by_kind["server_error"] == usage["errors"]["server_error"] >= 2
    # In service it got exactly drain_after_failures requests (max_concurrency 1), afterwards only probes, each
    # failed probe draining it again; the probe that succeeded (if the build lasted that long) put it back.
    assert bad["failures"] == 2 + (bad["drains"] - 1) and bad["probes"] == bad["drains"] - int(bad["drained"])
    assert good["failures"] == 0 and set(healthy.by_kind) == {"ok"}
    answered = Counter(failing.answered_ok) + Counter(healthy.answered_ok)
    assert sum(answered.values()) == usage["sent"] and max(answered.values()) == 1  # none answered twice
    assert usage["sent"] == reference["stages"]["generate"]["usage"]["generator"]["sent"]
    before = failing.requests + healthy.requests
    assert "usage" not in build(recipe, out, workers=1)["stages"]["generate"]  # rerun: stored, no call made
    assert failing.requests + healthy.requests == before
    shutil.rmtree(out / "stages" / "generate")  # the stored results gone: the ledger alone replays every call
    other_requests = other.requests
    build(_recipe(write_recipe, pdf_dir, other.base_url), out, workers=1)
    assert other.requests == other_requests  # the ledger key holds no URL: calls answered by any server replay


def test_base_urls_stay_out_of_the_fingerprint_and_the_card(write_recipe, pdf_dir, monkeypatch) -> None:
    one = _recipe(write_recipe, pdf_dir, "http://10.0.0.1:8000/v1")
    two = _recipe(write_recipe, pdf_dir, ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"])
    assert generate_fingerprint(one, "seg") == generate_fingerprint(two, "seg")
    card = public_recipe(two)["generate"]["generator"]["endpoint"]
    assert card["base_url"] == REDACTED and "10.0.0.2" not in str(public_recipe(two))
    monkeypatch.setenv("LDV_TEST_URLS", " http://h1/v1 , http://h2/v1,")
    from_env = EndpointConfig(base_url="http://ignored/v1", base_url_env="LDV_TEST_URLS")
    assert from_env.resolved_base_urls() == ["http://h1/v1", "http://h2/v1"]
    assert EndpointConfig(base_url="http://a/v1,b").resolved_base_urls() == ["http://a/v1,b"]  # a string: one URL
