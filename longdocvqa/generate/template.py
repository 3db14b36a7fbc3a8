"""The offline template generator (`generator.kind: template`, "template-baseline"): QA from the layout alone.

Owns: `TemplateGenerator` (`template_document`) and its candidates (next heading, a table or figure caption, the
first sentence under a heading, the headings of two pages, the page distance between two section starts), each
passed through the same semantic checks as model output and drawn deterministically from seed and segment.
Nothing leaves the machine.
Does not own: the checks (checks.py) or the OCR targets (ocr.py).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import QA, LayoutDoc, PdfDoc, QARecord, Reject, Segment, Task
from longdocvqa.generate.base import PageImage, item_id, make_record, verification_label
from longdocvqa.generate.checks import check_generated, title_core

if TYPE_CHECKING:
    from longdocvqa.llm import Ledger, LLMClient

TEMPLATE_GENERATOR = "template-baseline"
TEMPLATE_PROMPT_VERSION = "template-v2"  # v2: reasoning asks page distances, not counts


@dataclass(frozen=True)
class _Candidate:
    qa: QA
    evidence: str


_HEADINGS = ("title", "section")


def _headings(layout: LayoutDoc, page: int) -> list[str]:
    """The page's headings in order; [] when one of them is unusable, since a list or a "directly follows" that
    skipped it would be wrong (a change log's "2.5 2017-11-22" has no letter)."""
    blocks = sorted(layout.pages[page - 1].blocks, key=lambda b: b.order)
    heads = [b.text for b in blocks if b.label in _HEADINGS]
    return [_clean(h) for h in heads] if all(map(_usable_heading, heads)) else []


def _usable_heading(text: str) -> bool:
    words = text.split()
    return 1 <= len(words) <= 12 and any(c.isalpha() for c in text) and not text.rstrip().endswith((",", ";"))


def _clean(text: str) -> str:
    return " ".join(text.split())


def _captions(layout: LayoutDoc, page: int) -> list[str]:
    blocks = sorted(layout.pages[page - 1].blocks, key=lambda b: b.order)
    return [_clean(b.text) for b in blocks if b.label == "caption" and 3 <= len(b.text.split()) <= 60]


# A block title glued to its text: "Definition (Wort) Ein Wort ist ...", "Theorem 2.1 (Name) Let ...".
_BLOCK_TITLE = re.compile(r"^\w+(?: [\d.]+)? \([^()]{1,40}\) [A-ZÀ-Þ]")


def _first_sentence(text: str) -> str:
    """The block's first sentence, or "" unless it looks like one: it starts with a capital, a digit or a quote (a
    margin note such as "\\lineskip" glued to the front does not) and ends in . ! or ? (unpunctuated lines, such
    as change-log entries, are several items run together), with no block title glued to its front."""
    sentence = re.split(r"(?<=[.!?])\s+", _clean(text), maxsplit=1)[0]
    starts = sentence[:1].isupper() or sentence[:1].isdigit() or sentence[:1] in "\"'“‘«»„"
    ends = sentence.endswith((".", "!", "?"))
    ok = starts and ends and 4 <= len(sentence.split()) <= 40 and not _BLOCK_TITLE.match(sentence)
    return sentence if ok else ""


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
    """Page distance between the starts of two named sections (both pages are evidence).

    Counts of headings or captions over a whole segment were wrong whenever the layout over- or under-found one;
    a distance needs only two headings the layout finds reliably (`_section_starts`), so it follows from them.
    """
    starts = [(p, t) for p, t in _section_starts(layout) if segment.start_page <= p <= segment.end_page]
    span = f"Pages {segment.start_page} to {segment.end_page}"  # the scope, also where no title is a segment's
    out = []
    for i, (p1, first) in enumerate(starts):
        for p2, second in (s for s in starts[i + 1 :] if s[0] > p1):
            q = f'On {span}, how many pages after the start of section "{first}" does section "{second}" begin?'
            why = f'"{first}" starts on Page {p1}, "{second}" on Page {p2} (Layout): {p2} - {p1}'
            out.append(_candidate(q, str(p2 - p1), "Integer", [p1, p2], ["Layout"], why))
    return out


def _section_starts(layout: LayoutDoc) -> list[tuple[int, str]]:
    """(page, heading) of the headings whose start page is certain, in reading order.

    A heading counts when the outline confirms it (with an outline, section blocks are outline titles matched on
    their page) or, without one, when it is level 1-2 (about 90% precision); and its title occurs once among the
    document's headings, so a "Description" or "Examples" repeated per entry names no single page.
    """
    heads = [
        (page.index, _clean(b.text), title_core(b.text))
        for page in layout.pages
        for b in sorted(page.blocks, key=lambda b: b.order)
        if b.label == "section" and _usable_heading(b.text) and (layout.outline or (b.level or 3) <= 2)
    ]
    seen = Counter(core for _, _, core in heads)
    return [(page, text) for page, text, core in heads if len(core) >= 4 and seen[core] == 1]


_TEMPLATE_CANDIDATES = {
    "extract-single": _single_candidates,
    "extract-multi": _multi_candidates,
    "reasoning": _reasoning_candidates,
}


def template_document(
    layout: LayoutDoc, segments: list[Segment], tasks: list[Task], config: GenerateConfig, seed: int
) -> tuple[list[QARecord], list[Reject]]:
    """Offline baseline: extraction and page-distance QA built from the layout alone (deterministic from seed+doc)."""
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
        problem, outcome = check_generated(candidate.qa, task, segment, layout)
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
            verification=verification_label(outcome, "not_run"),
        )
        for c, outcome in chosen
    ]
    rejects = [
        Reject(
            stage="generate",
            item=item_id(segment, task, k),
            reason="no_template_candidate",
            detail=f"the layout of pages {segment.start_page}-{segment.end_page} offers no {task} template",
        )
        for k in range(len(chosen), count)
    ]
    return records, rejects


@dataclass(frozen=True)
class TemplateGenerator:
    """The offline baseline: no endpoint, no page images, no prompt files, no model calls."""

    config: GenerateConfig

    @property
    def name(self) -> str:
        return f"{TEMPLATE_GENERATOR} (offline, from the layout)"

    @property
    def prompt_version(self) -> str:
        return TEMPLATE_PROMPT_VERSION

    @property
    def makes_model_calls(self) -> bool:
        return False

    @property
    def needs_images(self) -> bool:
        return False

    @property
    def verifier_model(self) -> str | None:
        return None

    @property
    def judge_model(self) -> str | None:
        return None

    def check_prompts(self) -> None:
        """Nothing to load: the templates are code."""

    def open_clients(self, ledger_path: str | None, **client_options: Any) -> tuple[None, None]:
        return None, None

    def open_judge(self, ledger: Ledger | None, **client_options: Any) -> None:
        return None

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
        """Template QA from the layout alone; the clients and page images are not used."""
        return template_document(layout, segments, tasks, self.config, seed)
