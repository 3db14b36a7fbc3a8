"""Running an evaluation: plan every (question, length), ask the model, extract, score, write the outputs.

Owns: the model and judge clients (llm's LLMClient on one call ledger
`OUT/llm_calls.sqlite`, so a rerun replays every finished call and a killed run resumes where it stopped), and the
order of work. A call that fails for good (transient errors past the retry budget) scores 0 for this run, is recorded
with its reason, and is tried again by the next run; a wrong key, model or URL stops the run (ExternalServiceError).
Does not own: the settings and prediction records (config.py), loading (data.py), prompts (prompt.py), rules
(score.py), files and plots (report.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from longdocvqa.assembly.tokens import TokenCounter
from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe_generate import EndpointConfig
from longdocvqa.core.safetext import clean_text, printable
from longdocvqa.core.settings import MAX_TOKENS
from longdocvqa.eval.config import EvalConfig, Prediction
from longdocvqa.eval.data import EvalQuestion, EvalSet, load_eval_set
from longdocvqa.eval.prompt import TEMPLATE_ID, PromptBuilder
from longdocvqa.eval.report import write_outputs
from longdocvqa.eval.score import (
    FAILED,
    extract_answer,
    parse_judge_reply,
    score_answer,
)
from longdocvqa.llm import CallFailed, Ledger, LLMClient

JUDGE_TEMPLATE_ID = "eval-extract@v1"
# Our wording of MMLongBench-Doc's answer-extraction prompt, with the same output contract.
JUDGE_PROMPT = """You read a model's free-form answer to a question about a document and extract its final answer.
- Write the extracted answer in one of these formats: Integer, Float, String or List (a Python list of strings).
- If the response says the question cannot be answered from the document, write "Not answerable".
- If the response only says it cannot read or see the document, write "Fail to answer".
- Be as concise as possible. Reply in exactly this format:
Extracted answer: [answer]
Answer format: [answer format]

Example:
Question: How many regulations are breached according to this report?
Response: The report lists ten breached regulations: Regulation 9, 10, 11, 12, 13, 17 and 18 (several twice).
Extracted answer: 10
Answer format: Integer

Question: {question}
Response: {response}
"""


@dataclass
class EvalResult:
    scores: dict[str, Any]
    predictions: list[Prediction]
    rejects: list[Any] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


def run_eval(
    config: EvalConfig,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    counter: TokenCounter | None = None,
) -> EvalResult:
    """Evaluate `config.endpoint` on every question at every length; write OUT/scores.json, predictions.jsonl and
    the plot. `on_total(n)` is told the number of model calls to make, `progress(1)` after each."""
    data = load_eval_set(config.dataset, config.split, revision=config.revision, dpi=config.dpi,
                         pdf_dir=config.pdf_dir)  # fmt: skip
    questions = data.questions[: config.limit] if config.limit else data.questions
    _check_input(data, questions, config)
    counter = counter or TokenCounter.load(config.tokenizer, config.min_pixels, config.max_pixels)
    builder = PromptBuilder(data.documents, counter, config.input_mode, config.seed, config.max_pixels)
    predictions = [Prediction(q, builder.plan(q, length)) for length in config.lengths for q in questions]
    todo = [p for p in predictions if not p.plan.skipped]
    if on_total is not None:
        on_total(len(todo))
    usage = asyncio.run(_ask_all(todo, builder, config, progress))
    scores, paths = write_outputs(config, data, predictions, usage)
    return EvalResult(scores, predictions, data.rejects, paths)


def _check_input(data: EvalSet, questions: list[EvalQuestion], config: EvalConfig) -> None:
    if not questions:
        raise RecipeError(f"{config.dataset}: no usable question in split {data.split!r}")
    if config.input_mode == "text" and any(doc.text is None for doc in data.documents.values()):
        raise RecipeError(f"{config.dataset}: text input needs the PDFs of the dataset's documents; pass --pdf-dir")


async def _ask_all(
    todo: list[Prediction], builder: PromptBuilder, config: EvalConfig, progress: Callable[[int], None] | None
) -> dict[str, Any]:
    ledger = Ledger(config.out / "llm_calls.sqlite")
    client = LLMClient(config.endpoint, ledger)
    judge = LLMClient(config.judge, ledger) if config.judge is not None else None
    gate = asyncio.Semaphore(2 * config.endpoint.max_concurrency)  # prompts with images are built only when admitted

    async def one(prediction: Prediction) -> None:
        async with gate:
            await _ask(prediction, builder, client, judge)
        if progress is not None:
            progress(1)

    try:
        await asyncio.gather(*(one(p) for p in todo))
    finally:
        await client.aclose()
        if judge is not None:
            await judge.aclose()
    usage = {"model": client.usage(), **({"judge": judge.usage()} if judge is not None else {})}
    ledger.close()
    return usage


async def _ask(prediction: Prediction, builder: PromptBuilder, client: LLMClient, judge: LLMClient | None) -> None:
    q = prediction.question
    messages = await asyncio.to_thread(builder.messages, q, prediction.plan)
    try:
        completion = await client.complete(messages, template_id=TEMPLATE_ID, task="eval")
    except CallFailed as exc:
        prediction.error, prediction.extracted, prediction.score = f"{exc.reason}: {exc.detail}", FAILED, 0.0
        return
    prediction.raw_answer, prediction.call_id = clean_text(completion.text), completion.key
    prediction.extracted = await _extract(q, completion.text, judge)
    prediction.score = score_answer(q.answer, prediction.extracted, q.answer_format)


async def _extract(question: EvalQuestion, reply: str, judge: LLMClient | None) -> str | list[str]:
    """The answer in `reply`: by the judge model when there is one, else by rule."""
    if judge is None:
        return extract_answer(reply, question.answer_format)
    prompt = JUDGE_PROMPT.format(question=question.question, response=reply)
    try:
        completion = await judge.complete([{"role": "user", "content": prompt}], template_id=JUDGE_TEMPLATE_ID,
                                          task="judge")  # fmt: skip
    except CallFailed:
        return FAILED
    return parse_judge_reply(completion.text)


def endpoint(base_url: str, model: str, api_key_env: str | None, **overrides: Any) -> EndpointConfig:
    """An EndpointConfig for evaluation: free-text replies, greedy decoding, short answers (MMLongBench: 128);
    RecipeError (exit 2) naming the option when a setting is out of range."""
    values: dict[str, Any] = {"base_url": base_url, "model": model, "api_key_env": api_key_env,
                              "response_mode": "text", "temperature": 0.0, "max_tokens": 128, "seed": 0}  # fmt: skip
    try:
        return EndpointConfig.model_validate({**values, **overrides})
    except ValidationError as exc:
        raise RecipeError(_option_errors(exc)) from None


def eval_config(**values: Any) -> EvalConfig:
    """EvalConfig from the command line's values; RecipeError (exit 2), one line naming each bad option."""
    try:
        return EvalConfig.model_validate(values)
    except ValidationError as exc:
        raise RecipeError(_option_errors(exc)) from None


_OPTION_NAMES = {"input_mode": "--input", "base_url": "--base-url", "api_key_env": "--api-key-env"}


def _option_errors(exc: ValidationError) -> str:
    """`--max-concurrency: Input should be ...; --lengths: ...`: pydantic's errors as the options a user typed."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "options"
        parts.append(f"{_OPTION_NAMES.get(field, '--' + field.replace('_', '-'))}: {err['msg']}")
    return "; ".join(parts)


def parse_lengths(text: str) -> list[int]:
    """`--lengths 32768,65536` as token counts; RecipeError (exit 2) for anything that is not a whole number."""
    lengths = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or len(part) > 9:
            raise RecipeError(f"--lengths: '{printable(part)}' is not a token count from 1 to {MAX_TOKENS:,}")
        lengths.append(int(part))
    return lengths
