"""Semantic checks of a generated QA after its schema: format, evidence pages, anchor, give-aways, evidence text.

Owns: `check_generated` (every check in order) and its parts, the normalisation every comparison with page text
uses, number parsing and the page references a question names. A failed check is an `Invalid` the client
sends back to the model. Does not own: the schema (records.QA) or re-asking (llm/).
"""

from __future__ import annotations

import re

from longdocvqa.core.records import QA, LayoutDoc, Segment
from longdocvqa.documents.text import comparable
from longdocvqa.llm import Invalid


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


SECTION_NUMBERING = re.compile(r"^\s*(?:(?:chapter|section|part|appendix)\s+)?[\dIVXivx]+(?:\.\d+)*[.:)]?\s+", re.I)


def title_core(title: str) -> str:
    """A section title without its numbering, normalised ("3.2 Octave" -> "octave", "Chapter 4: Tools" -> "tools")."""
    return normalise(SECTION_NUMBERING.sub("", title))


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
    titled = any(len(core) >= 4 and _contains(question, core) for core in map(title_core, segment.sections))
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


def check_generated(qa: QA, task: str, segment: Segment, layout: LayoutDoc | None) -> tuple[Invalid | None, str]:
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
