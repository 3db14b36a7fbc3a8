"""An async client for any OpenAI-compatible endpoint: one structured ask, retried, re-asked and ledgered.

Owns: `LLMClient` (openai.AsyncOpenAI on the SDK's aiohttp transport, its own retries disabled, one set of clients
per base URL, each attempt routed by endpoints.py; at most 2 x max_concurrency x base URLs calls admitted at once,
so a flood of callers cannot starve the replies; identical calls in flight sent once), structured output
(`response_format` json_schema / json_object, or free text with a `[JSON]:`
section), bounded retries of transient errors (exponential backoff with jitter, `Retry-After` honoured, AIMD
concurrency on 429), bounded re-asks of invalid output (the error appended to the conversation, rising
temperature) and the request key of the call ledger (a rerun replays finished calls and sends none twice).
Does not own: the transport details (transport.py), the ledger's storage (ledger.py), parsing (parse.py),
prompts, tasks or semantic checks (generate/), nor where the ledger lives (the pipeline).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

from pydantic import BaseModel

from longdocvqa.core.errors import ExternalServiceError, RecipeError
from longdocvqa.core.recipe_generate import EndpointConfig
from longdocvqa.core.safetext import mask_secrets, register_secret
from longdocvqa.llm.endpoints import AllDrained, Route, Router
from longdocvqa.llm.ledger import Completion, Ledger
from longdocvqa.llm.limiter import AdaptiveLimiter
from longdocvqa.llm.messages import Message, has_images, render_messages
from longdocvqa.llm.parse import Invalid, M, OutputError, parse_output, response_format
from longdocvqa.llm.transport import (
    BadResponse,
    CallFailed,
    classify,
    completion_from,
    http_client,
    read_capped,
    response_type,
)
from longdocvqa.llm.usage import TaskUsage, usage_summary

Check = Callable[[M], "Invalid | None"] | Callable[[M], Awaitable["Invalid | None"]]

REQUEST_KEY_VERSION = 1  # part of every ledger key: changing it makes every finished call look new (paid again)
_FATAL_STATUS = (401, 403, 404)  # wrong key, model or URL: every call would fail the same way
_CONNECTIONS_PER_SHARD = 16  # pools scan their connections per request: several small pools beat one large one


@dataclass
class Answer(Generic[M]):
    """The outcome of a structured ask: a value, or the reason it was dropped."""

    value: M | None
    evidence_description: str = ""
    call_ids: list[str] = field(default_factory=list)
    attempts: int = 0
    reason: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


class LLMClient:
    """Async client for one OpenAI-compatible endpoint (one or several servers of its model), with retries,
    AIMD concurrency per server, least-outstanding routing and the call ledger."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        ledger: Ledger | str | Path | None = None,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        seed: int = 0,
    ) -> None:
        self.endpoint = endpoint
        urls = endpoint.resolved_base_urls()
        if not urls:
            where = f" or set ${endpoint.base_url_env}" if endpoint.base_url_env else ""
            raise RecipeError(f"endpoint for model {endpoint.model!r} has no base_url (give base_url{where})")
        self.router = Router(urls, endpoint.max_concurrency, endpoint.drain_after_failures, endpoint.drain_cooldown_s)
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.retry_waits_s: list[float] = []
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self._usage: dict[str, TaskUsage] = {}
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retired: list[Any] = []
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}
        self._admission = asyncio.Semaphore(1)  # replaced per event loop in _bind_loop

    @property
    def model(self) -> str:
        return self.endpoint.model

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The first server's AIMD limiter (the only one with a single base URL)."""
        return self.router.routes[0].limiter

    def _bind_loop(self) -> Any:
        """AsyncOpenAI and asyncio primitives belong to one event loop: rebuild them when it changes."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            import os

            import openai

            api_key = os.environ.get(self.endpoint.api_key_env or "", "") or "not-needed"
            register_secret(api_key)  # a server that echoes the key gets it masked in every message and row
            shards = -(-self.endpoint.max_concurrency // _CONNECTIONS_PER_SHARD)
            for route in self.router.routes:
                self._retired += route.clients  # bound to a finished loop: keep them from closing on this one
                route.clients = [
                    openai.AsyncOpenAI(
                        base_url=route.url,
                        api_key=api_key,
                        timeout=self.endpoint.timeout_s,
                        max_retries=0,
                        http_client=http_client(self.endpoint.timeout_s),
                    )
                    for _ in range(shards)
                ]
            self.router.bind()
            self._admission = asyncio.Semaphore(2 * self.endpoint.max_concurrency * len(self.router.routes))
            self._in_flight = {}
            self._loop = loop

    def request_key(self, messages: Sequence[Message], template_id: str, schema: Any, params: dict[str, Any]) -> str:
        """Content hash of everything that determines the reply (never the API key or the base URL)."""
        return self._request(messages, template_id, schema, params)[0]

    def _request(
        self, messages: Sequence[Message], template_id: str, schema: Any, params: dict[str, Any]
    ) -> tuple[str, str]:
        """(key, canonical JSON of the request as the ledger stores it); key = sha256 of that JSON."""
        view = {
            "v": REQUEST_KEY_VERSION,
            "model": self.endpoint.model,
            "template": template_id,
            "messages": render_messages(messages, for_wire=False),
            "schema": schema,
            "params": params,
        }
        text = json.dumps(view, sort_keys=True, separators=(",", ":"), ensure_ascii=False)  # = canonical_json
        return hashlib.sha256(text.encode("utf-8")).hexdigest(), text

    def _params(self, temperature: float | None) -> dict[str, Any]:
        ep = self.endpoint
        temp = ep.temperature if temperature is None else temperature
        return {
            "temperature": temp,
            "max_tokens": ep.max_tokens,
            "seed": ep.seed,
            "response_mode": ep.response_mode,
            "extra_body": ep.extra_body,
        }

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        template_id: str,
        task: str,
        response_model: type[BaseModel] | None = None,
        temperature: float | None = None,
    ) -> Completion:
        """One chat completion: replayed from the ledger if finished before, else sent (with transient retries)."""
        self._bind_loop()
        # At most 2 x max_concurrency calls are past this gate: a caller that gathers thousands of calls at once
        # must not spend the event loop on hashing them all while the replies of those in flight wait.
        async with self._admission:
            return await self._complete(messages, template_id, task, response_model, temperature)

    async def _complete(
        self,
        messages: Sequence[Message],
        template_id: str,
        task: str,
        response_model: type[BaseModel] | None,
        temperature: float | None,
    ) -> Completion:
        fmt = response_format(response_model, self.endpoint.response_mode)
        params = self._params(temperature)
        key, request = self._request(messages, template_id, fmt, params)
        found = self.ledger.lookup(key)
        if found is None and key in self._in_flight:
            found = await asyncio.shield(self._in_flight[key])
        if found is not None:
            self._count(task, found, sent=False)
            return found
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            completion = await self._send_with_retries(key, messages, fmt, params)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the waiters (if any) re-raise it themselves
            raise
        finally:
            self._in_flight.pop(key, None)
        future.set_result(completion)
        self.ledger.record(completion, model=self.endpoint.model, template=template_id, task=task, request=request)
        self._count(task, completion, sent=True)
        return completion

    def _count(self, task: str, completion: Completion, sent: bool) -> None:
        usage = self._usage.setdefault(task, TaskUsage())
        usage.calls += 1
        usage.sent += int(sent)
        usage.replayed += int(not sent)
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        usage.latency_s += completion.latency_s if sent else 0.0

    async def _send_with_retries(
        self, key: str, messages: Sequence[Message], fmt: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        if has_images(messages):  # JPEG re-encoding takes tens of ms per page: keep it off the event loop
            wire = await asyncio.to_thread(render_messages, messages, True)
        else:
            wire = render_messages(messages, for_wire=True)
        last: tuple[str, str] = ("", "")
        failed_on: Route | None = None
        for attempt in range(self.endpoint.max_retries + 1):
            retry_after: float | None = None
            try:
                route, epoch = await self.router.acquire(avoid=failed_on)
            except AllDrained as exc:  # every server drained: the attempt fails unsent (and is not paid)
                self.errors["all_drained"] += 1
                last = ("all_drained", str(exc))
            else:
                result = await self._attempt(route, epoch, key, attempt, (wire, fmt, params))
                if isinstance(result, Completion):
                    return result
                (kind, detail, retry_after), failed_on = result, route
                last = (kind, detail)
            if attempt < self.endpoint.max_retries:
                await self._sleep_before_retry(attempt, retry_after)
        raise CallFailed("endpoint_error", f"{last[0]} after {self.endpoint.max_retries + 1} attempts: {last[1]}")

    async def _attempt(
        self, route: Route, epoch: int, key: str, attempt: int, request: tuple[list[Message], Any, dict[str, Any]]
    ) -> Completion | tuple[str, str, float | None]:
        """One request on `route`: the completion, or (kind, detail, Retry-After) of a transient failure; a fatal
        status raises ExternalServiceError, another non-retryable failure CallFailed. The slot is always freed."""
        outcome = "cancelled"  # unless the attempt ends below: the slot is given back without a verdict
        try:
            completion = await self._send_once(route, key, *request)
            outcome = "ok"
            return completion
        except Exception as exc:  # classified below: transient errors retry, the rest propagate
            kind, retryable, status, retry_after = classify(exc)
            outcome = kind
            self.errors[kind] += 1
            detail = mask_secrets(str(exc))  # before cutting: a key cut in half would not be found
            self.ledger.record_error(key, self.endpoint.model, attempt, kind, status, detail[:300])
            if status in _FATAL_STATUS:
                raise ExternalServiceError(f"{route.url}: HTTP {status} for model {self.model!r}: {detail}") from None
            if not retryable:
                raise CallFailed(kind, detail[:300]) from None
            return kind, detail[:300], retry_after
        finally:
            self.router.release(route, epoch, outcome)

    async def _sleep_before_retry(self, attempt: int, retry_after_s: float | None) -> None:
        """Exponential backoff with jitter (half to full delay); a server's Retry-After is a floor."""
        backoff_s = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * self._rng.uniform(0.5, 1.0)
        if retry_after_s is not None:
            backoff_s = max(backoff_s, min(retry_after_s, self.max_retry_after_s))
        self.retry_waits_s.append(backoff_s)
        await asyncio.sleep(backoff_s)

    async def _send_once(
        self, route: Route, key: str, wire: list[Message], fmt: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": wire,
            "temperature": params["temperature"],
            "max_tokens": params["max_tokens"],
        }
        if params["seed"] is not None:
            body["seed"] = params["seed"]
        if fmt is not None:
            body["response_format"] = fmt
        body.update(self.endpoint.extra_body)
        start_s = time.perf_counter()
        # client.post is the openai SDK's documented path for custom bodies: errors are mapped as for
        # chat.completions.create, without re-walking the messages against TypedDicts or building response
        # models (about 1 ms of CPU per call, a third of the client's cost at 64 concurrent requests).
        # The body is streamed and refused past max_reply_mb, so a runaway server cannot fill memory or the ledger.
        response = await route.http().post("/chat/completions", cast_to=response_type(), body=body, stream=True)
        raw = await read_capped(response, int(self.endpoint.max_reply_mb * 1024 * 1024))
        latency_s = time.perf_counter() - start_s
        response = json.loads(raw)
        if not isinstance(response, dict) or not isinstance(response.get("choices"), list):
            raise BadResponse(f"HTTP 200 without a chat.completion object: {raw[:120]!r}")
        return completion_from(key, response, latency_s)

    async def ask(
        self,
        messages: Sequence[Message],
        response_model: type[M],
        *,
        template_id: str,
        task: str,
        temperatures: Sequence[float] = (),
        max_invalid_retries: int = 0,
        check: Check[M] | None = None,
    ) -> Answer[M]:
        """Ask for one `response_model`; invalid output is re-asked with the error appended, then dropped."""
        conversation = list(messages)
        answer: Answer[M] = Answer(value=None)
        for attempt in range(max_invalid_retries + 1):
            temperature = temperatures[min(attempt, len(temperatures) - 1)] if temperatures else None
            try:
                completion = await self.complete(
                    conversation,
                    template_id=template_id,
                    task=task,
                    response_model=response_model,
                    temperature=temperature,
                )
            except CallFailed as exc:
                answer.reason, answer.detail = exc.reason, exc.detail
                break
            answer.attempts, invalid = attempt + 1, None
            answer.call_ids.append(completion.key)
            try:
                value, evidence = parse_output(completion.text, response_model)
                invalid = await _run_check(check, value)
            except OutputError as exc:
                invalid = _truncation(exc.invalid, completion)
            self.ledger.set_outcome(completion.key, invalid.reason if invalid else "ok")
            self.outcomes[invalid.reason if invalid else "ok"] += 1
            if invalid is None:
                answer.value, answer.evidence_description, answer.reason, answer.detail = value, evidence, "", ""
                return answer
            answer.reason, answer.detail = invalid.reason, invalid.message
            conversation += [{"role": "assistant", "content": _echo(completion.text)}, reask_message(invalid)]
        return answer

    def usage(self) -> dict[str, Any]:
        """Calls, tokens and cost per task (replayed calls count tokens once paid, not new requests)."""
        decreases = sum(r.limiter.decreases for r in self.router.routes)
        summary = usage_summary(self.endpoint, self._usage, self.errors, self.outcomes, decreases)
        if len(self.router.routes) > 1:
            summary["endpoints"] = self.router.usage()
        return summary

    async def aclose(self) -> None:
        """Close the HTTP client (the ledger stays open: it may be shared)."""
        if self._loop is asyncio.get_running_loop():
            for route in self.router.routes:
                for client in route.clients:
                    await client.close()
        for route in self.router.routes:
            route.clients = []
        self._loop = None


_MAX_ECHO_CHARS = 65_536  # far above any reply within max_tokens; a runaway reply is not sent back whole


def _echo(text: str) -> str:
    """The invalid reply as the re-ask repeats it: whole when of a sane size, else its head and a note."""
    if len(text) <= _MAX_ECHO_CHARS:
        return text
    return text[:_MAX_ECHO_CHARS] + f"\n[... {len(text) - _MAX_ECHO_CHARS:,} more characters cut]"


def reask_message(invalid: Invalid) -> Message:
    """The user turn appended after an invalid reply."""
    return {
        "role": "user",
        "content": f"Your previous reply was rejected ({invalid.reason}): {invalid.message}\n"
        "Write a corrected reply in the same required format, fixing this problem.",
    }


async def _run_check(check: Check[M] | None, value: M) -> Invalid | None:
    if check is None:
        return None
    result = check(value)
    if asyncio.iscoroutine(result):
        result = await result
    return result  # type: ignore[return-value]


def _truncation(invalid: Invalid, completion: Completion) -> Invalid:
    """An unparseable reply cut at max_tokens is reported as `truncated`."""
    if completion.finish_reason == "length" and invalid.reason == "invalid_json":
        return Invalid("truncated", f"the reply hit max_tokens before the JSON was complete ({invalid.message})")
    return invalid
