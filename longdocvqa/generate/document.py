"""One document's QA: the generator the recipe names, then the OCR targets, then duplicate questions dropped.

Owns: `make_generator` (the `Generator` for `generate.generator.kind`), `generate_document`, `open_clients` and
`open_judge`.
Does not own: the generators themselves (template.py, openai.py), OCR targets (ocr.py).
"""

from __future__ import annotations

from typing import Any

from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.core.records import OCR_TASKS, QA_TASKS, LayoutDoc, PdfDoc, QARecord, Reject, Segment
from longdocvqa.generate.base import Generator, PageImage, drop_duplicates
from longdocvqa.generate.ocr import ocr_document
from longdocvqa.generate.openai import OpenAIGenerator
from longdocvqa.generate.template import TemplateGenerator
from longdocvqa.llm import LLMClient


def make_generator(config: GenerateConfig) -> Generator:
    """The generator `config.generator.kind` names."""
    if config.generator.kind == "template":
        return TemplateGenerator(config)
    return OpenAIGenerator(config)


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
    judge: LLMClient | None = None,
) -> tuple[list[QARecord], list[Reject]]:
    """QA records and drops for one document: every (segment, task) of the recipe, then the OCR tasks.

    `page_image(i)` returns the image bytes of absolute page i (needed unless input_mode is `text`).
    With `generator.kind: template` no client is needed and nothing leaves the machine.
    """
    qa_tasks = [t for t in config.tasks if t in QA_TASKS]
    generator = make_generator(config)
    records, rejects = await generator.generate(
        doc, layout, segments, qa_tasks, seed, client, page_image, verifier, judge
    )
    ocr_records, ocr_rejects = ocr_document(layout, [t for t in config.tasks if t in OCR_TASKS], config, seed)
    kept, duplicates = drop_duplicates(records)
    return kept + ocr_records, rejects + duplicates + ocr_rejects


def open_clients(
    config: GenerateConfig, ledger_path: str | None, **client_options: Any
) -> tuple[LLMClient | None, LLMClient | None]:
    """(generator, verifier) clients for a recipe sharing one ledger; (None, None) for the template generator."""
    return make_generator(config).open_clients(ledger_path, **client_options)


def open_judge(config: GenerateConfig, client: LLMClient | None, **client_options: Any) -> LLMClient | None:
    """The rubric judge's own client, on the generator client's ledger; None when the judge is off or uses the
    generator's endpoint (then `client` judges)."""
    if client is None:
        return None
    return make_generator(config).open_judge(client.ledger, **client_options)
