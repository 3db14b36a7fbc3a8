"""The HTTP side of a call: the SDK's transport, a size-capped reply body, and what a failed attempt means.

Owns: the aiohttp/httpx transport choice, `read_capped` (a reply over max_reply_mb is refused unread),
the classification of failed attempts (retryable or not, HTTP status, Retry-After), the chat.completion body
as a `Completion`, and the exceptions a call ends with (`CallFailed`, `BadResponse`, `ReplyTooLarge`).
Does not own: the retry loop, the admission gate or the ledger (client.py, ledger.py).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from longdocvqa.llm.ledger import Completion


def http_client(timeout_s: float) -> Any:
    """The SDK's aiohttp transport (`openai[aiohttp]`, a third less CPU per call than httpx), else httpx."""
    import openai

    try:
        return openai.DefaultAioHttpClient(timeout=timeout_s)
    except RuntimeError:  # the aiohttp extra is not installed
        return None


class BadResponse(Exception):
    """A 200 reply whose body is not a chat.completion object (treated as transient)."""


class ReplyTooLarge(Exception):
    """A reply body over the endpoint's max_reply_mb: refused unread (never stored, never re-sent)."""


@lru_cache(maxsize=1)
def http_module() -> Any:
    """The SDK's HTTP library (httpx2 for openai >= 3, else httpx)."""
    try:
        import httpx2  # the openai SDK's own HTTP stack (openai >= 3)

        return httpx2
    except ImportError:
        import httpx

        return httpx


def response_type() -> type:
    """The SDK's HTTP response class: `post(cast_to=..., stream=True)` returns the response with its body unread."""
    return http_module().Response  # type: ignore[no-any-return]


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
    except http_module().TransportError as exc:  # the body broke off or stalled: as the SDK maps it for headers
        import openai

        if isinstance(exc, http_module().TimeoutException):
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


def completion_from(key: str, response: dict[str, Any], latency_s: float) -> Completion:
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


def classify(exc: Exception) -> tuple[str, bool, int | None, float | None]:
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
