"""The only module that imports `openai`: an async client for any OpenAI-compatible endpoint.

Owns: the HTTP calls (openai.AsyncOpenAI on the SDK's aiohttp transport, its own retries disabled; at most
2 x max_concurrency calls admitted at once, so a flood of callers cannot starve the replies), structured output
(`response_format` json_schema / json_object, or free text with a `[JSON]:` section), bounded
retries of transient errors (exponential backoff with jitter, `Retry-After` honoured, AIMD
concurrency on 429), bounded re-asks of invalid output (the error appended to the conversation,
rising temperature), the call ledger `llm_calls.sqlite` (a rerun replays finished calls and sends
none twice), token usage and cost, and page images as compact JPEG data URLs.
Does not own: prompts, tasks or semantic checks (qa.py), nor where the ledger lives (the pipeline).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import random
import re
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from longdocvqa.errors import ExternalServiceError, RecipeError
from longdocvqa.fingerprint import bytes_sha256
from longdocvqa.recipe import EndpointConfig

M = TypeVar("M", bound=BaseModel)
Message = dict[str, Any]
Check = Callable[[M], "Invalid | None"] | Callable[[M], Awaitable["Invalid | None"]]

LEDGER_VERSION = 1
_JPEG_QUALITY = 85
_FATAL_STATUS = (401, 403, 404)  # wrong key, model or URL: every call would fail the same way
_CONNECTIONS_PER_SHARD = 16  # pools scan their connections per request: several small pools beat one large one


def _http_client(timeout_s: float) -> Any:
    """The SDK's aiohttp transport (`openai[aiohttp]`, a third less CPU per call than httpx), else httpx."""
    import openai

    try:
        return openai.DefaultAioHttpClient(timeout=timeout_s)
    except RuntimeError:  # the aiohttp extra is not installed
        return None


# ----------------------------------------------------------------------------------------------- images


@dataclass(eq=False)
class ImageInput:
    """An image for a prompt: hashed from the caller's bytes, sent as a JPEG data URL of at most `max_pixels`."""

    data: bytes
    max_pixels: int
    quality: int = _JPEG_QUALITY
    _url: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def sha256(self) -> str:
        return bytes_sha256(self.data)

    @property
    def key(self) -> str:
        """What the ledger key holds instead of the bytes."""
        return f"sha256:{self.sha256}@{self.max_pixels}px/q{self.quality}"

    @property
    def data_url(self) -> str:
        """Encoded once per instance (the tasks of a segment share their page images), thread-safe."""
        with self._lock:
            if self._url is None:
                jpeg = encode_jpeg(self.data, self.max_pixels, self.quality)
                self._url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
            return self._url


def encode_jpeg(data: bytes, max_pixels: int, quality: int = _JPEG_QUALITY) -> bytes:
    """Re-encode any Pillow-readable image as RGB JPEG, downscaled (aspect kept) to at most `max_pixels`."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    if width * height > max_pixels:
        scale = (max_pixels / (width * height)) ** 0.5
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def text_part(text: str) -> dict[str, Any]:
    """A text content part."""
    return {"type": "text", "text": text}


def image_part(image: ImageInput) -> dict[str, Any]:
    """An image content part (rendered to a data URL only when actually sent)."""
    return {"type": "image_url", "image_url": {"url": image}}


def _render_messages(messages: Sequence[Message], for_wire: bool) -> list[Message]:
    """Replace ImageInput placeholders by data URLs (wire) or by their hashes (ledger key)."""

    def convert(value: Any) -> Any:
        if isinstance(value, ImageInput):
            return value.data_url if for_wire else value.key
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return [convert(m) for m in messages]


def _has_images(messages: Sequence[Message]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


# ----------------------------------------------------------------------------------------------- output parsing


@dataclass(frozen=True)
class Invalid:
    """Why an output was rejected: `reason` is a short slug (counted), `message` goes back to the model."""

    reason: str
    message: str


class OutputError(ValueError):
    def __init__(self, invalid: Invalid) -> None:
        super().__init__(invalid.message)
        self.invalid = invalid


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def split_evidence(text: str) -> tuple[str, str]:
    """Split the paper's two-part reply into (evidence description, JSON text); no marker means all JSON."""
    match = list(re.finditer(r"\[JSON\]\s*:?", text, flags=re.IGNORECASE))
    if not match:
        return "", text
    head, tail = text[: match[-1].start()], text[match[-1].end() :]
    head = re.sub(r"^\s*\[Evidence Description\]\s*:?", "", head, flags=re.IGNORECASE).strip()
    return head, tail


def extract_json(text: str) -> Any:
    """The first JSON object in `text` (code fences and surrounding prose ignored)."""
    body = _FENCE.sub("", text.strip())
    start = body.find("{")
    if start < 0:
        raise OutputError(Invalid("invalid_json", "no JSON object found in the reply"))
    try:
        return json.JSONDecoder(strict=False).raw_decode(body[start:])[0]
    except json.JSONDecodeError as exc:
        raise OutputError(Invalid("invalid_json", f"the JSON does not parse: {exc}")) from None


def parse_output(text: str, model: type[M]) -> tuple[M, str]:
    """Parse a reply into `model` (numbers in string fields are accepted as strings); returns (value, evidence)."""
    evidence, body = split_evidence(text)
    data = extract_json(body)
    try:
        return model.model_validate(data), evidence
    except ValidationError as exc:
        first_error = exc
    try:
        return model.model_validate(_numbers_to_strings(data)), evidence
    except ValidationError:
        raise OutputError(Invalid("schema_violation", _format_validation(first_error))) from None


def _numbers_to_strings(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _numbers_to_strings(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_numbers_to_strings(v) for v in data]
    if isinstance(data, int | float) and not isinstance(data, bool):
        return str(data)
    return data


def _format_validation(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:6]]
    return "the JSON does not match the schema: " + "; ".join(parts)


@lru_cache(maxsize=64)
def response_format(model: type[BaseModel] | None, mode: str) -> dict[str, Any] | None:
    """The `response_format` request field for a response model under the recipe's response mode (do not mutate)."""
    if model is None or mode == "text":
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    schema = model.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema, "strict": True}}


# ----------------------------------------------------------------------------------------------- ledger


@dataclass
class Completion:
    """One finished chat completion (fresh from the server or replayed from the ledger)."""

    key: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    replayed: bool = False


_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, template TEXT NOT NULL, task TEXT NOT NULL,
    request TEXT NOT NULL, response TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER,
    completion_tokens INTEGER, latency_s REAL, outcome TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS errors (
    key TEXT NOT NULL, model TEXT NOT NULL, attempt INTEGER NOT NULL, kind TEXT NOT NULL,
    status INTEGER, detail TEXT, latency_s REAL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Ledger:
    """SQLite record of every call, keyed by the request's content hash; finished calls are replayed."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA_SQL)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(LEDGER_VERSION),))

    def lookup(self, key: str) -> Completion | None:
        """The finished call with this key, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT response, finish_reason, prompt_tokens, completion_tokens, latency_s FROM calls WHERE key=?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        return Completion(key, row[0], row[1] or "", row[2] or 0, row[3] or 0, row[4] or 0.0, replayed=True)

    def request(self, key: str) -> dict[str, Any] | None:
        """The stored request of a finished call (model, template, messages with image hashes, schema, params)."""
        with self._lock:
            row = self._db.execute("SELECT request FROM calls WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def record(self, completion: Completion, *, model: str, template: str, task: str, request: str) -> None:
        """Store a finished call (committed at once, so an interrupted build loses nothing it paid for)."""
        values = (completion.key, model, template, task, request, completion.text, completion.finish_reason)
        usage = (completion.prompt_tokens, completion.completion_tokens, completion.latency_s)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,'completed',?)",
                (*values, *usage, time.time()),
            )

    def set_outcome(self, key: str, outcome: str) -> None:
        """Record how the reply was judged (ok, invalid_json, schema_violation, a semantic reason...)."""
        with self._lock:
            self._db.execute("UPDATE calls SET outcome=? WHERE key=?", (outcome, key))

    def record_error(self, key: str, model: str, attempt: int, kind: str, status: int | None, detail: str) -> None:
        """Log one failed attempt (never replayed: the next run tries again)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO errors VALUES (?,?,?,?,?,?,NULL,?)",
                (key, model, attempt, kind, status, detail, time.time()),
            )

    def count(self, table: str = "calls") -> int:
        """Number of rows in `calls` or `errors`."""
        if table not in ("calls", "errors"):
            raise ValueError(table)
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ----------------------------------------------------------------------------------------------- concurrency


class AdaptiveLimiter:
    """AIMD concurrency limit: +1/limit per success (about +1 per round trip), halved once per burst of 429s.

    Waiters queue in FIFO order and a release hands its slot to exactly one of them (no thundering herd).
    """

    def __init__(self, max_limit: int) -> None:
        self.max_limit = max_limit
        self.limit = float(max_limit)
        self.min_limit_seen = float(max_limit)
        self.in_flight = 0
        self.decreases = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def bind(self) -> None:
        """Forget waiters and slots of a finished event loop."""
        self._waiters = deque()
        self.in_flight = 0

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request starts in."""
        if not self._waiters and self.in_flight < max(1, int(self.limit)):
            self.in_flight += 1
            return self._epoch
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot just before the cancel: give it back
                self.in_flight -= 1
                self._wake()
            raise
        return self._epoch

    def release(self, epoch: int, throttled: bool) -> None:
        """Free a slot, widening the limit after a success and halving it after a 429 of the current epoch."""
        self.in_flight -= 1
        if throttled and epoch == self._epoch:
            self.limit = max(1.0, self.limit / 2)
            self.min_limit_seen = min(self.min_limit_seen, self.limit)
            self._epoch += 1
            self.decreases += 1
        elif not throttled:
            self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < max(1, int(self.limit)):
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)


# ----------------------------------------------------------------------------------------------- client


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


class BadResponse(Exception):
    """A 200 reply whose body is not a chat.completion object (treated as transient)."""


class ReplyTooLarge(Exception):
    """A reply body over the endpoint's max_reply_mb: refused unread (never stored, never re-sent)."""


@lru_cache(maxsize=1)
def _http_module() -> Any:
    """The SDK's HTTP library (httpx2 for openai >= 3, else httpx)."""
    try:
        import httpx2  # the openai SDK's own HTTP stack (openai >= 3)

        return httpx2
    except ImportError:
        import httpx

        return httpx


def _response_type() -> type:
    """The SDK's HTTP response class: `post(cast_to=..., stream=True)` returns the response with its body unread."""
    return _http_module().Response  # type: ignore[no-any-return]


async def read_capped(response: Any, cap_bytes: int) -> bytes:
    """The body of a streamed response, refused (ReplyTooLarge) once it passes `cap_bytes`; always closed."""
    try:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap_bytes:
            raise ReplyTooLarge(f"reply of {int(declared):,} bytes is over max_reply_mb ({cap_bytes:,} bytes)")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap_bytes:
                raise ReplyTooLarge(f"reply passed max_reply_mb ({cap_bytes:,} bytes) while streaming")
            chunks.append(chunk)
        return b"".join(chunks)
    except _http_module().TransportError as exc:  # the body broke off or stalled: as the SDK maps it for headers
        import openai

        if isinstance(exc, _http_module().TimeoutException):
            raise openai.APITimeoutError(request=response.request) from None
        raise openai.APIConnectionError(message=f"reading the reply: {exc}", request=response.request) from None
    finally:
        await response.aclose()


class CallFailed(Exception):
    """One call failed for good: transient errors outlasted the retry budget, or the server refused it (4xx)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class _TaskUsage:
    calls: int = 0
    sent: int = 0
    replayed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


class LLMClient:
    """Async client for one OpenAI-compatible endpoint, with retries, AIMD concurrency and the call ledger."""

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
        self.base_url = endpoint.resolved_base_url()
        if not self.base_url:
            where = f" or set ${endpoint.base_url_env}" if endpoint.base_url_env else ""
            raise RecipeError(f"endpoint for model {endpoint.model!r} has no base_url (give base_url{where})")
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.limiter = AdaptiveLimiter(endpoint.max_concurrency)
        self.retry_waits_s: list[float] = []
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self._usage: dict[str, _TaskUsage] = {}
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[Any] = []
        self._retired: list[Any] = []
        self._turn = 0
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}
        self._admission = asyncio.Semaphore(1)  # replaced per event loop in _bind_loop

    @property
    def model(self) -> str:
        return self.endpoint.model

    def _bind_loop(self) -> Any:
        """AsyncOpenAI and asyncio primitives belong to one event loop: rebuild them when it changes."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            import os

            import openai

            api_key = os.environ.get(self.endpoint.api_key_env or "", "") or "not-needed"
            self._retired += self._clients  # bound to a finished loop: keep them from closing themselves on this one
            shards = -(-self.endpoint.max_concurrency // _CONNECTIONS_PER_SHARD)
            self._clients = [
                openai.AsyncOpenAI(
                    base_url=self.base_url,
                    api_key=api_key,
                    timeout=self.endpoint.timeout_s,
                    max_retries=0,
                    http_client=_http_client(self.endpoint.timeout_s),
                )
                for _ in range(shards)
            ]
            self.limiter.bind()
            self._admission = asyncio.Semaphore(2 * self.endpoint.max_concurrency)
            self._in_flight = {}
            self._loop = loop

    def _http(self) -> Any:
        """The next AsyncOpenAI shard, round robin."""
        self._turn = (self._turn + 1) % len(self._clients)
        return self._clients[self._turn]

    def request_key(self, messages: Sequence[Message], template_id: str, schema: Any, params: dict[str, Any]) -> str:
        """Content hash of everything that determines the reply (never the API key or the base URL)."""
        return self._request(messages, template_id, schema, params)[0]

    def _request(
        self, messages: Sequence[Message], template_id: str, schema: Any, params: dict[str, Any]
    ) -> tuple[str, str]:
        """(key, canonical JSON of the request as the ledger stores it); key = sha256 of that JSON."""
        view = {
            "v": LEDGER_VERSION,
            "model": self.endpoint.model,
            "template": template_id,
            "messages": _render_messages(messages, for_wire=False),
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
        usage = self._usage.setdefault(task, _TaskUsage())
        usage.calls += 1
        usage.sent += int(sent)
        usage.replayed += int(not sent)
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        usage.latency_s += completion.latency_s if sent else 0.0

    async def _send_with_retries(
        self, key: str, messages: Sequence[Message], fmt: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        if _has_images(messages):  # JPEG re-encoding takes tens of ms per page: keep it off the event loop
            wire = await asyncio.to_thread(_render_messages, messages, True)
        else:
            wire = _render_messages(messages, for_wire=True)
        last = ("", "")
        for attempt in range(self.endpoint.max_retries + 1):
            epoch = await self.limiter.acquire()
            throttled = False
            try:
                return await self._send_once(key, wire, fmt, params)
            except Exception as exc:  # classified below: transient errors retry, the rest propagate
                kind, retryable, status, retry_after = _classify(exc)
                throttled = status == 429
                self.errors[kind] += 1
                self.ledger.record_error(key, self.endpoint.model, attempt, kind, status, str(exc)[:300])
                if status in _FATAL_STATUS:
                    raise ExternalServiceError(
                        f"{self.base_url}: HTTP {status} for model {self.model!r}: {exc}"
                    ) from None
                if not retryable:
                    raise CallFailed(kind, str(exc)[:300]) from None
                last = (kind, str(exc)[:300])
            finally:
                self.limiter.release(epoch, throttled)
            if attempt < self.endpoint.max_retries:
                await self._sleep_before_retry(attempt, retry_after)
        raise CallFailed("endpoint_error", f"{last[0]} after {self.endpoint.max_retries + 1} attempts: {last[1]}")

    async def _sleep_before_retry(self, attempt: int, retry_after_s: float | None) -> None:
        """Exponential backoff with jitter (half to full delay); a server's Retry-After is a floor."""
        backoff_s = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * self._rng.uniform(0.5, 1.0)
        if retry_after_s is not None:
            backoff_s = max(backoff_s, min(retry_after_s, self.max_retry_after_s))
        self.retry_waits_s.append(backoff_s)
        await asyncio.sleep(backoff_s)

    async def _send_once(
        self, key: str, wire: list[Message], fmt: dict[str, Any] | None, params: dict[str, Any]
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
        response = await self._http().post("/chat/completions", cast_to=_response_type(), body=body, stream=True)
        raw = await read_capped(response, int(self.endpoint.max_reply_mb * 1024 * 1024))
        latency_s = time.perf_counter() - start_s
        response = json.loads(raw)
        if not isinstance(response, dict) or not isinstance(response.get("choices"), list):
            raise BadResponse(f"HTTP 200 without a chat.completion object: {raw[:120]!r}")
        return _completion_from(key, response, latency_s)

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
        ep = self.endpoint
        by_task = {task: vars(u).copy() for task, u in sorted(self._usage.items())}
        totals = {k: sum(u[k] for u in by_task.values()) for k in vars(_TaskUsage())}
        summary: dict[str, Any] = {"model": ep.model, **totals, "by_task": by_task}
        if ep.price_input_per_mtok is not None or ep.price_output_per_mtok is not None:
            for entry in [summary, *by_task.values()]:
                entry["cost_usd"] = round(
                    entry["prompt_tokens"] * (ep.price_input_per_mtok or 0.0) / 1e6
                    + entry["completion_tokens"] * (ep.price_output_per_mtok or 0.0) / 1e6,
                    6,
                )
        summary["errors"] = dict(sorted(self.errors.items()))
        summary["outcomes"] = dict(sorted(self.outcomes.items()))
        summary["throttle_decreases"] = self.limiter.decreases
        return summary

    async def aclose(self) -> None:
        """Close the HTTP client (the ledger stays open: it may be shared)."""
        if self._loop is asyncio.get_running_loop():
            for client in self._clients:
                await client.close()
        self._clients, self._loop = [], None


def merge_usage(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two `LLMClient.usage()` summaries as one (client processes sharing an endpoint): numbers add up."""
    merged = dict(a)
    for key, value in b.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict):
            merged[key] = merge_usage(merged[key], value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = round(merged[key] + value, 6) if isinstance(value, float) else merged[key] + value
    return merged


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


def _completion_from(key: str, response: dict[str, Any], latency_s: float) -> Completion:
    """A Completion from a chat.completion JSON body (first choice; missing usage counts as 0)."""
    choices = response.get("choices") or [{}]
    choice = choices[0] or {}
    usage = response.get("usage") or {}
    return Completion(
        key=key,
        text=(choice.get("message") or {}).get("content") or "",
        finish_reason=choice.get("finish_reason") or "",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency_s,
    )


def _classify(exc: Exception) -> tuple[str, bool, int | None, float | None]:
    """(kind, retryable, HTTP status, Retry-After seconds) of a failed attempt; unknown errors propagate."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout", True, None, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", True, None, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in (408, 409, 429) or status >= 500
        kind = "rate_limited" if status == 429 else ("server_error" if status >= 500 else f"http_{status}")
        return kind, retryable, status, retry_after_s(exc.response.headers)
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | BadResponse):
        return "bad_response_body", True, None, None
    if isinstance(exc, ReplyTooLarge):
        return "reply_too_large", False, None, None  # asking again would pay for the same runaway reply
    raise exc


def retry_after_s(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None when absent or invalid."""
    from email.utils import parsedate_to_datetime

    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            continue
    return None
