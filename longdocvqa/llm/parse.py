"""Reading a model's reply: the paper's two-part reply, the first JSON object in it, and the response model.

Owns: `Invalid` (why an output was rejected), `OutputError`, `split_evidence`, `extract_json`, `parse_output`
and the `response_format` request field of a response model under the endpoint's response mode.
Does not own: semantic checks of the parsed value (generate/checks.py), re-asking (client.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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
