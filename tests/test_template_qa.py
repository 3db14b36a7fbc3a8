"""The template baseline's QA follow from what the layout finds reliably (issue 18): reasoning asks the page
distance between two named section starts, heading lists leave no heading of their pages out, and a "first
sentence" is a sentence. Real bundled PDFs, real PyMuPDF layout."""

from __future__ import annotations

import re

import pytest
from llm_fixtures import real_document

from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import LayoutDoc, Segment
from longdocvqa.generate.template import template_document


def _section_pages(layout: LayoutDoc, title: str) -> list[int]:
    return [
        p.index for p in layout.pages for b in p.blocks if b.label == "section" and " ".join(b.text.split()) == title
    ]


def _whole(layout: LayoutDoc, start: int, end: int) -> Segment:
    texts = [layout.page_text(p) for p in range(start, end + 1)]
    return Segment(id="s", doc_sha256=layout.sha256, start_page=start, end_page=end, sections=[], rule="window",
                   page_texts=texts)  # fmt: skip


@pytest.mark.parametrize("name", ["R-data.pdf", "mathtools.pdf", "brief.pdf", "seminar-doc.pdf"])  # outline / none
def test_reasoning_is_the_page_distance_between_two_named_section_starts(name: str) -> None:
    _, layout, segments = real_document(name)
    config = GenerateConfig(questions_per_segment=4, tasks=["reasoning"])
    records, _ = template_document(layout, segments, ["reasoning"], config, seed=0)
    assert records and records == template_document(layout, segments, ["reasoning"], config, seed=0)[0]
    for record in records:
        first, second = re.findall(r'"([^"]+)"', record.question)
        (p1,), (p2,) = _section_pages(layout, first), _section_pages(layout, second)  # each heading names one page
        assert record.segment_start <= p1 < p2 <= record.segment_end
        assert (record.answer, record.answer_format, record.evidence_pages) == (str(p2 - p1), "Integer", [p1, p2])
        assert f"Pages {record.segment_start} to {record.segment_end}" in record.question  # the scope, explicit
        assert record.evidence_sources == ["Layout"] and record.prompt_version == "template-v2"


def test_heading_lists_and_first_sentences_on_a_change_log() -> None:
    """etoolbox's revision history: "2.5 2017-11-22" headings have no letter, and entries are unpunctuated lines."""
    _, layout, _ = real_document("etoolbox.pdf")
    segment = _whole(layout, 28, 40)
    config = GenerateConfig(questions_per_segment=1000, tasks=["extract-single", "extract-multi"])
    records, _ = template_document(layout, [segment], ["extract-single", "extract-multi"], config, seed=0)
    lists = [r for r in records if r.task == "extract-multi"]
    assert lists and all(r.answer_format == "List" for r in lists)
    for record in lists:  # every heading block of the cited pages, none skipped
        pages = [layout.pages[p - 1] for p in record.evidence_pages]
        heads = [" ".join(b.text.split()) for page in pages for b in sorted(page.blocks, key=lambda b: b.order)
                 if b.label in ("title", "section")]  # fmt: skip
        assert record.answer == heads
    assert not any(set(r.evidence_pages) & {34} for r in lists)  # page 34 holds "2.5 2017-11-22"
    sentences = [r.answer for r in records if "first sentence" in r.question]
    assert sentences and all(isinstance(s, str) and s[0].isupper() and s.endswith((".", "!", "?")) for s in sentences)
    assert not any("2.5b 2018-02-04" in r.question and "first sentence" in r.question for r in records)


@pytest.mark.parametrize(
    ("name", "page", "glued"),
    [("brief.pdf", 9, "\\lineskip"), ("beamerexample-lecture-beamer-version.pdf", 22, "Definition (Wort)")],
)
def test_a_first_sentence_has_no_margin_note_or_block_title_glued_on(name: str, page: int, glued: str) -> None:
    _, layout, _ = real_document(name)
    assert any(b.text.startswith(glued) for b in layout.pages[page - 1].blocks)  # the layout glues it on
    config = GenerateConfig(questions_per_segment=1000, tasks=["extract-single"])
    records, _ = template_document(layout, [_whole(layout, page, page)], ["extract-single"], config, seed=0)
    assert not any(isinstance(r.answer, str) and r.answer.startswith(glued) for r in records)
