"""The model generator (`generator.kind: openai`): one call per question to any OpenAI-compatible endpoint.

Owns: `OpenAIGenerator`, the calls of one document (every (segment, task) at once, `questions_per_segment` in
series, later calls seeing earlier questions), semantic checks as the client's re-ask check, and the optional
review of each QA (verification, multi-page necessity, the rubric judge). Does not own: prompts (prompts.py),
checks (checks.py), HTTP or the ledger (llm/).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import QA, LayoutDoc, PdfDoc, QARecord, Reject, Segment, Task
from longdocvqa.generate.base import PageImage, item_id, make_record, verification_label
from longdocvqa.generate.checks import check_generated
from longdocvqa.generate.judge import Verdict, judge_qa, rubric_descriptions
from longdocvqa.generate.prompts import (
    PromptContext,
    load_exemplars,
    load_prompt,
    page_parts,
    pick_exemplars,
    prompt_messages,
    task_strings,
)
from longdocvqa.generate.verify import one_page_enough, verify_qa
from longdocvqa.llm import Answer, ImageInput, Invalid, Ledger, LLMClient


@dataclass
class Job:
    """Shared inputs of one document's model calls."""

    doc: PdfDoc
    layout: LayoutDoc
    config: GenerateConfig
    seed: int
    client: LLMClient
    verifier: LLMClient | None
    page_image: PageImage | None
    exemplars: list[dict[str, Any]]
    images: dict[int, ImageInput] = field(default_factory=dict)
    judge: LLMClient | None = None


async def _generate_segment_task(job: Job, segment: Segment, task: Task, pages: list[dict]) -> tuple[list, list]:
    """`questions_per_segment` QAs for one (segment, task), one call each; later calls see earlier questions."""
    records: list[QARecord] = []
    rejects: list[Reject] = []
    previous: list[str] = []
    for k in range(job.config.questions_per_segment):
        record, reject = await _generate_one(job, segment, task, pages, previous, k)
        if record is not None:
            records.append(record)
            previous.append(record.question)
        if reject is not None:
            rejects.append(reject)
    return records, rejects


async def _generate_one(
    job: Job, segment: Segment, task: Task, pages: list[dict], previous: list[str], k: int
) -> tuple[QARecord | None, Reject | None]:
    cfg = job.config
    rng = random.Random(content_hash({"seed": job.seed, "segment": segment.id, "task": task, "k": k}))
    ctx = PromptContext(
        segment,
        task,
        cfg,
        job.client.endpoint.response_mode,
        pages,
        pick_exemplars(job.exemplars, task, cfg.num_exemplars, rng),
        list(previous),
        k,
    )
    text_outcome: dict[str, str] = {}

    def check(qa: QA) -> Invalid | None:
        problem, text_outcome["value"] = check_generated(qa, task, segment, job.layout)
        return problem

    answer: Answer[QA] = await job.client.ask(
        prompt_messages(ctx),
        QA,
        template_id=f"qa/{task}@{cfg.prompt_version}",
        task=task,
        temperatures=cfg.temperature_schedule,
        max_invalid_retries=cfg.max_invalid_retries,
        check=check,
    )
    item = item_id(segment, task, k)
    if answer.value is None:
        extra: dict[str, object] = {"attempts": answer.attempts, "call_ids": answer.call_ids}
        return None, Reject(stage="generate", item=item, reason=answer.reason, detail=answer.detail[:500], extra=extra)
    reviewed = await _review(job, segment, task, answer.value, item)
    if isinstance(reviewed, Reject):
        return None, reviewed
    qa, task, answerability, verdict = reviewed
    record = make_record(
        qa,
        task=task,
        segment=segment,
        generator=job.client.model,
        prompt_version=cfg.prompt_version,
        evidence_description=answer.evidence_description,
        call_id=answer.call_ids[-1],
        verification=verification_label(text_outcome.get("value", "not_run"), answerability),
        judge=None if verdict is None else (verdict.score, verdict.rubrics),
    )
    return record, None


Reviewed = tuple[QA, Task, str, Verdict | None]


async def _review(job: Job, segment: Segment, task: Task, qa: QA, item: str) -> Reviewed | Reject:
    """Verification, multi-page necessity and the rubric judge, each where the recipe turns it on:
    (the QA, its task, the answerability label, the judge's verdict) or the Reject that drops it."""
    cfg, answerability = job.config, "not_run"
    if cfg.verify.enabled:
        outcome, detail = await _verify(job, segment, task, qa)
        if outcome in ("unverified", "verify_failed"):
            return Reject(stage="verify", item=item, reason=outcome, detail=detail[:500], extra={"task": task})
        answerability = outcome
        if cfg.verify.multi_page != "off" and task in MULTI_PAGE_TASKS and len(set(qa.evidence_pages)) > 1:
            checked = await _necessity(job, segment, task, qa, item)
            if isinstance(checked, Reject):
                return checked
            qa, task, answerability = checked[0], checked[1], f"{answerability};multi_page={checked[2]}"
    if not cfg.judge.enabled:
        return qa, task, answerability, None
    pages = _evidence_parts(job, segment, sorted(set(qa.evidence_pages)))
    verdict, why = await judge_qa(qa, task, pages, job.judge or job.client, cfg.judge, cfg.input_mode)
    if verdict is None:
        return Reject(stage="judge", item=item, reason="judge_failed", detail=why[:500], extra={"task": task})
    if verdict.failing is not None:
        detail = (f"score {verdict.score:.2f} < threshold {cfg.judge.threshold:g}; failing rubric {verdict.failing} "
                  f"({verdict.rubrics[verdict.failing]}/5): {verdict.reason}")  # fmt: skip
        extra = {"task": task, "rubric": verdict.failing, "score": verdict.score, "scores": verdict.rubrics}
        return Reject(stage="judge", item=item, reason="below_threshold", detail=detail[:500], extra=extra)
    return qa, task, answerability, verdict


MULTI_PAGE_TASKS = ("extract-multi", "reasoning")


async def _necessity(job: Job, segment: Segment, task: Task, qa: QA, item: str) -> tuple[QA, Task, str] | Reject:
    """An extract-multi or reasoning QA the verifier answers from one evidence page alone is not multi-page:
    relabelled (extract-multi -> extract-single, its evidence that page) or dropped, as the recipe says."""
    evidence = sorted(set(qa.evidence_pages))
    parts = {page: _evidence_parts(job, segment, [page]) for page in evidence}
    page = await one_page_enough(qa, parts, job.verifier or job.client, job.config, task)
    if page is None:
        return qa, task, "needed"
    if job.config.verify.multi_page == "drop":
        detail = f"the verifier gave the answer from page {page} alone (evidence pages {evidence})"
        reason = "answerable_from_one_page"
        return Reject(stage="verify", item=item, reason=reason, detail=detail, extra={"task": task})
    relabelled: Task = "extract-single" if task == "extract-multi" else task
    return qa.model_copy(update={"evidence_pages": [page]}), relabelled, f"single:{page}"


def _evidence_parts(job: Job, segment: Segment, pages: list[int]) -> list[dict]:
    cfg = job.config
    return page_parts(segment, pages, cfg.input_mode, job.page_image, cfg.max_pixels, job.images)


async def _verify(job: Job, segment: Segment, task: Task, qa: QA) -> tuple[str, str]:
    pages = _evidence_parts(job, segment, sorted(set(qa.evidence_pages)))
    return await verify_qa(qa, pages, job.verifier or job.client, job.config, task)


async def model_document(job: Job, segments: list[Segment], tasks: list[Task]) -> tuple[list, list]:
    coros = []
    for segment in segments:
        pages = page_parts(segment, segment.pages, job.config.input_mode, job.page_image, job.config.max_pixels,
                           job.images)  # fmt: skip
        coros += [_generate_segment_task(job, segment, task, pages) for task in tasks]
    results = await asyncio.gather(*coros)
    records = [r for recs, _ in results for r in recs]
    rejects = [r for _, rejs in results for r in rejs]
    return records, rejects


@dataclass(frozen=True)
class OpenAIGenerator:
    """QA written by a model behind an OpenAI-compatible endpoint, optionally verified by a second call."""

    config: GenerateConfig

    @property
    def name(self) -> str:
        return self.config.generator.endpoint.model

    @property
    def prompt_version(self) -> str:
        return self.config.prompt_version

    @property
    def makes_model_calls(self) -> bool:
        return True

    @property
    def needs_images(self) -> bool:
        return self.config.input_mode != "text"

    @property
    def verifier_model(self) -> str | None:
        verify = self.config.verify
        return (verify.endpoint or self.config.generator.endpoint).model if verify.enabled else None

    @property
    def judge_model(self) -> str | None:
        judge = self.config.judge
        return (judge.endpoint or self.config.generator.endpoint).model if judge.enabled else None

    def open_judge(self, ledger: Ledger | None, **client_options: Any) -> LLMClient | None:
        """The rubric judge's own client on `ledger` (the generator's); None when it is off or uses the generator's."""
        judge = self.config.judge
        if not judge.enabled or judge.endpoint is None:
            return None
        return LLMClient(judge.endpoint, ledger, **client_options)

    def check_prompts(self) -> None:
        cfg = self.config
        load_prompt("qa", cfg.prompt_version)
        task_strings(cfg.prompt_version)
        load_exemplars(cfg.exemplars)
        if cfg.verify.enabled:
            load_prompt("verify", cfg.prompt_version)
            load_prompt("judge", cfg.prompt_version)
        if cfg.judge.enabled:
            rubric_descriptions(cfg.judge)

    def open_clients(self, ledger_path: str | None, **client_options: Any) -> tuple[LLMClient, LLMClient | None]:
        config = self.config
        ledger = Ledger(ledger_path)
        client = LLMClient(config.generator.endpoint, ledger, **client_options)
        verifier = None
        if config.verify.enabled and config.verify.endpoint is not None:
            verifier = LLMClient(config.verify.endpoint, ledger, **client_options)
        return client, verifier

    async def generate(
        self,
        doc: PdfDoc,
        layout: LayoutDoc,
        segments: list[Segment],
        tasks: list[Task],
        seed: int,
        client: LLMClient | None,
        page_image: PageImage | None,
        verifier: LLMClient | None,
        judge: LLMClient | None = None,
    ) -> tuple[list[QARecord], list[Reject]]:
        """Every (segment, task) asked at once; `page_image` is needed unless input_mode is `text`."""
        if client is None:
            raise ValueError("generator.kind 'openai' needs an LLMClient")
        config = self.config
        job = Job(doc, layout, config, seed, client, verifier, page_image, load_exemplars(config.exemplars),
                  judge=judge)  # fmt: skip
        return await model_document(job, segments, tasks)
