"""Labelled layout -> section-aligned page segments (pure).

A segment is one or more consecutive sections spanning `min_pages..max_pages` pages (the paper:
8-15). Sections come from the PDF outline when it has one, else from `title`/`section` blocks.
A section longer than `max_pages` is split into its subsections. A document without usable
headings falls back to a page window whose first page holds a heading, else starts a new paragraph;
each segment says which rule made it. Spans whose first section starts at the top of a page are
preferred. Sampling is deterministic given the recipe seed and the document hash.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe import SegmentConfig
from longdocvqa.core.records import LayoutDoc, Section, Segment
from longdocvqa.documents.headings import index_letter

_CONTENTS = re.compile(r"^(table of )?contents$|^index$", re.IGNORECASE)  # navigation, not a section start
_SENTENCE_END = re.compile(r"[.!?:;)\]]\s*$")


def find_sections(layout: LayoutDoc) -> list[Section]:
    """Sections in page order with their page spans; nested levels kept (1 = top)."""
    heads = _headings(layout)
    sections = []
    for i, (level, title, page) in enumerate(heads):
        following = [p for lvl, _, p in heads[i + 1 :] if lvl <= level]
        end = max(page, following[0] - 1) if following else layout.num_pages
        sections.append(Section(title=title, level=level, start_page=page, end_page=end))
    return sections


def _headings(layout: LayoutDoc) -> list[tuple[int, str, int]]:
    if layout.outline:
        return [(e.level, e.title, e.page) for e in layout.outline if 1 <= e.page <= layout.num_pages]
    sizes = sorted({b.font_size or 0 for p in layout.pages for b in p.blocks if b.label == "section"}, reverse=True)
    rank = {size: i + 1 for i, size in enumerate(sizes[:3])}
    heads = []
    for page in layout.pages:
        for block in sorted(page.blocks, key=lambda b: b.order):
            if block.label == "section" and page.index > 1 and not _navigation(block.text.strip()):
                level = block.level if block.level is not None else rank.get(block.font_size or 0, 3)
                heads.append((level, block.text.strip(), page.index))
    return heads


def _navigation(title: str) -> bool:
    """A table of contents, an index, or one of an index's letters ("C"): where a reader looks things up, not
    where a section of the text starts."""
    return bool(_CONTENTS.match(title)) or index_letter(title)


def top_pages(layout: LayoutDoc) -> set[int]:
    """Pages whose first block below the running header is a heading: a section starts at the page top."""
    tops = set()
    for page in layout.pages:
        body = [b for b in sorted(page.blocks, key=lambda b: b.order) if b.label not in ("header", "footer")]
        if body and body[0].label in ("section", "title"):
            tops.add(page.index)
    return tops


def sample_segments(layout: LayoutDoc, config: SegmentConfig, seed: int) -> list[Segment]:
    """Up to `config.per_document` non-overlapping segments for one document."""
    rng = random.Random(content_hash({"seed": seed, "doc": layout.sha256}))
    units = _units(find_sections(layout), config.max_pages)
    spans = _section_spans(units, config)
    tops = top_pages(layout)
    spans = [s for s in spans if s[0] in tops] or spans  # prefer sections that start at the top of a page
    segments: list[Segment] = []
    taken: set[int] = set()
    while spans and len(segments) < config.per_document:
        start, end, titles = spans.pop(rng.randrange(len(spans)))
        if taken.isdisjoint(range(start, end + 1)):
            segments.append(_segment(layout, start, end, titles, "sections"))
            taken.update(range(start, end + 1))
    if not segments:
        segments.append(_window(layout, config, rng))
    return segments


def _units(sections: Sequence[Section], max_pages: int) -> list[Section]:
    """Top-level sections, with any section longer than `max_pages` replaced by its children."""
    if not sections:
        return []
    top = min(s.level for s in sections)
    units: list[Section] = []
    for section in (s for s in sections if s.level == top):
        units.extend(_split(section, sections, max_pages))
    return _merge_same_page(units)


def _split(section: Section, sections: Sequence[Section], max_pages: int) -> list[Section]:
    size = section.end_page - section.start_page + 1
    children = [s for s in sections if s.level == section.level + 1
                and section.start_page <= s.start_page <= section.end_page and s is not section]  # fmt: skip
    if size <= max_pages or not children:
        return [section]
    out = []
    for child in children:
        out.extend(_split(child, sections, max_pages))
    return out


def _merge_same_page(units: list[Section]) -> list[Section]:
    """Sections that start on the same page share it: the earlier one is folded into the later one's span."""
    merged: list[Section] = []
    for unit in sorted(units, key=lambda s: s.start_page):
        if merged and merged[-1].start_page == unit.start_page:
            prev = merged.pop()
            unit = Section(title=f"{prev.title}\x00{unit.title}", level=unit.level, start_page=prev.start_page,
                           end_page=max(prev.end_page, unit.end_page))  # fmt: skip
        if merged and merged[-1].end_page >= unit.start_page:
            merged[-1] = merged[-1].model_copy(update={"end_page": unit.start_page - 1})
        merged.append(unit)
    return merged


def _section_spans(units: Sequence[Section], config: SegmentConfig) -> list[tuple[int, int, list[str]]]:
    """Every run of consecutive units whose pages total `min_pages..max_pages`."""
    spans = []
    for i in range(len(units)):
        for j in range(i, len(units)):
            start, end = units[i].start_page, units[j].end_page
            if end - start + 1 > config.max_pages:
                break
            if end - start + 1 >= config.min_pages:
                titles = [t for u in units[i : j + 1] for t in u.title.split("\x00")]
                spans.append((start, end, titles))
    return spans


def _window(layout: LayoutDoc, config: SegmentConfig, rng: random.Random) -> Segment:
    """Fallback: a page window of random length that starts where a new paragraph starts."""
    length = min(layout.num_pages, rng.randint(config.min_pages, config.max_pages))
    starts = list(range(1, layout.num_pages - length + 2))
    heads = {page for _, _, page in _headings(layout)}
    tops = top_pages(layout)
    aligned = ([p for p in starts if p in heads and p in tops] or [p for p in starts if p in heads]
               or [p for p in starts if _starts_paragraph(layout, p)])  # fmt: skip
    start = rng.choice(aligned or starts)
    end = start + length - 1
    titles = [h[1] for h in _headings(layout) if start <= h[2] <= end]
    return _segment(layout, start, end, titles, "window")


def _starts_paragraph(layout: LayoutDoc, page: int) -> bool:
    """True when the previous page's body text ends a sentence (so this page does not continue it)."""
    if page == 1:
        return True
    previous = layout.page_text(page - 1).strip()
    return not previous or bool(_SENTENCE_END.search(previous))


def _segment(layout: LayoutDoc, start: int, end: int, titles: list[str], rule: str) -> Segment:
    seg_id = content_hash({"doc": layout.sha256, "start": start, "end": end}, length=16)
    texts = [layout.page_text(p) for p in range(start, end + 1)]
    return Segment(id=seg_id, doc_sha256=layout.sha256, start_page=start, end_page=end,
                   sections=titles, rule=rule, page_texts=texts)  # type: ignore[arg-type]  # fmt: skip
