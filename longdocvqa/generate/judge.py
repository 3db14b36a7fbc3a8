"""The rubric judge (`generate.judge`): one call per QA scores the recipe's rubrics 1-5 from the evidence pages.

Owns: the judge's prompt (package data `prompts/judge_qa_<version>.md`, rubric descriptions included), its reply
model (one 1-5 integer per rubric, built from the recipe's rubric names), the weighted score and the verdict (the
lowest-scoring rubric named when the score is under the threshold). Does not own: the call (llm/), the evidence page
parts (prompts.py) or where the judge runs in generation (openai.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe_generate import JudgeConfig
from longdocvqa.core.records import QA
from longdocvqa.generate.prompts import MODALITY, fill, load_prompt, message_content
from longdocvqa.llm import LLMClient, Message, text_part


@dataclass(frozen=True)
class Verdict:
    """A judged QA: weighted score, per-rubric scores, and the failing rubric (None when it passes)."""

    score: float
    rubrics: dict[str, int]
    failing: str | None
    reason: str


def rubric_descriptions(config: JudgeConfig) -> dict[str, str]:
    """What each of the recipe's rubrics means: the prompt file's descriptions, then the recipe's own."""
    known = dict(
        line.split(":", 1) for line in load_prompt("judge_qa", config.prompt_version)["rubrics"].splitlines() if line
    )
    known = {k.strip(): v.strip() for k, v in known.items()} | config.descriptions
    missing = sorted(set(config.rubrics) - set(known))
    if missing:
        raise RecipeError(f"generate.judge.rubrics: no description of {missing} (generate.judge.descriptions)")
    return {name: known[name] for name in config.rubrics}


def reply_model(config: JudgeConfig) -> type[BaseModel]:
    """The judge's reply: {"scores": {rubric: 1..5, ...}, "reason": str} (also the response_format schema)."""
    fields: dict[str, Any] = {name: (int, Field(ge=1, le=5)) for name in config.rubrics}
    strict = ConfigDict(extra="forbid")
    scores = create_model("RubricScores", __config__=strict, **fields)
    return create_model("JudgeQAReply", __config__=strict, scores=(scores, ...), reason=(str, ...))


def verdict(config: JudgeConfig, scores: dict[str, int], reason: str) -> Verdict:
    """Weighted score of `scores`; under the threshold, the rubric that lost the most weighted points fails."""
    weights = config.weights()
    score = round(sum(weights[name] * scores[name] for name in weights), 4)
    failing = None
    if score < config.threshold:
        failing = max(weights, key=lambda name: (weights[name] * (5 - scores[name]), name))
    return Verdict(score, dict(scores), failing, reason)


def judge_messages(qa: QA, task: str, pages: list[dict[str, Any]], config: JudgeConfig, input_mode: str) -> list:
    """System + user turn: the evidence pages, then the QA and the rubrics to score."""
    prompt = load_prompt("judge_qa", config.prompt_version)
    rubrics = "\n".join(f"- {name}: {text}" for name, text in rubric_descriptions(config).items())
    question = fill(
        prompt["question"],
        task=task,
        question=qa.question,
        answer=json.dumps(qa.answer, ensure_ascii=False),
        answer_format=qa.answer_format,
        evidence_pages=", ".join(map(str, sorted(set(qa.evidence_pages)))),
        rubrics=rubrics,
        score_keys=", ".join(f'"{name}": <1-5>' for name in config.rubrics),
    )
    modality = MODALITY[input_mode][0]
    user = message_content([text_part(fill(prompt["user"], modality=modality)), *pages, text_part(question)])
    messages: list[Message] = [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]
    return messages


async def judge_qa(
    qa: QA, task: str, pages: list[dict[str, Any]], judge: LLMClient, config: JudgeConfig, input_mode: str
) -> tuple[Verdict | None, str]:
    """One judge call through the ledger; (verdict, "") or (None, why no usable reply came)."""
    messages = judge_messages(qa, task, pages, config, input_mode)
    template = f"judge_qa@{config.prompt_version}:{','.join(config.rubrics)}"
    reply = await judge.ask(messages, reply_model(config), template_id=template, task=f"rubric/{task}")
    if reply.value is None:
        return None, f"{reply.reason}: {reply.detail}"
    data = reply.value.model_dump()
    return verdict(config, data["scores"], data["reason"]), ""
