"""QA generation: the MMProLong tasks (docs/research/paper.md §3.2) written by the generator a recipe names,
plus OCR targets.

Modules: `base` (the `Generator` interface, record helpers), `document` (`make_generator`; one document's QA:
generator, OCR targets, duplicates dropped), `template` (the offline baseline from the layout), `openai` (any
OpenAI-compatible endpoint), `prompts` (versioned prompt files, exemplars, the generation messages), `checks`
(semantic checks after the schema), `verify` (answerability by a second call), `ocr` (OCR-full/needle targets and
the VLM OCR backend).
Does not own: HTTP, retries or the ledger (llm/), rendering (documents/render.py), storage (core/store.py).
"""

from longdocvqa.generate.base import (
    Generator,
    PageImage,
    drop_duplicates,
    make_record,
    qa_json_schema,
    qa_record_json_schema,
)
from longdocvqa.generate.checks import check_generated, normalise
from longdocvqa.generate.document import generate_document, make_generator, open_clients
from longdocvqa.generate.ocr import ocr_document, transcribe_page
from longdocvqa.generate.openai import OpenAIGenerator
from longdocvqa.generate.prompts import load_exemplars, load_prompt, prompt_messages, task_strings
from longdocvqa.generate.template import TEMPLATE_GENERATOR, TEMPLATE_PROMPT_VERSION, TemplateGenerator
from longdocvqa.generate.verify import verify_qa

__all__ = [
    "TEMPLATE_GENERATOR",
    "TEMPLATE_PROMPT_VERSION",
    "Generator",
    "OpenAIGenerator",
    "PageImage",
    "TemplateGenerator",
    "check_generated",
    "drop_duplicates",
    "generate_document",
    "load_exemplars",
    "load_prompt",
    "make_generator",
    "make_record",
    "normalise",
    "ocr_document",
    "open_clients",
    "prompt_messages",
    "qa_json_schema",
    "qa_record_json_schema",
    "task_strings",
    "transcribe_page",
    "verify_qa",
]
