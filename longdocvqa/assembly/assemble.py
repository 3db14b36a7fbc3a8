"""Full-document training examples: messages, exact lengths, length window, distribution, mixture and budget.

Owns: turning each QA and its whole document into one example in TRL's conversational vision format (the `sft`
config; the images are the document's pages in order, referenced by `doc_id`, never held here), its exact Qwen2.5-VL
length (tokens.py) and the length window; then it samples them (sampling.py: distribution, task mixture, token
budget, short-data share) and measures the sample (stats.py: statistics and histograms for the manifest
and card; the dry-run estimate lives there too).
Does not own: PDFs or pixels (documents/render.py), loading short data (hub), writing files (stages/assemble,
stages/publish).

Message format (`AssembleConfig` switches), for a document of n pages:
  user:      [instruction + "\\n\\n"] [question + "\\n\\n" if before] "Page 1: " <image> "\\nPage 2: " <image> ...
             ... "\\nPage n: " <image> ["\\n" + question if after]
  assistant: answer (List answers as JSON or "a, b"; "Answer: " + answer when the instruction is on)
The instruction is MMLongBench's doc-QA instruction, which asks for "Answer: [answer]"; OCR tasks use their QA's
question as the instruction and the transcription of their target pages (layout blocks without headers and footers)
as the answer. Without page labels the images follow each other with nothing between them.

Sampling, all deterministic from the seed and independent of input order. Every candidate gets u in (0, 1) from
sha256(seed, example id).
  pool-native  candidates in order of u: the natural spread of the selected documents.
  long-biased  weighted sampling without replacement (Efraimidis-Spirakis) with weight exp(long_bias * x), x the
               position of the length in the window (0 at min_tokens, 1 at max_tokens): with long_bias = 4 an
               example at the top of the window is e^4 = 55 times as likely to be drawn first as one at the bottom.
               The recipe's pool (50-100 pages) supplies the long documents.
  target       one stream per (task, token bin), each given task share x bin share of the budget.
Streams are filled by deficit round robin: the stream furthest below its share (by tokens or examples) takes its
next candidate, until the next one would overflow the budget, so every share ends within one example of its target
and the total never exceeds the budget. A stream that runs dry either stops the build with the shortfall (`stop`)
or ends the sampling there, every share kept (`rescale`). Short data (a token share of the total) is drawn the same
way after the long part and passed through unchanged. Output order is a seeded shuffle (by sha256 of seed and id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from longdocvqa.assembly.sampling import SHORT_TASK, Candidate, sample, unit_draw
from longdocvqa.assembly.stats import AssembleStats, compute_stats
from longdocvqa.assembly.tokens import DEFAULT_SYSTEM_PROMPT, TokenCounter, image_size_px
from longdocvqa.core.errors import RejectedInput, StageError
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe import AssembleConfig
from longdocvqa.core.records import OCR_TASKS, LayoutDoc, PdfDoc, QARecord, Reject

STAGE = "assemble"
ExampleTask = Literal["extract-single", "extract-multi", "reasoning", "ocr-full", "ocr-needle", "short"]
ANSWER_INSTRUCTION = (
    "You are given a document with text and images, and a question. Answer the question as concisely as you can, "
    "using a single phrase or sentence if possible. If the question cannot be answered based on the information in "
    "the document, write 'Not answerable.' Write your answer in the following format:\nAnswer: [answer]"
)
BATCH_SIZE = 512
_ROLE_TOKENS = 6  # <|im_start|> and <|im_end|> of the system, user and assistant turns


class Example(BaseModel):
    """One `sft` row without its images: the pages of `doc_id` in order (or the short-data row `short_index`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="content hash of task, document, QA, message format and length")
    task: ExampleTask
    doc_id: str = Field(description="sha256 of the document; empty for short data")
    qa_id: str = Field(description="id of the QARecord; empty for short data")
    num_pages: int = Field(description="number of images")
    num_tokens: int = Field(description="exact Qwen2.5-VL sequence length")
    messages: list[dict[str, Any]]
    short_index: int | None = Field(None, description="row index in the short-data source")


@dataclass
class Assembly:
    """The sampled examples (as small candidates), the rejects and the statistics; rows are built on demand."""

    picks: list[Candidate]
    rejects: list[Reject]
    stats: AssembleStats
    config: AssembleConfig
    docs: Mapping[str, PdfDoc]
    layouts: Callable[[str], LayoutDoc]
    short_rows: Sequence[Mapping[str, Any]] | None = None

    def examples(self) -> Iterator[Example]:
        """The `sft` rows in output order, messages rebuilt one at a time (memory stays flat)."""
        for pick in self.picks:
            yield self._example(pick)

    def qa_rows(self) -> Iterator[dict[str, Any]]:
        """`qa` config rows: each sampled QA with its provenance and its example's token length."""
        for pick in self.picks:
            if pick.qa is not None:
                yield {**pick.qa.model_dump(mode="json"), "num_tokens": pick.num_tokens}

    def documents(self) -> Iterator[PdfDoc]:
        """The documents the sampled examples use, by sha256 (the `documents` config)."""
        for sha in sorted({pick.doc_id for pick in self.picks if pick.doc_id}):
            yield self.docs[sha]

    def _example(self, pick: Candidate) -> Example:
        if pick.short_index is not None:
            assert self.short_rows is not None
            row = normalise_short_row(self.short_rows[pick.short_index])
            messages = row["messages"]
        else:
            assert pick.qa is not None
            layout = self.layouts(pick.doc_id) if pick.task in OCR_TASKS else None
            messages = example_messages(pick.qa, self.docs[pick.doc_id].num_pages, self.config, layout)
        return Example.model_validate({
            "id": pick.id, "task": pick.task, "doc_id": pick.doc_id, "qa_id": pick.qa.id if pick.qa else "",
            "num_pages": pick.num_pages, "num_tokens": pick.num_tokens, "messages": messages,
            "short_index": pick.short_index,
        })  # fmt: skip


# ---------------------------------------------------------------------------------------------- messages


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image() -> dict[str, Any]:
    return {"type": "image", "text": None}  # `text` null: one Arrow struct for both kinds of part


def format_answer(answer: str | list[str], list_format: Literal["json", "comma"]) -> str:
    """The assistant's text for an answer; List answers as a JSON array or comma-separated."""
    if isinstance(answer, str):
        return answer
    return json.dumps(answer, ensure_ascii=False) if list_format == "json" else ", ".join(answer)


def ocr_pages(qa: QARecord, num_pages: int) -> list[int]:
    """Target pages of an OCR task: every page (ocr-full) or the QA's evidence pages (ocr-needle)."""
    return list(range(1, num_pages + 1)) if qa.task == "ocr-full" else sorted(set(qa.evidence_pages))


def ocr_transcription(layout: LayoutDoc, pages: Sequence[int]) -> str:
    """The target text of an OCR task: each page's layout blocks in reading order, headers and footers left out."""
    return "\n\n".join(f"Page {page}:\n{layout.page_text(page)}" for page in pages)


def example_texts(
    qa: QARecord, num_pages: int, config: AssembleConfig, layout: LayoutDoc | None = None
) -> tuple[str, str, str]:
    """(head, question, answer): the variable text of an example. `head` opens the user turn (instruction, and the
    question when it comes first); `question` closes it when it comes after the pages."""
    is_ocr = qa.task in OCR_TASKS
    instruction = config.answer_instruction and not is_ocr
    if is_ocr:
        if layout is None:
            raise RejectedInput("layout_missing", f"OCR task {qa.task} needs the layout of {qa.doc_sha256[:12]}")
        answer = ocr_transcription(layout, ocr_pages(qa, num_pages))
    else:
        answer = ("Answer: " if instruction else "") + format_answer(qa.answer, config.list_format)
    question = f"Question: {qa.question}" if instruction else qa.question
    head = ANSWER_INSTRUCTION + "\n\n" if instruction else ""
    if config.question_position == "before":
        return head + question + "\n\n", "", answer
    return head, "\n" + question, answer


def page_label(page: int) -> str:
    """The text part before page `page`'s image (a newline ends the previous page's line)."""
    return f"Page {page}: " if page == 1 else f"\nPage {page}: "


def example_messages(
    qa: QARecord, num_pages: int, config: AssembleConfig, layout: LayoutDoc | None = None
) -> list[dict[str, Any]]:
    """The conversation of one example: one image per page (labelled), the question, and the answer."""
    head, question, answer = example_texts(qa, num_pages, config, layout)
    user = [_text(head)] if head else []
    for page in range(1, num_pages + 1):
        if config.page_labels:
            user.append(_text(page_label(page)))
        user.append(_image())
    if question:
        user.append(_text(question))
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": [_text(answer)]}]
    if config.system_prompt is not None:
        messages.insert(0, {"role": "system", "content": [_text(config.system_prompt)]})
    return messages


def text_runs(head: str, question: str, answer: str, config: AssembleConfig) -> list[str]:
    """The text between added tokens in the rendered template of `example_messages`, labels of pages 2..n left out.

    <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{head}Page 1: <image>\nPage 2: <image>...{question}
    <|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n -- the tokenizer splits at added tokens, so each run
    tokenises on its own and `len(input_ids)` is their sum plus the added and image tokens.
    """
    system = DEFAULT_SYSTEM_PROMPT if config.system_prompt is None else config.system_prompt
    first = "user\n" + head + (page_label(1) if config.page_labels else "")
    runs = [f"system\n{system}", "\n", first]
    if question:
        runs.append(question)
    return runs + ["\n", "assistant\n" + answer, "\n"]


def example_lengths(
    items: Sequence[tuple[str, str, str, int, int]], config: AssembleConfig, counter: TokenCounter
) -> list[int]:
    """Exact lengths of examples given (head, question, answer, num_pages, image tokens) without building messages:
    6 role tokens + text runs + labels of pages 2..n + image tokens (vision markers included)."""
    text = counter.count_runs([text_runs(h, q, a, config) for h, q, a, _, _ in items])
    most = max((item[3] for item in items), default=1)
    label_tokens = [0, 0]  # cumulative tokens of the labels of pages 2..n, indexed by n
    counts = counter.count_runs([[page_label(page)] for page in range(2, most + 1)]) if config.page_labels else []
    for page in range(2, most + 1):
        label_tokens.append(label_tokens[-1] + (counts[page - 2] if counts else 0))
    return [_ROLE_TOKENS + t + label_tokens[item[3]] + item[4] for t, item in zip(text, items, strict=True)]


def format_fingerprint(config: AssembleConfig) -> dict[str, Any]:
    """The settings that shape messages; part of every example id."""
    keys = ("page_labels", "question_position", "answer_instruction", "list_format", "system_prompt")
    return {key: getattr(config, key) for key in keys}


def example_id(task: str, doc_id: str, qa_id: str, num_tokens: int, fmt: Mapping[str, Any]) -> str:
    """Content hash of what defines an example (its messages follow from these and the document's layout).

    Equal to `fingerprint.content_hash` of the same mapping; the canonical JSON is written directly (hot path).
    """
    obj = {"doc_id": doc_id, "format": fmt, "num_tokens": num_tokens, "qa_id": qa_id, "task": task}
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- candidates


def document_candidates(
    docs: Mapping[str, PdfDoc],
    qas: Iterable[QARecord],
    layouts: Callable[[str], LayoutDoc],
    config: AssembleConfig,
    *,
    render_dpi: int,
    seed: int,
    counter: TokenCounter,
) -> tuple[list[Candidate], list[Reject]]:
    """Every QA as a full-document candidate with its exact length; out-of-window and broken ones as Rejects."""
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for batch in _batched(qas, BATCH_SIZE):
        prepared = []
        for qa in batch:
            try:
                prepared.append(_prepare(qa, docs, layouts, config, render_dpi, counter, seen))
            except RejectedInput as exc:
                rejects.append(Reject(stage=STAGE, item=qa.id, reason=exc.reason, detail=exc.detail))
        lengths = example_lengths([p[1] for p in prepared], config, counter)
        for (qa, _), num_tokens in zip(prepared, lengths, strict=True):
            reject = window_reject(qa.id, num_tokens, config)
            if reject is not None:
                rejects.append(reject)
                continue
            candidates.append(_candidate(qa, docs[qa.doc_sha256].num_pages, num_tokens, config, seed))
    return candidates, rejects


def _prepare(
    qa: QARecord, docs: Mapping[str, PdfDoc], layouts: Callable[[str], LayoutDoc], config: AssembleConfig,
    render_dpi: int, counter: TokenCounter, seen: set[str],
) -> tuple[QARecord, tuple[str, str, str, int, int]]:  # fmt: skip
    if qa.id in seen:
        raise RejectedInput("duplicate", "the same QA id appeared twice")
    seen.add(qa.id)
    doc = docs.get(qa.doc_sha256)
    if doc is None:
        raise RejectedInput("missing_document", f"document {qa.doc_sha256[:12]} is not among the kept documents")
    if any(not 1 <= page <= doc.num_pages for page in qa.evidence_pages):
        raise RejectedInput("evidence_out_of_range", f"evidence pages {qa.evidence_pages} outside 1..{doc.num_pages}")
    try:
        image_tokens = counter.page_tokens(doc.page_sizes_pt, render_dpi)
    except ValueError as exc:
        raise RejectedInput("bad_page_size", str(exc)) from None
    layout = _load_layout(layouts, qa) if qa.task in OCR_TASKS else None
    head, question, answer = example_texts(qa, doc.num_pages, config, layout)
    return qa, (head, question, answer, doc.num_pages, image_tokens)


def _load_layout(layouts: Callable[[str], LayoutDoc], qa: QARecord) -> LayoutDoc:
    try:
        return layouts(qa.doc_sha256)
    except (OSError, KeyError, ValueError) as exc:
        raise RejectedInput("layout_missing", f"no layout for {qa.doc_sha256[:12]}: {exc}") from None


def window_reject(item: str, num_tokens: int, config: AssembleConfig) -> Reject | None:
    """A `too_short`/`too_long` Reject when the length is outside [min_tokens, max_tokens], else None."""
    if num_tokens < config.min_tokens:
        detail = f"{num_tokens:,} tokens < min_tokens {config.min_tokens:,}"
        return Reject(stage=STAGE, item=item, reason="too_short", detail=detail, extra={"num_tokens": num_tokens})
    if num_tokens > config.max_tokens:
        detail = f"{num_tokens:,} tokens > max_tokens {config.max_tokens:,}"
        return Reject(stage=STAGE, item=item, reason="too_long", detail=detail, extra={"num_tokens": num_tokens})
    return None


def _candidate(qa: QARecord, num_pages: int, num_tokens: int, config: AssembleConfig, seed: int) -> Candidate:
    item = example_id(qa.task, qa.doc_sha256, qa.id, num_tokens, format_fingerprint(config))
    return Candidate(item, qa.task, num_tokens, num_pages, unit_draw(seed, item), qa.doc_sha256, qa)


def normalise_short_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A short-data row as {"images", "messages"} in TRL's structured form.

    TRL rows pass unchanged, except that string contents become text parts with the images placed before the first
    user text (what TRL's `prepare_multimodal_messages` does at training time). LLaVA rows (`conversations` of
    {"from", "value"} with "<image>" markers, `image` or `images`) are converted.
    """
    images = list(row.get("images") or ([row["image"]] if row.get("image") is not None else []))
    if "messages" in row:
        return {"images": images, "messages": _structured(row["messages"], len(images))}
    if "conversations" in row:
        return {"images": images, "messages": _from_llava(row["conversations"])}
    raise ValueError("row has neither `messages` (TRL) nor `conversations` (LLaVA)")


def _structured(messages: Sequence[Mapping[str, Any]], num_images: int) -> list[dict[str, Any]]:
    out, placed = [], any(not isinstance(m["content"], str) for m in messages)
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            parts = [_text(content)]
            if message["role"] == "user" and not placed:
                parts, placed = [_image() for _ in range(num_images)] + parts, True
            content = parts
        out.append({"role": message["role"], "content": [dict(part) for part in content]})
    return out


def _from_llava(conversations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
    messages = []
    for turn in conversations:
        pieces = str(turn["value"]).split("<image>")
        content = [_text(pieces[0])] if pieces[0] else []
        for piece in pieces[1:]:
            content += [_image()] + ([_text(piece)] if piece else [])
        messages.append({"role": roles[turn["from"]], "content": content})
    return messages


def short_candidates(
    rows: Sequence[Mapping[str, Any]], *, seed: int, counter: TokenCounter
) -> tuple[list[Candidate], list[Reject]]:
    """Every short-data row with its exact length (from its images' sizes and its text), in batches."""
    candidates: list[Candidate] = []
    rejects: list[Reject] = []
    for start in range(0, len(rows), BATCH_SIZE):
        prepared = []
        for index in range(start, min(start + BATCH_SIZE, len(rows))):
            try:
                prepared.append((index, *_prepare_short(rows[index], counter)))
            except (ValueError, KeyError, OSError) as exc:
                rejects.append(Reject(stage=STAGE, item=f"short:{index}", reason="bad_short_row", detail=str(exc)))
        lengths = counter.count_chats([p[1] for p in prepared], [p[2] for p in prepared])
        for (index, messages, _, sizes), num_tokens in zip(prepared, lengths, strict=True):
            item = content_hash({"messages": messages, "image_sizes": sizes})
            draw = unit_draw(seed, item)
            candidates.append(Candidate(item, SHORT_TASK, num_tokens, len(sizes), draw, short_index=index))
    return candidates, rejects


def _prepare_short(row: Mapping[str, Any], counter: TokenCounter) -> tuple[list[dict[str, Any]], int, list[Any]]:
    normal = normalise_short_row(row)
    sizes = [image_size_px(image) for image in normal["images"]]
    placeholders = sum(1 for m in normal["messages"] for p in m["content"] if p.get("type") == "image")
    if placeholders != len(sizes):
        raise ValueError(f"{placeholders} image placeholders for {len(sizes)} images")
    return normal["messages"], sum(counter.image_tokens(w, h) for w, h in sizes), sizes


# ---------------------------------------------------------------------------------------------- entry point


def assemble(
    docs: Mapping[str, PdfDoc],
    qas: Iterable[QARecord],
    layouts: Callable[[str], LayoutDoc],
    config: AssembleConfig,
    *,
    render_dpi: int,
    seed: int,
    counter: TokenCounter,
    short_rows: Sequence[Mapping[str, Any]] | None = None,
) -> Assembly:
    """Build, measure, filter and sample every example; `Assembly.examples()` then yields the `sft` rows.

    `docs`: kept documents by sha256; `qas`: verified QA records (streamed once); `layouts(sha256)`: a document's
    layout (called for OCR tasks only); `short_rows`: the short-data source, indexable (a list or a datasets.Dataset
    whose image column is not decoded). Raises StageError on a shortfall when `on_shortfall` is `stop`.
    """
    if config.short_data.share > 0 and short_rows is None:
        raise StageError(f"assemble: short_data.share is {config.short_data.share} but no short data was loaded")
    candidates, rejects = document_candidates(
        docs, qas, layouts, config, render_dpi=render_dpi, seed=seed, counter=counter
    )
    short_pool: list[Candidate] = []
    if short_rows is not None and config.short_data.share > 0:
        short_pool, short_rejects = short_candidates(short_rows, seed=seed, counter=counter)
        rejects += short_rejects
    picks, shortfall = sample(candidates, short_pool, config)
    stats = compute_stats(picks, candidates, rejects, config, shortfall)
    return Assembly(picks, rejects, stats, config, docs, layouts, short_rows)


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
