"""The model-call layer, and the only package that imports `openai`: any OpenAI-compatible endpoint.

Modules: `client` (LLMClient: admission gate, in-flight dedup, retries, re-asks, request keys), `endpoints`
(several servers of one model: least-outstanding routing, draining a failing one), `transport`
(the SDK's HTTP transport, capped reply bodies, error classification), `ledger` (SQLite call ledger with
numbered migrations), `parse` (replies into response models), `limiter` (AIMD concurrency), `messages`
(content parts, page images as JPEG data URLs), `usage` (tokens and cost).
Does not own: prompts, tasks or semantic checks (generate/), nor where the ledger lives (the pipeline).
"""

from longdocvqa.llm.client import Answer, Check, LLMClient, reask_message
from longdocvqa.llm.endpoints import AllDrained, Route, Router
from longdocvqa.llm.ledger import Completion, Ledger
from longdocvqa.llm.limiter import AdaptiveLimiter
from longdocvqa.llm.messages import ImageInput, Message, encode_jpeg, image_part, text_part
from longdocvqa.llm.parse import Invalid, OutputError, extract_json, parse_output, response_format, split_evidence
from longdocvqa.llm.transport import BadResponse, CallFailed, ReplyTooLarge, read_capped, retry_after_s
from longdocvqa.llm.usage import merge_usage

__all__ = [
    "AdaptiveLimiter",
    "AllDrained",
    "Answer",
    "BadResponse",
    "CallFailed",
    "Check",
    "Completion",
    "ImageInput",
    "Invalid",
    "LLMClient",
    "Ledger",
    "Message",
    "OutputError",
    "ReplyTooLarge",
    "Route",
    "Router",
    "encode_jpeg",
    "extract_json",
    "image_part",
    "merge_usage",
    "parse_output",
    "read_capped",
    "reask_message",
    "response_format",
    "retry_after_s",
    "split_evidence",
    "text_part",
]
