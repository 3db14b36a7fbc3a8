"""Pydantic records that cross stage boundaries.

Each stage reads and writes these records only; no stage imports another stage. Page indices are
absolute and 1-based everywhere ("Page 10" is `index == 10`), matching the labels shown to models.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from longdocvqa.core.safetext import clean_text

BlockLabel = Literal[
    "title", "section", "paragraph", "table", "caption", "figure", "list", "header", "footer", "footnote", "formula"
]
AnswerFormat = Literal["String", "Integer", "Float", "List"]
EvidenceSource = Literal["Text", "Layout", "Figure", "Table"]
Task = Literal["extract-single", "extract-multi", "reasoning", "ocr-full", "ocr-needle"]
QA_TASKS: tuple[Task, ...] = ("extract-single", "extract-multi", "reasoning")
OCR_TASKS: tuple[Task, ...] = ("ocr-full", "ocr-needle")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PdfDoc(Record):
    """One pool document: identity (sha256 of the bytes), size, pages and provenance."""

    sha256: str
    path: str
    size_bytes: int
    num_pages: int
    page_sizes_pt: list[tuple[float, float]] = Field(description="(width, height) of each page in PDF points")
    title: str = ""
    producer: str = ""
    licence: str | None = None
    source: str | None = None


class Block(Record):
    """One labelled layout block on a page; `bbox` is (x0, y0, x1, y1) in PDF points."""

    label: BlockLabel
    bbox: tuple[float, float, float, float]
    text: str
    order: int = Field(description="reading order on the page, from 0")
    font_size: float | None = None
    level: int | None = Field(None, description="heading level (1 = top) for title/section blocks, when known")


class Page(Record):
    """One page of a parsed document."""

    index: int
    width_pt: float
    height_pt: float
    blocks: list[Block] = Field(default_factory=list)
    image_only: bool = False
    num_chars: int = 0


class OutlineEntry(Record):
    level: int
    title: str
    page: int


class LayoutDoc(Record):
    """A document parsed into labelled blocks, page by page."""

    sha256: str
    backend: str
    num_pages: int
    pages: list[Page]
    outline: list[OutlineEntry] = Field(default_factory=list)

    def page_text(self, index: int, skip: tuple[str, ...] = ("header", "footer")) -> str:
        """Text of page `index` in reading order, without running headers and footers."""
        page = self.pages[index - 1]
        return "\n".join(b.text for b in sorted(page.blocks, key=lambda b: b.order) if b.label not in skip)


class Section(Record):
    """A section found from `title`/`section` blocks (or the outline): pages [start_page, end_page]."""

    title: str
    level: int
    start_page: int
    end_page: int


class Segment(Record):
    """A run of consecutive pages (8-15 by default) given to the generator."""

    id: str
    doc_sha256: str
    start_page: int
    end_page: int
    sections: list[str] = Field(description="titles of the sections the segment covers (question anchors)")
    rule: Literal["sections", "window"]
    page_texts: list[str] = Field(description="layout text of each page, start_page first")

    @property
    def pages(self) -> list[int]:
        return list(range(self.start_page, self.end_page + 1))


class QA(Record):
    """The generator's JSON answer; this model is also the `response_format` JSON Schema."""

    question: str = Field(min_length=1)
    answer: str | list[str]
    answer_format: AnswerFormat
    # The upper bounds reach every real case (segments have at most 15 pages by default, there are 4 evidence
    # types) and turn into grammar limits on servers that enforce the schema, which stops runaway lists.
    evidence_pages: list[int] = Field(
        min_length=1, max_length=16, description="absolute page indices as labelled in the prompt"
    )
    evidence_sources: list[EvidenceSource] = Field(min_length=1, max_length=4)

    @field_validator("question", "answer")
    @classmethod
    def _clean(cls, value: str | list[str]) -> str | list[str]:
        return clean_model_text(value)


def clean_model_text(value: str | list[str]) -> str | list[str]:
    """Model (or PDF) text as stored: control characters and bidi overrides dropped (safetext.clean_text)."""
    return clean_text(value) if isinstance(value, str) else [clean_text(item) for item in value]


class QARecord(Record):
    """A validated QA with its full provenance (the `qa` config row)."""

    id: str
    task: Task
    doc_sha256: str
    segment_id: str
    segment_start: int
    segment_end: int
    segment_sections: list[str]
    question: str
    answer: str | list[str]
    answer_format: AnswerFormat
    evidence_pages: list[int]
    evidence_sources: list[EvidenceSource]
    evidence_description: str = ""
    generator: str
    prompt_version: str
    call_id: str = ""
    verification: str = "not_run"
    judge_score: float | None = None  # the rubric judge's weighted 1-5 score; None when no judge ran
    judge_rubrics: dict[str, int] | None = None  # rubric -> 1-5 score; None when no judge ran

    @field_validator("question", "answer", "evidence_description", "segment_sections")
    @classmethod
    def _clean(cls, value: str | list[str]) -> str | list[str]:
        return clean_model_text(value)


class Reject(Record):
    """One dropped item: what, where, why."""

    stage: str
    item: str
    reason: str
    detail: str = ""
    extra: dict[str, object] = Field(default_factory=dict)


class RawLine(NamedTuple):
    """One text line as the PDF draws it (documents/render.py's output, documents/layout.py's input).

    A named tuple, not a Record: layout makes ~100 of them per page and never stores them. Pydantic construction
    was a tenth of the layout stage's CPU time, and a frozen dataclass's (one `object.__setattr__` per field) still
    cost four times a tuple's. `math`: most characters are in a math font (CMMI, CMSY, STIX Math, ...)."""

    bbox: tuple[float, float, float, float]
    text: str
    size: float
    bold: bool = False
    mono: bool = False
    math: bool = False


class RawBox(Record):
    """A region found by a detector (table finder or layout model) with its label and text."""

    bbox: tuple[float, float, float, float]
    label: str
    text: str = ""


class RawPage(Record):
    """What layout needs from one page: size, text lines, image and table regions, optional model boxes."""

    index: int
    width_pt: float
    height_pt: float
    lines: list[RawLine] = Field(default_factory=list)
    image_boxes: list[tuple[float, float, float, float]] = Field(default_factory=list)
    tables: list[RawBox] = Field(default_factory=list)
    model_boxes: list[RawBox] | None = None
    graphic_boxes: list[tuple[float, float, float, float]] = Field(
        default_factory=list, description="every vector path's box but page backgrounds (figure candidates)"
    )
    rules: list[tuple[float, float, float, float]] = Field(default_factory=list, description="thin horizontal lines")


def name_document(reject: Reject, path: str) -> Reject:
    """The reject with its document's file path in front of its item (QA ids and segment ids name only hashes)."""
    if reject.item.startswith(path):
        return reject
    return reject.model_copy(update={"item": f"{path} {reject.item}"})
