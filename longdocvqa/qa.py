"""QA generation: the MMProLong tasks, their versioned prompts, semantic checks and the offline baseline.

Owns: prompt rendering from package data (`prompts/qa_<version>.md`, `qa_tasks_<version>.json`,
exemplars), the three generated tasks (extract-single, extract-multi, reasoning; paper.md §3.2),
input modes (images / text / images+text), semantic checks after the schema, optional answerability
verification by a second call, the offline `template` generator ("template-baseline"), the OCR
ablation tasks (targets from layout blocks) and the VLM OCR backend for image-only pages.
Does not own: HTTP, retries or the ledger (llm.py), rendering (render.py), storage (store.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict

from longdocvqa.errors import RecipeError
from longdocvqa.fingerprint import content_hash
from longdocvqa.llm import Answer, ImageInput, Invalid, LLMClient, Message, image_part, text_part
from longdocvqa.recipe import GenerateConfig
from longdocvqa.records import (
    OCR_TASKS,
    QA,
    QA_TASKS,
    AnswerFormat,
    Block,
    BlockLabel,
    LayoutDoc,
    PdfDoc,
    QARecord,
    Reject,
    Segment,
    Task,
)
from longdocvqa.text import comparable

TEMPLATE_GENERATOR = "template-baseline"
TEMPLATE_PROMPT_VERSION = "template-v1"
BUILTIN_PREFIX = "builtin://"
PageImage = Callable[[int], bytes]

# ----------------------------------------------------------------------------------------------- prompts


@cache
def load_prompt(name: str, version: str) -> dict[str, str]:
    """Sections of the package prompt file `<name>_<version>.md` (split at `<<<section>>>` lines)."""
    text = _read_package_file(f"{name}_{version}.md")
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines(keepends=True):
        marker = re.fullmatch(r"<<<([a-z_-]+)>>>\s*", line)
        if marker:
            current = marker.group(1)
            sections[current] = ""
        elif current is not None:
            sections[current] += line
    return {k: v.strip("\n") for k, v in sections.items()}


@cache
def task_strings(version: str) -> dict[str, dict[str, str]]:
    """The `{task description}` and `{extra_restriction}` strings of each task (paper.md §3.2)."""
    data: dict[str, dict[str, str]] = json.loads(_read_package_file(f"qa_tasks_{version}.json"))
    return data


def _read_package_file(name: str) -> str:
    path = resources.files("longdocvqa") / "prompts" / name
    if not path.is_file():
        raise RecipeError(f"generate: no prompt file {name!r} in longdocvqa/prompts (check generate.prompt_version)")
    return path.read_text(encoding="utf-8")


def fill(template: str, **values: object) -> str:
    """Replace `{{name}}` placeholders (braces elsewhere, e.g. in JSON examples, are left alone)."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), template)


def load_exemplars(path: str | None) -> list[dict[str, Any]]:
    """In-context exemplars from a JSONL file (or `builtin://exemplars_v1.jsonl`); none when `path` is None."""
    if not path:
        return []
    if path.startswith(BUILTIN_PREFIX):
        text = _read_package_file(path[len(BUILTIN_PREFIX) :])
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError(
                f"generate.exemplars: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            QA.model_validate(row["qa"])
        except (KeyError, TypeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise RecipeError(f"generate.exemplars: {path} line {i}: not an exemplar ({detail})") from None
        rows.append(row)
    return rows


def pick_exemplars(exemplars: Sequence[dict[str, Any]], task: str, count: int, rng: random.Random) -> list[dict]:
    """`count` exemplars, those of the same task first, chosen deterministically by `rng`."""
    same = [e for e in exemplars if e.get("task") == task]
    other = [e for e in exemplars if e.get("task") != task]
    rng.shuffle(same)
    rng.shuffle(other)
    return (same + other)[:count]


def _reply_text(evidence: str, qa: dict[str, Any], response_mode: str) -> str:
    body = json.dumps(qa, ensure_ascii=False)
    return f"[Evidence Description]: {evidence}\n[JSON]: {body}" if response_mode == "text" else body


_MODALITY = {
    "images": ("page images", "visual content"),
    "text": ("page texts", "text"),
    "images+text": ("page images, each followed by the page's text layer,", "visual content and text"),
}


@dataclass
class PromptContext:
    """What one generation prompt is built from; page parts are built once per segment and shared."""

    segment: Segment
    task: Task
    config: GenerateConfig
    response_mode: str
    pages: list[dict[str, Any]]
    exemplars: list[dict[str, Any]] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)
    slot: int = 0


def page_parts(
    segment: Segment,
    pages: Sequence[int],
    input_mode: str,
    page_image: PageImage | None,
    max_pixels: int,
    images: dict[int, ImageInput] | None = None,
) -> list[dict[str, Any]]:
    """The labelled page sequence: "Page N:" before each page's image and/or text (`images` caches encodings)."""
    images = {} if images is None else images
    parts: list[dict[str, Any]] = []
    for page in pages:
        text = segment.page_texts[page - segment.start_page]
        if input_mode == "text":
            parts.append(text_part(f"Page {page}:\n{text}"))
            continue
        if page_image is None:
            raise ValueError(f"input_mode {input_mode!r} needs page images")
        if page not in images:
            images[page] = ImageInput(page_image(page), max_pixels)
        parts += [text_part(f"Page {page}:"), image_part(images[page])]
        if input_mode == "images+text":
            parts.append(text_part(f"Text layer of Page {page}:\n{text}"))
    return parts


def build_messages(ctx: PromptContext) -> list[Message]:
    """System + user turn of one generation call, in the paper's order (paper.md §3.3)."""
    version, seg = ctx.config.prompt_version, ctx.segment
    prompt, strings = load_prompt("qa", version), task_strings(version)[ctx.task]
    modality, content = _MODALITY[ctx.config.input_mode]
    response = prompt["response_text" if ctx.response_mode == "text" else "response_json"]
    head = [
        fill(
            prompt["task"],
            task_description=strings["description"],
            extra_restriction=strings["restriction"],
            response_format=response,
        )
    ]
    for number, ex in enumerate(ctx.exemplars, 1):
        reply = _reply_text(ex["evidence_description"], ex["qa"], ctx.response_mode)
        sections = ", ".join(ex.get("sections", [])) or "not given"
        head.append(
            fill(
                prompt["exemplar"],
                number=number,
                start_page=ex["start_page"],
                end_page=ex["end_page"],
                sections=sections,
                reply=reply,
            )
        )
    if ctx.config.questions_per_segment > 1:
        head.append(fill(prompt["series"], number=ctx.slot + 1, total=ctx.config.questions_per_segment))
    if ctx.previous:
        head.append(fill(prompt["previous"], questions="\n".join(f"- {q}" for q in ctx.previous)))
    mid = seg.start_page + (seg.end_page - seg.start_page) // 2
    head.append(
        fill(
            prompt["current_case"],
            modality=modality,
            content=content,
            start_page=seg.start_page,
            end_page=seg.end_page,
            section_example=_section_example(seg),
            page_example=mid,
            pages_example=f"{seg.start_page}, {seg.start_page + 1}, and {mid}",
        )
    )
    system = {"role": "system", "content": fill(prompt["system"], modality=modality)}
    return [system, {"role": "user", "content": _content([text_part("\n\n".join(head)), *ctx.pages])}]


def _section_example(segment: Segment) -> str:
    """A section title of the segment without its numbering, for the scope example ("the Octave section")."""
    for title in segment.sections:
        if len(_title_core(title)) >= 4:
            return _NUMBERING.sub("", " ".join(title.split()))
    return "Introduction"


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only turns are sent as one string (every server accepts it); images need content parts."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


# ----------------------------------------------------------------------------------------------- checks


def normalise(text: str) -> str:
    """Lower-case words and numbers only (text.comparable: the normalisation every check against page text uses)."""
    return comparable(text)


def _contains(haystack: str, needle: str) -> bool:
    """Whole-word containment of normalised strings."""
    return bool(needle) and f" {needle} " in f" {haystack} "


_NUMBER_JUNK = re.compile(r"[\s,$€£¥%]|\b(?:USD|EUR|GBP|JPY|CNY|RMB)\b", re.IGNORECASE)
_INTEGER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)")


def parse_number(text: str) -> float | None:
    """A number written with optional currency, thousands separators or a percent sign; None otherwise."""
    core = _NUMBER_JUNK.sub("", text.strip())
    if not re.fullmatch(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?", core, flags=re.IGNORECASE):
        return None
    return float(core)


def check_answer_format(qa: QA) -> Invalid | None:
    """Integer parses as an integer, Float as a number (%/currency allowed), List is a non-empty list."""
    answer, fmt = qa.answer, qa.answer_format
    if fmt == "List":
        ok = isinstance(answer, list) and bool(answer) and all(a.strip() for a in answer)
        return (
            None
            if ok
            else Invalid(
                "answer_format_mismatch", "answer_format is List but the answer is not a non-empty list of strings"
            )
        )
    if isinstance(answer, list):
        return Invalid(
            "answer_format_mismatch", f"answer_format is {fmt} but the answer is a list; use List or one value"
        )
    if not answer.strip():
        return Invalid("answer_format_mismatch", "the answer is empty")
    if fmt == "Integer" and not _INTEGER.fullmatch(answer.strip()):
        return Invalid("answer_format_mismatch", f"answer_format is Integer but {answer!r} is not an integer")
    if fmt == "Float" and parse_number(answer) is None:
        return Invalid("answer_format_mismatch", f"answer_format is Float but {answer!r} is not a number")
    return None


def check_evidence_pages(qa: QA, task: str, segment: Segment) -> Invalid | None:
    """Evidence pages lie inside the segment; extract-single cites exactly one page."""
    outside = sorted({p for p in qa.evidence_pages if not segment.start_page <= p <= segment.end_page})
    if outside:
        return Invalid(
            "evidence_outside_segment",
            f"evidence_pages {outside} are outside the given pages "
            f"{segment.start_page}-{segment.end_page}; use the page indices labelled in the prompt",
        )
    if task == "extract-single" and len(set(qa.evidence_pages)) != 1:
        return Invalid("not_single_page", "extract-single questions must rest on exactly one page")
    return None


_PAGE_REF = re.compile(
    r"\b(?:pages?|pp?\.)\s*(\d+(?:\s*(?:,|and|&|to|through|-|–|—)\s*(?:pages?\s*)?\d+)*)", re.IGNORECASE
)


def page_references(question: str) -> list[int]:
    """Page indices a question names ("Page 10", "Pages 20, 21, and 25", "pages 3-5")."""
    return [int(n) for ref in _PAGE_REF.findall(question) for n in re.findall(r"\d+", ref)]


_NUMBERING = re.compile(r"^\s*(?:(?:chapter|section|part|appendix)\s+)?[\dIVXivx]+(?:\.\d+)*[.:)]?\s+", re.I)


def _title_core(title: str) -> str:
    """A section title without its numbering, normalised ("3.2 Octave" -> "octave", "Chapter 4: Tools" -> "tools")."""
    return normalise(_NUMBERING.sub("", title))


def check_anchor(qa: QA, segment: Segment) -> Invalid | None:
    """The question names a page inside the segment or one of its section titles, and no page outside it."""
    refs = page_references(qa.question)
    outside = sorted({p for p in refs if not segment.start_page <= p <= segment.end_page})
    if outside:
        return Invalid(
            "anchor_outside_segment",
            f"the question names page(s) {outside}, outside the given pages {segment.start_page}-{segment.end_page}",
        )
    question = normalise(qa.question)
    titled = any(len(core) >= 4 and _contains(question, core) for core in map(_title_core, segment.sections))
    if refs or titled:
        return None
    return Invalid(
        "no_anchor",
        "the question must name its scope: a page ('on Page 12') or a section title of "
        "the given pages ('in the Introduction section')",
    )


def check_answer_not_in_question(qa: QA) -> Invalid | None:
    """The question does not give its answer away (page references aside; answers under 3 characters exempt)."""
    question = normalise(_PAGE_REF.sub(" ", qa.question))
    items = [normalise(a) for a in (qa.answer if isinstance(qa.answer, list) else [qa.answer])]
    items = [a for a in items if len(a) >= 3]
    if items and all(_contains(question, a) for a in items):
        return Invalid("answer_in_question", "the question contains its own answer; ask without revealing it")
    return None


def check_answer_in_evidence(qa: QA, layout: LayoutDoc | None) -> tuple[Invalid | None, str]:
    """Extract tasks: every answer item appears in the text of an evidence page; (problem, found|skipped)."""
    if layout is None or set(qa.evidence_sources) <= {"Figure"}:
        return None, "skipped"
    pages = [p for p in sorted(set(qa.evidence_pages)) if _has_text(layout, p)]
    if not pages:
        return None, "skipped"
    text = normalise("\n".join(layout.page_text(p, skip=()) for p in pages))
    items = qa.answer if isinstance(qa.answer, list) else [qa.answer]
    missing = [a for a in items if not _contains(text, normalise(a))]
    if not missing:
        return None, "found"
    return Invalid("answer_not_in_evidence", f"{missing[0]!r} does not appear in the text of evidence page(s) "
                   f"{pages}; quote the answer as printed and cite the page that shows it"), "failed"  # fmt: skip


def _has_text(layout: LayoutDoc, page: int) -> bool:
    if not 1 <= page <= len(layout.pages):
        return False
    info = layout.pages[page - 1]
    return not info.image_only and bool(layout.page_text(page, skip=()).strip())


def check_qa(qa: QA, task: str, segment: Segment, layout: LayoutDoc | None) -> tuple[Invalid | None, str]:
    """All semantic checks in order; returns (first problem or None, evidence-text outcome)."""
    for problem in (
        check_evidence_pages(qa, task, segment),
        check_answer_format(qa),
        check_anchor(qa, segment),
        check_answer_not_in_question(qa),
    ):
        if problem is not None:
            return problem, "not_run"
    if task in ("extract-single", "extract-multi"):
        return check_answer_in_evidence(qa, layout)
    return None, "not_applicable"


def qa_json_schema() -> dict[str, Any]:
    """JSON Schema of the generator's QA object (the `response_format` schema)."""
    return QA.model_json_schema()


def qa_record_json_schema() -> dict[str, Any]:
    """JSON Schema of one `qa` row (QARecord)."""
    return QARecord.model_json_schema()


# ----------------------------------------------------------------------------------------------- verification


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
    prompt = load_prompt("verify", version)
    modality = _MODALITY[config.input_mode][0]
    question = fill(
        prompt["question"],
        question=qa.question,
        answer_format=qa.answer_format,
        format_hint=_FORMAT_HINT[qa.answer_format],
    )
    user = _content([text_part(fill(prompt["user"], modality=modality)), *pages, text_part(question)])
    messages: list[Message] = [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]
    reply = await verifier.ask(messages, VerifyReply, template_id=f"verify@{version}", task=f"verify/{task}")
    if reply.value is None:
        return "verify_failed", f"{reply.reason}: {reply.detail}"
    match = answers_match(qa.answer, reply.value.answer, qa.answer_format)
    if match is not None:
        return ("exact" if match else "unverified"), f"verifier answered {reply.value.answer!r}"
    return await _judge(qa, reply.value.answer, verifier, version, task)


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


# ----------------------------------------------------------------------------------------------- records


def make_record(
    qa: QA,
    *,
    task: Task,
    segment: Segment,
    generator: str,
    prompt_version: str,
    evidence_description: str = "",
    call_id: str = "",
    verification: str = "",
) -> QARecord:
    """A QARecord whose id is the content hash of everything else in it."""
    fields: dict[str, Any] = {
        "task": task,
        "doc_sha256": segment.doc_sha256,
        "segment_id": segment.id,
        "segment_start": segment.start_page,
        "segment_end": segment.end_page,
        "segment_sections": list(segment.sections),
        **qa.model_dump(),
        "evidence_description": evidence_description,
        "generator": generator,
        "prompt_version": prompt_version,
        "call_id": call_id,
        "verification": verification or "not_run",
    }
    return QARecord(id=content_hash(fields, length=32), **fields)


def _verification(evidence_text: str, answerability: str) -> str:
    return f"evidence_text={evidence_text};answerability={answerability}"


def _item(segment: Segment, task: str, k: int) -> str:
    return f"{segment.doc_sha256[:16]}/{segment.id}/{task}/{k}"


def drop_duplicates(records: list[QARecord]) -> tuple[list[QARecord], list[Reject]]:
    """Keep the first record of each normalised question per document (input order is deterministic)."""
    seen: dict[tuple[str, str], str] = {}
    kept, rejects = [], []
    for record in records:
        key = (record.doc_sha256, normalise(record.question))
        if key in seen:
            detail = f"same question as {seen[key]}: {record.question[:120]!r}"
            rejects.append(Reject(stage="generate", item=record.id, reason="duplicate_question", detail=detail))
        else:
            seen[key] = record.id
            kept.append(record)
    return kept, rejects


# ----------------------------------------------------------------------------------------------- model generation


@dataclass
class _Job:
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


async def _generate_segment_task(job: _Job, segment: Segment, task: Task, pages: list[dict]) -> tuple[list, list]:
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
    job: _Job, segment: Segment, task: Task, pages: list[dict], previous: list[str], k: int
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
        problem, text_outcome["value"] = check_qa(qa, task, segment, job.layout)
        return problem

    answer: Answer[QA] = await job.client.ask(
        build_messages(ctx),
        QA,
        template_id=f"qa/{task}@{cfg.prompt_version}",
        task=task,
        temperatures=cfg.temperature_schedule,
        max_invalid_retries=cfg.max_invalid_retries,
        check=check,
    )
    item = _item(segment, task, k)
    if answer.value is None:
        extra: dict[str, object] = {"attempts": answer.attempts, "call_ids": answer.call_ids}
        return None, Reject(stage="generate", item=item, reason=answer.reason, detail=answer.detail[:500], extra=extra)
    answerability = "not_run"
    if cfg.verify.enabled:
        outcome, detail = await _verify(job, segment, task, answer.value)
        if outcome in ("unverified", "verify_failed"):
            return None, Reject(stage="verify", item=item, reason=outcome, detail=detail[:500])
        answerability = outcome
    record = make_record(
        answer.value,
        task=task,
        segment=segment,
        generator=job.client.model,
        prompt_version=cfg.prompt_version,
        evidence_description=answer.evidence_description,
        call_id=answer.call_ids[-1],
        verification=_verification(text_outcome.get("value", "not_run"), answerability),
    )
    return record, None


async def _verify(job: _Job, segment: Segment, task: Task, qa: QA) -> tuple[str, str]:
    cfg = job.config
    pages = page_parts(segment, sorted(set(qa.evidence_pages)), cfg.input_mode, job.page_image, cfg.max_pixels,
                       job.images)  # fmt: skip
    return await verify_qa(qa, pages, job.verifier or job.client, job.config, task)


async def generate_document(
    doc: PdfDoc,
    layout: LayoutDoc,
    segments: list[Segment],
    config: GenerateConfig,
    seed: int,
    client: LLMClient | None,
    page_image: PageImage | None,
    *,
    verifier: LLMClient | None = None,
) -> tuple[list[QARecord], list[Reject]]:
    """QA records and drops for one document: every (segment, task) of the recipe, then the OCR tasks.

    `page_image(i)` returns the image bytes of absolute page i (needed unless input_mode is `text`).
    With `generator.kind: template` no client is needed and nothing leaves the machine.
    """
    qa_tasks = [t for t in config.tasks if t in QA_TASKS]
    if config.generator.kind == "template":
        records, rejects = template_document(layout, segments, qa_tasks, config, seed)
    else:
        if client is None:
            raise ValueError("generator.kind 'openai' needs an LLMClient")
        job = _Job(doc, layout, config, seed, client, verifier, page_image, load_exemplars(config.exemplars))
        records, rejects = await _model_document(job, segments, qa_tasks)
    ocr_records, ocr_rejects = ocr_document(layout, [t for t in config.tasks if t in OCR_TASKS], config, seed)
    kept, duplicates = drop_duplicates(records)
    return kept + ocr_records, rejects + duplicates + ocr_rejects


async def _model_document(job: _Job, segments: list[Segment], tasks: list[Task]) -> tuple[list, list]:
    coros = []
    for segment in segments:
        pages = page_parts(segment, segment.pages, job.config.input_mode, job.page_image, job.config.max_pixels,
                           job.images)  # fmt: skip
        coros += [_generate_segment_task(job, segment, task, pages) for task in tasks]
    results = await asyncio.gather(*coros)
    records = [r for recs, _ in results for r in recs]
    rejects = [r for _, rejs in results for r in rejs]
    return records, rejects


def open_clients(
    config: GenerateConfig, ledger_path: str | None, **client_options: Any
) -> tuple[LLMClient | None, LLMClient | None]:
    """(generator, verifier) clients for a recipe sharing one ledger; (None, None) for the template generator."""
    from longdocvqa.llm import Ledger

    if config.generator.kind == "template":
        return None, None
    ledger = Ledger(ledger_path)
    client = LLMClient(config.generator.endpoint, ledger, **client_options)
    verifier = None
    if config.verify.enabled and config.verify.endpoint is not None:
        verifier = LLMClient(config.verify.endpoint, ledger, **client_options)
    return client, verifier


# ----------------------------------------------------------------------------------------------- template baseline


@dataclass(frozen=True)
class _Candidate:
    qa: QA
    evidence: str


_HEADINGS = ("title", "section")


def _headings(layout: LayoutDoc, page: int) -> list[str]:
    blocks = sorted(layout.pages[page - 1].blocks, key=lambda b: b.order)
    return [_clean(b.text) for b in blocks if b.label in _HEADINGS and _usable_heading(b.text)]


def _usable_heading(text: str) -> bool:
    words = text.split()
    return 1 <= len(words) <= 12 and any(c.isalpha() for c in text) and not text.rstrip().endswith((",", ";"))


def _clean(text: str) -> str:
    return " ".join(text.split())


def _captions(layout: LayoutDoc, page: int) -> list[str]:
    blocks = sorted(layout.pages[page - 1].blocks, key=lambda b: b.order)
    return [_clean(b.text) for b in blocks if b.label == "caption" and 3 <= len(b.text.split()) <= 60]


def _first_sentence(text: str) -> str:
    sentence = re.split(r"(?<=[.!?])\s+", _clean(text), maxsplit=1)[0]
    return sentence if 4 <= len(sentence.split()) <= 40 else ""


def _candidate(
    question: str, answer: str | list[str], fmt: str, pages: list[int], sources: list, why: str
) -> _Candidate:
    qa = QA.model_validate(
        {"question": question, "answer": answer, "answer_format": fmt, "evidence_pages": pages,
         "evidence_sources": sources}
    )  # fmt: skip
    return _Candidate(qa, why)


def _single_candidates(layout: LayoutDoc, segment: Segment) -> list[_Candidate]:
    """Next heading after "X" on page N; the caption of the only table/figure on page N; first sentence under X."""
    out = []
    for page in segment.pages:
        heads = _headings(layout, page)
        for first, second in zip(heads, heads[1:], strict=False):
            q = f'On Page {page}, which section heading directly follows the heading "{first}"?'
            out.append(
                _candidate(q, second, "String", [page], ["Layout"], f'Page {page} (Layout): "{first}", "{second}"')
            )
        captions = _captions(layout, page)
        if len(captions) == 1:
            kind = "table" if captions[0].lower().startswith("table") else "figure"
            q = f"What does the caption of the {kind} on Page {page} say?"
            sources = ["Layout", "Table" if kind == "table" else "Figure"]
            out.append(_candidate(q, captions[0], "String", [page], sources, f"Page {page} (Layout): {kind} caption"))
        out += _under_heading_candidates(layout, page)
    return out


def _under_heading_candidates(layout: LayoutDoc, page: int) -> list[_Candidate]:
    blocks = sorted(layout.pages[page - 1].blocks, key=lambda b: b.order)
    out = []
    for head, nxt in zip(blocks, blocks[1:], strict=False):
        if head.label in _HEADINGS and _usable_heading(head.text) and nxt.label == "paragraph":
            sentence = _first_sentence(nxt.text)
            if sentence:
                q = f'On Page {page}, what is the first sentence of the text under the heading "{_clean(head.text)}"?'
                why = f"Page {page} (Text): first sentence under the heading"
                out.append(_candidate(q, sentence, "String", [page], ["Text", "Layout"], why))
    return out


def _multi_candidates(layout: LayoutDoc, segment: Segment) -> list[_Candidate]:
    """The headings of two pages, as a list."""
    with_heads = [(p, h) for p in segment.pages if (h := _headings(layout, p))]
    out = []
    for (p1, h1), (p2, h2) in zip(with_heads, with_heads[1:], strict=False):
        q = f"List the section headings that appear on Pages {p1} and {p2}, in order."
        out.append(_candidate(q, h1 + h2, "List", [p1, p2], ["Layout"], f"Pages {p1} and {p2} (Layout): headings"))
    return out


def _reasoning_candidates(layout: LayoutDoc, segment: Segment) -> list[_Candidate]:
    """Counts over the whole segment: section headings, captioned tables and figures."""
    span = f"Pages {segment.start_page} to {segment.end_page}"
    out = []
    for what, counter in (("section headings", _headings), ("captioned tables and figures", _captions)):
        counts = {p: len(counter(layout, p)) for p in segment.pages}
        pages = [p for p, n in counts.items() if n]
        if len(pages) >= 2:
            q = f"How many {what} are there in total on {span}?"
            why = f"{what} per page (Layout): {counts}"
            out.append(_candidate(q, str(sum(counts.values())), "Integer", pages, ["Layout"], why))
    return out


_TEMPLATE_CANDIDATES = {
    "extract-single": _single_candidates,
    "extract-multi": _multi_candidates,
    "reasoning": _reasoning_candidates,
}


def template_document(
    layout: LayoutDoc, segments: list[Segment], tasks: list[Task], config: GenerateConfig, seed: int
) -> tuple[list[QARecord], list[Reject]]:
    """Offline baseline: extraction and counting QA built from the layout alone (deterministic from seed+doc)."""
    records, rejects = [], []
    for segment in segments:
        for task in tasks:
            recs, rejs = _template_segment_task(layout, segment, task, config.questions_per_segment, seed)
            records += recs
            rejects += rejs
    return records, rejects


def _template_segment_task(
    layout: LayoutDoc, segment: Segment, task: Task, count: int, seed: int
) -> tuple[list[QARecord], list[Reject]]:
    valid = []
    for candidate in _TEMPLATE_CANDIDATES[task](layout, segment):
        problem, outcome = check_qa(candidate.qa, task, segment, layout)
        if problem is None:
            valid.append((candidate, outcome))
    rng = random.Random(content_hash({"seed": seed, "segment": segment.id, "task": task, "generator": "template"}))
    chosen = rng.sample(valid, min(count, len(valid)))
    records = [
        make_record(
            c.qa,
            task=task,
            segment=segment,
            generator=TEMPLATE_GENERATOR,
            prompt_version=TEMPLATE_PROMPT_VERSION,
            evidence_description=c.evidence,
            verification=_verification(outcome, "not_run"),
        )
        for c, outcome in chosen
    ]
    rejects = [
        Reject(
            stage="generate",
            item=_item(segment, task, k),
            reason="no_template_candidate",
            detail=f"the layout of pages {segment.start_page}-{segment.end_page} offers no {task} template",
        )
        for k in range(len(chosen), count)
    ]
    return records, rejects


# ----------------------------------------------------------------------------------------------- OCR tasks


def ocr_document(
    layout: LayoutDoc, tasks: list[Task], config: GenerateConfig, seed: int
) -> tuple[list[QARecord], list[Reject]]:
    """OCR-full (all pages) and OCR-needle (1-3 target pages) records; targets are layout text, not a model."""
    records, rejects = [], []
    texts = {p.index: layout.page_text(p.index) for p in layout.pages}
    with_text = [i for i, t in texts.items() if t.strip() and not layout.pages[i - 1].image_only]
    for task in tasks:
        if not with_text:
            rejects.append(
                Reject(
                    stage="generate",
                    item=f"{layout.sha256[:16]}/{task}",
                    reason="no_text",
                    detail="no page has a text layer to transcribe",
                )
            )
            continue
        rng = random.Random(content_hash({"seed": seed, "doc": layout.sha256, "task": task}))
        pages = sorted(texts) if task == "ocr-full" else _needle_pages(with_text, config.ocr_needle_pages, rng)
        records.append(_ocr_record(layout, task, pages, texts, config.prompt_version))
    return records, rejects


def _needle_pages(candidates: list[int], bounds: tuple[int, int], rng: random.Random) -> list[int]:
    low, high = bounds
    count = min(len(candidates), rng.randint(min(low, high), max(low, high)))
    return sorted(rng.sample(candidates, count))


def _ocr_record(layout: LayoutDoc, task: Task, pages: list[int], texts: dict[int, str], version: str) -> QARecord:
    prompt = load_prompt("ocr", version)
    if task == "ocr-full":
        question = prompt["ocr-full"]
    else:
        question = fill(prompt["ocr-needle"], pages=_page_phrase(pages), first=pages[0])
    answer = "\n\n".join(f"Page {p}:\n{texts[p]}".rstrip() for p in pages)
    labels = {b.label for p in pages for b in layout.pages[p - 1].blocks}
    sources: list[Any] = ["Text"] + (["Layout"] if labels & {"title", "section", "caption"} else [])
    sources += ["Table"] if "table" in labels else []
    segment = Segment(
        id=f"{task}:{content_hash(pages, length=8)}",
        doc_sha256=layout.sha256,
        start_page=1,
        end_page=layout.num_pages,
        sections=[],
        rule="window",
        page_texts=[],
    )
    # not generator output: an OCR target may cite every page of the document (QA caps model answers at 16)
    qa = QA.model_construct(question=question, answer=answer, answer_format="String", evidence_pages=pages,
                            evidence_sources=sources)  # fmt: skip
    return make_record(
        qa, task=task, segment=segment, generator=f"layout:{layout.backend}", prompt_version=f"ocr-{version}"
    )


def _page_phrase(pages: list[int]) -> str:
    if len(pages) == 1:
        return f"Page {pages[0]}"
    return "Pages " + ", ".join(str(p) for p in pages[:-1]) + f" and {pages[-1]}"


# ----------------------------------------------------------------------------------------------- OCR backend


class OcrBlock(BaseModel):
    """One transcribed block of a scanned page."""

    model_config = ConfigDict(extra="forbid")
    label: BlockLabel
    text: str


class OcrPage(BaseModel):
    """A VLM's transcription of one page image into labelled blocks."""

    model_config = ConfigDict(extra="forbid")
    blocks: list[OcrBlock]


async def transcribe_page(
    client: LLMClient,
    image: bytes,
    page: int,
    size_pt: tuple[float, float],
    *,
    max_pixels: int,
    version: str = "v1",
    max_invalid_retries: int = 1,
) -> tuple[list[Block], Reject | None]:
    """Labelled blocks of an image-only page transcribed by the client's VLM (bbox: the whole page)."""
    prompt = load_prompt("ocr", version)
    user = [text_part(fill(prompt["page_user"], page=page)), text_part(f"Page {page}:"),
            image_part(ImageInput(image, max_pixels))]  # fmt: skip
    messages: list[Message] = [{"role": "system", "content": prompt["page_system"]}, {"role": "user", "content": user}]
    reply = await client.ask(
        messages, OcrPage, template_id=f"ocr-page@{version}", task="ocr-page", max_invalid_retries=max_invalid_retries
    )
    if reply.value is None:
        return [], Reject(stage="layout", item=f"page {page}", reason=f"ocr_{reply.reason}", detail=reply.detail[:300])
    bbox = (0.0, 0.0, float(size_pt[0]), float(size_pt[1]))
    blocks = [Block(label=b.label, bbox=bbox, text=b.text, order=i) for i, b in enumerate(reply.value.blocks)]
    return blocks, None
