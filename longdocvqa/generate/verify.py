"""Answerability verification: a second call answers the question from the evidence pages alone.

Owns: `verify_qa` (the verifier's answer, matched exactly for numbers and short strings, else by a judge call),
`one_page_enough` (multi-page necessity: can one evidence page alone give the answer?), `answers_match`, and the
reply models of the verifier and the agreement judge.
Does not own: the generation call (openai.py) or its prompts (prompts.py).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import QA, AnswerFormat
from longdocvqa.generate.checks import normalise, parse_number
from longdocvqa.generate.prompts import MODALITY, fill, load_prompt, message_content
from longdocvqa.llm import LLMClient, Message, text_part


class VerifyReply(BaseModel):
    """The verifier's answer to a question, seeing only the evidence pages."""

    model_config = ConfigDict(extra="forbid")
    answer: str | list[str]


class JudgeReply(BaseModel):
    """A judge's verdict on whether two answers agree."""

    model_config = ConfigDict(extra="forbid")
    same: bool
    reason: str


_FORMAT_HINT = {
    "String": "a short phrase or sentence",
    "Integer": "an integer",
    "Float": "a number, possibly with a unit, currency or %",
    "List": "a JSON list of short strings",
}
_SHORT_WORDS = 6


def answers_match(expected: str | list[str], got: str | list[str], fmt: AnswerFormat) -> bool | None:
    """Normalised exact match for numbers and short strings; None when a judge must decide."""
    if fmt in ("Integer", "Float"):
        want, have = parse_number(_first(expected)), parse_number(_first(got))
        return want is not None and have is not None and abs(want - have) <= 1e-6 * max(1.0, abs(want))
    want_items = {normalise(a) for a in (expected if isinstance(expected, list) else [expected])}
    have_items = {normalise(a) for a in (got if isinstance(got, list) else [got])}
    if any(len(a.split()) > _SHORT_WORDS for a in want_items | have_items):
        return None
    return want_items == have_items


def _first(value: str | list[str]) -> str:
    return value[0] if isinstance(value, list) and value else value if isinstance(value, str) else ""


async def verify_qa(
    qa: QA, pages: list[dict[str, Any]], verifier: LLMClient, config: GenerateConfig, task: str
) -> tuple[str, str]:
    """Ask `verifier` the question over only the evidence pages; returns (outcome, detail).

    Outcomes: `exact` or `judge` (agreed), `unverified` (disagreed), `verify_failed` (no usable reply).
    """
    version = config.prompt_version
    messages = _verify_messages(qa, pages, config)
    reply = await verifier.ask(messages, VerifyReply, template_id=f"verify@{version}", task=f"verify/{task}")
    if reply.value is None:
        return "verify_failed", f"{reply.reason}: {reply.detail}"
    match = answers_match(qa.answer, reply.value.answer, qa.answer_format)
    if match is not None:
        return ("exact" if match else "unverified"), f"verifier answered {reply.value.answer!r}"
    return await _judge(qa, reply.value.answer, verifier, version, task)


def _verify_messages(qa: QA, pages: list[dict[str, Any]], config: GenerateConfig) -> list[Message]:
    prompt = load_prompt("verify", config.prompt_version)
    modality = MODALITY[config.input_mode][0]
    question = fill(
        prompt["question"],
        question=qa.question,
        answer_format=qa.answer_format,
        format_hint=_FORMAT_HINT[qa.answer_format],
    )
    user = message_content([text_part(fill(prompt["user"], modality=modality)), *pages, text_part(question)])
    return [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]


async def _judge(qa: QA, candidate: str | list[str], verifier: LLMClient, version: str, task: str) -> tuple[str, str]:
    prompt = load_prompt("judge", version)
    user = fill(
        prompt["user"],
        question=qa.question,
        expected=json.dumps(qa.answer, ensure_ascii=False),
        candidate=json.dumps(candidate, ensure_ascii=False),
    )
    messages = [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]
    verdict = await verifier.ask(messages, JudgeReply, template_id=f"judge@{version}", task=f"judge/{task}")
    if verdict.value is None:
        return "verify_failed", f"judge: {verdict.reason}: {verdict.detail}"
    detail = f"verifier answered {candidate!r}; judge: {verdict.value.reason}"
    return ("judge" if verdict.value.same else "unverified"), detail


async def one_page_enough(
    qa: QA, pages: dict[int, list[dict[str, Any]]], verifier: LLMClient, config: GenerateConfig, task: str
) -> int | None:
    """Multi-page necessity: the first evidence page from which alone the verifier gives the QA's answer, else None.

    One verify call per evidence page (stopping at the first that suffices), matched by normalised equality only:
    no judge call, so the cost stays at most one call per page.
    """
    for page, parts in sorted(pages.items()):
        reply = await verifier.ask(
            _verify_messages(qa, parts, config), VerifyReply, template_id=f"verify@{config.prompt_version}",
            task=f"necessity/{task}",
        )  # fmt: skip
        if reply.value is not None and _same(qa.answer, reply.value.answer, qa.answer_format):
            return page
    return None


def _same(expected: str | list[str], got: str | list[str], fmt: AnswerFormat) -> bool:
    match = answers_match(expected, got, fmt)
    if match is not None:
        return match
    as_set = lambda v: {normalise(a) for a in (v if isinstance(v, list) else [v])}  # noqa: E731
    return as_set(expected) == as_set(got)
