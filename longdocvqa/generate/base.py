"""The Generator interface every QA generator implements, and the record helpers they share.

Owns: `Generator` (what the build asks of the generator a recipe names: its QA for one document, its clients,
whether it calls a model or needs page images, how the card names it), `make_record` (a QARecord whose id is the
content hash of the rest), `drop_duplicates` and the JSON Schemas of the generator's QA and of a `qa` row.
Does not own: any generator (template.py, openai.py) or the choice between them (document.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.records import QA, LayoutDoc, PdfDoc, QARecord, Reject, Segment, Task
from longdocvqa.generate.checks import normalise

if TYPE_CHECKING:
    from longdocvqa.llm import Ledger, LLMClient

PageImage = Callable[[int], bytes]


class Generator(Protocol):
    """Who writes a recipe's QA (`generate.generator.kind`): the build asks it, never the kind, what to do."""

    @property
    def name(self) -> str:
        """How the dataset card names the generator."""
        ...

    @property
    def prompt_version(self) -> str:
        """The prompt version its records carry."""
        ...

    @property
    def makes_model_calls(self) -> bool:
        """Whether QA generation calls a model (and so has calls to plan, pay for and fail)."""
        ...

    @property
    def needs_images(self) -> bool:
        """Whether `generate` reads page images (rendered into the page cache beforehand)."""
        ...

    @property
    def verifier_model(self) -> str | None:
        """The model that verifies answerability; None when nothing is verified."""
        ...

    @property
    def judge_model(self) -> str | None:
        """The model of the rubric judge; None when no judge runs."""
        ...

    def open_judge(self, ledger: Ledger | None, **client_options: Any) -> LLMClient | None:
        """The rubric judge's own client on the generator's `ledger`; None when off or on the generator's endpoint."""
        ...

    def check_prompts(self) -> None:
        """Load the prompt files and exemplars it will use, so a wrong name stops the build first (RecipeError)."""
        ...

    def open_clients(
        self, ledger_path: str | None, **client_options: Any
    ) -> tuple[LLMClient | None, LLMClient | None]:
        """(generator, verifier) clients sharing one ledger; None where no model is called."""
        ...

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
        """QA records and drops for the QA `tasks` of every segment of one document (`judge`: the rubric judge's
        own client, when it has its own endpoint)."""
        ...


def qa_json_schema() -> dict[str, Any]:
    """JSON Schema of the generator's QA object (the `response_format` schema)."""
    return QA.model_json_schema()


def qa_record_json_schema() -> dict[str, Any]:
    """JSON Schema of one `qa` row (QARecord)."""
    return QARecord.model_json_schema()


def make_record(
    qa: QA,
    *,
    task: Task,
    segment: Segment,
    generator: str,
    prompt_version: str,
    evidence_description: str = "",
    call_id: str = "",
    verification: str = "",
    judge: tuple[float, dict[str, int]] | None = None,
) -> QARecord:
    """A QARecord whose id is the content hash of everything else in it (the judge's scores only when it ran, so
    records without a judge keep the ids they had before judging existed)."""
    fields: dict[str, Any] = {
        "task": task,
        "doc_sha256": segment.doc_sha256,
        "segment_id": segment.id,
        "segment_start": segment.start_page,
        "segment_end": segment.end_page,
        "segment_sections": list(segment.sections),
        **qa.model_dump(),
        "evidence_description": evidence_description,
        "generator": generator,
        "prompt_version": prompt_version,
        "call_id": call_id,
        "verification": verification or "not_run",
    }
    if judge is not None:
        fields["judge_score"], fields["judge_rubrics"] = judge[0], dict(judge[1])
    return QARecord(id=content_hash(fields, length=32), **fields)


def verification_label(evidence_text: str, answerability: str) -> str:
    return f"evidence_text={evidence_text};answerability={answerability}"


def item_id(segment: Segment, task: str, k: int) -> str:
    return f"{segment.doc_sha256[:16]}/{segment.id}/{task}/{k}"


def drop_duplicates(records: list[QARecord]) -> tuple[list[QARecord], list[Reject]]:
    """Keep the first record of each normalised question per document (input order is deterministic)."""
    seen: dict[tuple[str, str], str] = {}
    kept, rejects = [], []
    for record in records:
        key = (record.doc_sha256, normalise(record.question))
        if key in seen:
            detail = f"same question as {seen[key]}: {record.question[:120]!r}"
            rejects.append(Reject(stage="generate", item=record.id, reason="duplicate_question", detail=detail))
        else:
            seen[key] = record.id
            kept.append(record)
    return kept, rejects
