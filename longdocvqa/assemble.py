"""Full-document training examples: messages, exact lengths, length window, distribution, mixture and budget.

Owns: turning each QA and its whole document into one example in TRL's conversational vision format (the `sft`
config; the images are the document's pages in order, referenced by `doc_id`, never held here), its exact Qwen2.5-VL
length (tokens.py), the length window, the sampling (distribution, task mixture, token budget, short-data share), the
statistics and histograms for the manifest and card, and the dry-run plan.
Does not own: PDFs or pixels (render.py), loading short data (hub), writing files (store/pipeline/publish).

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
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from longdocvqa import chart
from longdocvqa.errors import RejectedInput, StageError
from longdocvqa.fingerprint import content_hash
from longdocvqa.recipe import AssembleConfig
from longdocvqa.records import OCR_TASKS, LayoutDoc, PdfDoc, QARecord, Reject
from longdocvqa.tokens import DEFAULT_SYSTEM_PROMPT, TokenCounter, document_image_tokens, image_size_px

STAGE = "assemble"
SHORT_TASK = "short"
ExampleTask = Literal["extract-single", "extract-multi", "reasoning", "ocr-full", "ocr-needle", "short"]
ANSWER_INSTRUCTION = (
    "You are given a document with text and images, and a question. Answer the question as concisely as you can, "
    "using a single phrase or sentence if possible. If the question cannot be answered based on the information in "
    "the document, write 'Not answerable.' Write your answer in the following format:\nAnswer: [answer]"
)
LONG_EXAMPLE_TOKENS = 100_000  # "share >= 100K" in the paper's tables (decimal K, as its totals add up)
HISTOGRAM_BIN_TOKENS = 4096
BATCH_SIZE = 512
_HASH_SPACE = float(1 << 64)
_EST_QA_TEXT_TOKENS = 80  # dry-run estimate of system prompt + question + answer, without a tokenizer
_EST_LABEL_TOKENS = 5  # "\nPage 17: "
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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A kept example before sampling: small, no messages, no images."""

    id: str
    task: str
    num_tokens: int
    num_pages: int
    u: float
    doc_id: str = ""
    qa: QARecord | None = None
    short_index: int | None = None


class Histogram(BaseModel):
    """Counts per series over bins [edges[i], edges[i+1])."""

    edges: list[int]
    counts: dict[str, list[int]]


class TaskStats(BaseModel):
    examples: int
    tokens: int
    token_share: float
    example_share: float
    mean_tokens: float
    min_tokens: int
    max_tokens: int
    share_ge_100k: float
    mean_pages: float


class AssembleStats(BaseModel):
    """Statistics of the sampled examples for the manifest and the card."""

    examples: int
    tokens: int
    mean_tokens: float
    min_tokens: int
    max_tokens: int
    share_ge_100k: float = Field(description="share of examples with >= 100,000 tokens")
    mean_pages: float
    per_task: dict[str, TaskStats]
    pool: dict[str, dict[str, int]] = Field(description="candidates in the window per task: examples, tokens")
    requested: dict[str, Any]
    shortfall: str | None = None
    rejects: dict[str, int]
    length_histogram: Histogram
    pages_histogram: Histogram


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
            messages = build_messages(pick.qa, self.docs[pick.doc_id].num_pages, self.config, layout)
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


def build_messages(
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
    """The text between added tokens in the rendered template of `build_messages`, labels of pages 2..n left out.

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


def unit_draw(seed: int, item_id: str) -> float:
    """A uniform draw in (0, 1) fixed by the seed and an id: sha256, first 64 bits."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / _HASH_SPACE


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


# ---------------------------------------------------------------------------------------------- sampling


@dataclass
class _Stream:
    name: str
    share: float
    items: list[Candidate]
    pos: int = 0
    used: float = 0.0

    @property
    def progress(self) -> float:
        return self.used / self.share


def sampling_key(candidate: Candidate, config: AssembleConfig) -> float:
    """Smaller first. pool-native and target: u; long-biased: Efraimidis-Spirakis key -ln(u) / weight."""
    if config.distribution != "long-biased":
        return candidate.u
    span = max(1, config.max_tokens - config.min_tokens)
    x = min(1.0, max(0.0, (candidate.num_tokens - config.min_tokens) / span))
    return -math.log(candidate.u) * math.exp(-config.long_bias * x)


def _bin_of(num_tokens: int, bins: Sequence[tuple[int, int, float]]) -> int | None:
    for index, (lo, hi, _) in enumerate(bins):
        if lo <= num_tokens < hi or (index == len(bins) - 1 and num_tokens == hi):
            return index
    return None


def _streams(candidates: Sequence[Candidate], config: AssembleConfig) -> list[_Stream]:
    """One stream per task (or per task and target bin), each sorted by its sampling key."""
    bins = config.target_bins() if config.distribution == "target" else [(0, 0, 1.0)]
    groups: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for cand in candidates:
        index = _bin_of(cand.num_tokens, bins) if config.distribution == "target" else 0
        if index is not None and config.mixture.get(cand.task, 0) > 0:  # type: ignore[call-overload]
            groups[(cand.task, index)].append(cand)
    streams = []
    for task, task_share in config.mixture.items():
        for index, (lo, hi, bin_share) in enumerate(bins):
            if task_share * bin_share > 0:
                items = sorted(groups.get((task, index), []), key=lambda c: (sampling_key(c, config), c.id))
                name = task if config.distribution != "target" else f"{task}[{lo}-{hi}]"
                streams.append(_Stream(name, task_share * bin_share, items))
    return streams


def fill_streams(
    streams: list[_Stream], budget: float | None, unit: Literal["tokens", "examples"], on_shortfall: str
) -> tuple[list[Candidate], str | None]:
    """Deficit round robin: the stream furthest below its share takes its next item until the budget is full."""
    picks: list[Candidate] = []
    total, active = 0, [s for s in streams if s.share > 0]
    while active:
        stream = min(active, key=lambda s: s.progress)  # ties: the first in mixture order
        if stream.pos == len(stream.items):
            if budget is None:
                active.remove(stream)
                continue
            message = _shortfall_message(streams, stream, budget, total, unit)
            if on_shortfall == "stop":
                raise StageError(f"assemble: {message}; add documents, lower assemble.budget_tokens, "
                                 "or set assemble.on_shortfall: rescale")  # fmt: skip
            return picks, f"rescaled: {message}"
        item = stream.items[stream.pos]
        if budget is not None and total + item.num_tokens > budget:
            break
        picks.append(item)
        stream.pos += 1
        stream.used += item.num_tokens if unit == "tokens" else 1
        total += item.num_tokens
    return picks, None


def _shortfall_message(streams: list[_Stream], dry: _Stream, budget: float, total: int, unit: str) -> str:
    lines = []
    if unit == "tokens":
        for s in streams:
            have = sum(c.num_tokens for c in s.items)
            need = s.share * budget
            if have < need:
                lines.append(f"{s.name} has {have:,} of the {need:,.0f} tokens its {s.share:.0%} share needs "
                             f"(short by {need - have:,.0f})")  # fmt: skip
    else:
        lines.append(f"{dry.name} ran out after {dry.pos:,} examples")
    return "; ".join(lines) + f"; sampling stopped at {total:,} of {budget:,.0f} tokens"


def sample(
    candidates: Sequence[Candidate], short_pool: Sequence[Candidate], config: AssembleConfig
) -> tuple[list[Candidate], str | None]:
    """Sample long candidates by distribution, mixture and budget, then short data at its token share."""
    share = config.short_data.share if short_pool else 0.0
    budget = config.budget_tokens
    long_budget = None if budget is None else budget * (1 - share)
    picks, shortfall = fill_streams(
        _streams(candidates, config), long_budget, config.mixture_unit, config.on_shortfall
    )
    if share == 0:
        return _shuffled(picks), shortfall
    long_tokens = sum(c.num_tokens for c in picks)
    short_target = long_tokens * share / (1 - share)
    short_have = sum(c.num_tokens for c in short_pool)
    if short_have < short_target - max((c.num_tokens for c in short_pool), default=0):
        message = f"short data has {short_have:,} of the {short_target:,.0f} tokens its {share:.0%} share needs"
        if config.on_shortfall == "stop":
            raise StageError(f"assemble: {message}; add short data, lower the share or the budget, or rescale")
        smaller = short_have * (1 - share) / share
        picks, _ = fill_streams(_streams(candidates, config), smaller, config.mixture_unit, "rescale")
        short_target = sum(c.num_tokens for c in picks) * share / (1 - share)
        shortfall = f"rescaled: {message}"
    short_stream = _Stream(SHORT_TASK, 1.0, sorted(short_pool, key=lambda c: (c.u, c.id)))
    short_picks, _ = fill_streams([short_stream], short_target, "tokens", "rescale")
    return _shuffled(picks + short_picks), shortfall


def _shuffled(picks: list[Candidate]) -> list[Candidate]:
    """Output order: by a second seeded hash, so tasks and short data interleave; independent of input order."""
    return sorted(picks, key=lambda c: (hashlib.sha256(f"order:{c.u!r}:{c.id}".encode()).digest(), c.id))


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


# ---------------------------------------------------------------------------------------------- statistics


def compute_stats(
    picks: Sequence[Candidate],
    candidates: Sequence[Candidate],
    rejects: Sequence[Reject],
    config: AssembleConfig,
    shortfall: str | None = None,
) -> AssembleStats:
    """Token and page statistics of the sample, per task and overall, with histograms."""
    overall = _summary([p.num_tokens for p in picks], [p.num_pages for p in picks])
    by_task: dict[str, list[Candidate]] = defaultdict(list)
    for pick in picks:
        by_task[pick.task].append(pick)
    total_tokens, total_examples = max(1, overall["tokens"]), max(1, len(picks))
    per_task = {}
    for task, items in sorted(by_task.items()):
        summary = _summary([c.num_tokens for c in items], [c.num_pages for c in items])
        per_task[task] = TaskStats(token_share=summary["tokens"] / total_tokens,
                                   example_share=len(items) / total_examples, **summary)  # fmt: skip
    pool: dict[str, dict[str, int]] = defaultdict(lambda: {"examples": 0, "tokens": 0})
    for cand in candidates:
        pool[cand.task]["examples"] += 1
        pool[cand.task]["tokens"] += cand.num_tokens
    return AssembleStats(
        **overall, per_task=per_task, pool=dict(sorted(pool.items())), requested=_requested(config),
        shortfall=shortfall, rejects=dict(sorted(Counter(r.reason for r in rejects).items())),
        length_histogram=histogram(picks, "tokens", config), pages_histogram=histogram(picks, "pages", config),
    )  # fmt: skip


def _summary(tokens: Sequence[int], pages: Sequence[int]) -> dict[str, Any]:
    count = len(tokens)
    return {
        "examples": count,
        "tokens": sum(tokens),
        "mean_tokens": sum(tokens) / count if count else 0.0,
        "min_tokens": min(tokens, default=0),
        "max_tokens": max(tokens, default=0),
        "share_ge_100k": sum(t >= LONG_EXAMPLE_TOKENS for t in tokens) / count if count else 0.0,
        "mean_pages": sum(pages) / count if count else 0.0,
    }


def _requested(config: AssembleConfig) -> dict[str, Any]:
    keys = ("distribution", "min_tokens", "max_tokens", "mixture", "mixture_unit", "budget_tokens", "on_shortfall")
    requested = {key: getattr(config, key) for key in keys}
    requested["short_share"] = config.short_data.share
    if config.distribution == "target":
        requested["target"] = config.target
    if config.distribution == "long-biased":
        requested["long_bias"] = config.long_bias
    return requested


def histogram(picks: Sequence[Candidate], what: Literal["tokens", "pages"], config: AssembleConfig) -> Histogram:
    """Counts per task: 4,096-token bins up to max_tokens, or one bin per page count."""
    values = [(p.task, p.num_tokens if what == "tokens" else p.num_pages) for p in picks]
    if what == "tokens":
        top = max([config.max_tokens] + [v for _, v in values])
        edges = list(range(0, top + HISTOGRAM_BIN_TOKENS, HISTOGRAM_BIN_TOKENS))
    else:
        edges = list(range(0, max([1] + [v for _, v in values]) + 2))
    width = edges[1] - edges[0]
    counts: dict[str, list[int]] = {}
    for task, value in sorted(values):
        counts.setdefault(task, [0] * (len(edges) - 1))[min(value // width, len(edges) - 2)] += 1
    return Histogram(edges=edges, counts=counts)


def write_histograms(stats: AssembleStats, out_dir: str | Path) -> dict[str, Path]:
    """Draw `length_histogram.png` (x: tokens in K, y: count) and `pages_histogram.png`, stacked by task."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = (f"{stats.examples:,} examples, mean {stats.mean_tokens:,.0f} tokens, "
             f"{stats.share_ge_100k:.1%} >= 100,000")  # fmt: skip
    length_label = "Sequence length (K tokens, K = 1024)"
    return {
        "length": _plot(stats.length_histogram, out / "length_histogram.png", length_label, title, 1024),
        "pages": _plot(stats.pages_histogram, out / "pages_histogram.png", "Pages per example", title, 1),
    }


def _plot(hist: Histogram, path: Path, xlabel: str, title: str, scale: int) -> Path:
    edges = [edge / scale for edge in hist.edges]
    return chart.stacked_histogram(edges, hist.counts, path, xlabel=xlabel, title=title)


# ---------------------------------------------------------------------------------------------- dry-run plan


class TaskPlan(BaseModel):
    share: float
    candidates: int
    candidate_tokens: int
    expected_examples: int
    expected_tokens: int
    shortfall_tokens: int = 0


class AssemblyPlan(BaseModel):
    """What a build would assemble, from page sizes alone (for `build --dry-run`)."""

    documents: int
    documents_in_window: int
    mean_tokens: float
    budget_tokens: int | None
    short_share: float
    tasks: dict[str, TaskPlan]
    expected_tokens: int
    notes: list[str]


def plan(
    docs: Iterable[PdfDoc],
    config: AssembleConfig,
    *,
    render_dpi: int,
    qas_per_document: int = 1,
) -> AssemblyPlan:
    """Expected examples and tokens per task: each document's length (exact image tokens, estimated text) and
    `qas_per_document` QAs per task (segments per document x questions per segment)."""
    lengths = [_estimated_length(doc, config, render_dpi) for doc in docs]
    inside = [n for n in lengths if n is not None and config.min_tokens <= n <= config.max_tokens]
    mean = sum(inside) / len(inside) if inside else 0.0
    long_budget = None if config.budget_tokens is None else config.budget_tokens * (1 - config.short_data.share)
    tasks: dict[str, TaskPlan] = {}
    for task, task_share in config.mixture.items():
        if task_share > 0:
            tasks[task] = _task_plan(task_share, len(inside), sum(inside), mean, long_budget, qas_per_document)
    expected = sum(t.expected_tokens for t in tasks.values())
    share = config.short_data.share
    notes = ["text tokens are estimated (question and answer unknown before generation)"]
    if any(task in OCR_TASKS for task in tasks):
        notes.append("OCR transcription targets are not included in the estimate")
    if share:
        notes.append(f"plus about {expected * share / (1 - share):,.0f} tokens of short data ({share:.0%})")
    return AssemblyPlan(documents=len(lengths), documents_in_window=len(inside), mean_tokens=mean,
                        budget_tokens=config.budget_tokens, short_share=share, tasks=tasks, expected_tokens=expected,
                        notes=notes)  # fmt: skip


def _estimated_length(doc: PdfDoc, config: AssembleConfig, dpi: int) -> int | None:
    try:
        image = document_image_tokens(doc.page_sizes_pt, dpi, config.min_pixels, config.max_pixels)
    except ValueError:
        return None
    labels = doc.num_pages * _EST_LABEL_TOKENS if config.page_labels else 0
    return image + labels + _EST_QA_TEXT_TOKENS


def _task_plan(
    share: float, docs: int, doc_tokens: int, mean: float, long_budget: float | None, per_doc: int
) -> TaskPlan:
    candidates, candidate_tokens = docs * per_doc, doc_tokens * per_doc
    if long_budget is None:
        return TaskPlan(share=share, candidates=candidates, candidate_tokens=candidate_tokens,
                        expected_examples=candidates, expected_tokens=candidate_tokens)  # fmt: skip
    need = share * long_budget  # by examples too: every task draws from the same documents, so equal mean lengths
    tokens = int(min(need, candidate_tokens))
    examples = int(tokens / mean) if mean else 0
    return TaskPlan(share=share, candidates=candidates, candidate_tokens=candidate_tokens, expected_examples=examples,
                    expected_tokens=tokens, shortfall_tokens=int(max(0.0, need - candidate_tokens)))  # fmt: skip
