"""OCR tasks and the VLM OCR backend: transcription targets from layout blocks, and scanned pages read by a VLM.

Owns: the OCR ablation records (OCR-full: every page; OCR-needle: 1-3 pages drawn from seed and document), whose
targets are the layout's text, not a model's, and `transcribe_page` (labelled blocks of an image-only page from
the client's VLM, through the ledger). Does not own: layout analysis (documents/layout.py) or rendering
(documents/render.py).
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict

from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import QA, Block, BlockLabel, LayoutDoc, QARecord, Reject, Segment, Task
from longdocvqa.generate.base import make_record
from longdocvqa.generate.prompts import fill, load_prompt
from longdocvqa.llm import ImageInput, LLMClient, Message, image_part, text_part


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
