"""Helpers for the evaluation tests: a benchmark folder in MMLongBench-Doc's layout made of real PDF pages, and
scripted repliers for the loopback server (right, wrong and "Not answerable" answers)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PDFS = Path(__file__).resolve().parent / "data" / "pdfs"
_QUESTION = re.compile(r"answer the following question\. (.*)\Z", re.DOTALL)

# Excerpts (first pages) of real bundled PDFs: small enough for short context lengths on a 2-core CPU.
EXCERPTS = {"R-data.pdf": 3, "latexbug.pdf": 2, "etoolbox.pdf": 3, "brief.pdf": 2, "mathtools.pdf": 3,
            "ulineno.pdf": 2, "seminar-doc.pdf": 3, "R-FAQ.pdf": 3}  # fmt: skip

# Questions in the benchmark's own record format (answer_format Str/Int/Float/List/None, evidence_pages as text).
QUESTIONS = [
    {
        "doc_id": "R-data.pdf",
        "question": "Which manual is this document?",
        "answer": "R Data Import/Export",
        "answer_format": "Str",
        "evidence_pages": "[1]",
        "doc_type": "Manual",
    },
    {
        "doc_id": "R-data.pdf",
        "question": "How many pages does this excerpt have?",
        "answer": "3",
        "answer_format": "Int",
        "evidence_pages": "[1, 2, 3]",
        "doc_type": "Manual",
    },
    {
        "doc_id": "latexbug.pdf",
        "question": "Which package does the document describe?",
        "answer": "latexbug",
        "answer_format": "Str",
        "evidence_pages": "[1]",
        "doc_type": "Package documentation",
    },
    {
        "doc_id": "latexbug.pdf",
        "question": "What share of the excerpt's pages is the title page?",
        "answer": "50%",
        "answer_format": "Float",
        "evidence_pages": "[1, 2]",
        "doc_type": "Package documentation",
    },
    {
        "doc_id": "etoolbox.pdf",
        "question": "Which two words make up the package name?",
        "answer": "['e', 'toolbox']",
        "answer_format": "List",
        "evidence_pages": "[1]",
        "doc_type": "Package documentation",
    },
    {
        "doc_id": "etoolbox.pdf",
        "question": "What is the price of the package in euros?",
        "answer": "Not answerable",
        "answer_format": "None",
        "evidence_pages": "[]",
        "doc_type": "Package documentation",
    },
]
WRONG = {"Str": "a completely unrelated reply", "Int": "41", "Float": "12.5", "List": "['x']",
         "None": "The price is 12 euros."}  # fmt: skip


def make_benchmark(
    folder: Path,
    extra_records: Sequence[Any] = (),
    excerpts: dict[str, int] = EXCERPTS,
    questions: Sequence[dict[str, Any]] = QUESTIONS,
) -> Path:
    """A benchmark folder: documents/ with page excerpts of real PDFs, and samples.json (plus `extra_records`)."""
    import pymupdf

    docs = folder / "documents"
    docs.mkdir(parents=True, exist_ok=True)
    for name, pages in excerpts.items():
        with pymupdf.open(PDFS / name) as source, pymupdf.open() as excerpt:
            excerpt.insert_pdf(source, from_page=0, to_page=pages - 1)
            excerpt.save(docs / name)
    (folder / "samples.json").write_text(json.dumps([*questions, *extra_records], indent=1))
    return folder


def asked_question(body: dict[str, Any]) -> str:
    """The question of an eval prompt (the text after "answer the following question.")."""
    content = body["messages"][-1]["content"]
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content if "text" in p)
    match = _QUESTION.search(text)
    return match.group(1).strip() if match else ""


def replier(answers: dict[str, str], template: str = "Answer: {}") -> Callable[[dict[str, Any]], str | None]:
    """A server responder answering each known question with `answers[question]`."""

    def respond(body: dict[str, Any]) -> str | None:
        question = asked_question(body)
        return template.format(answers[question]) if question in answers else None

    return respond


def gold_answers(records: list[dict[str, Any]] = QUESTIONS) -> dict[str, str]:
    return {r["question"]: r["answer"] for r in records}


def wrong_answers(records: list[dict[str, Any]] = QUESTIONS) -> dict[str, str]:
    return {r["question"]: WRONG[r["answer_format"]] for r in records}
