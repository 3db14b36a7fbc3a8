"""What the card reports about a published dataset, accumulated while publish.py streams the rows past.

`PublishStats` keeps a few ints per example (counts and token totals per config, split and task, licences, a
bounded list of documents and of candidate example rows); card.py turns it into the card, validate.py recounts the
same numbers from the rows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longdocvqa.core.contract import passed_checks, source_of
from longdocvqa.core.records import PdfDoc
from longdocvqa.core.safetext import clean

_CARD_SAMPLES_PER_TASK = 2
_CARD_CANDIDATES_PER_TASK = 64  # kept while qa rows stream past; the card shows those an `sft` example uses


@dataclass
class PublishStats:
    """What the card reports, accumulated while the rows stream past (a few ints per example)."""

    rows: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    task_counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    task_tokens: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    num_tokens: list[int] = field(default_factory=list)
    num_pages: list[int] = field(default_factory=list)
    licences: Counter[str] = field(default_factory=Counter)
    documents: list[dict[str, Any]] = field(default_factory=list)
    prompt_versions: Counter[str] = field(default_factory=Counter)
    generators: Counter[str] = field(default_factory=Counter)
    candidates: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    used_qa: set[str] = field(default_factory=set)
    licence_rows: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    shards: dict[str, dict[str, list[Path]]] = field(default_factory=dict)
    num_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    doc_paths: dict[str, str] = field(default_factory=dict)  # sha256 -> source path (example pictures; never shown)
    max_card_documents: int = 100

    @property
    def samples(self) -> dict[str, list[dict[str, Any]]]:
        """Card examples: per task, the first qa rows that passed every check and made it into an `sft` example."""
        return {
            task: [r for r in rows if r["id"] in self.used_qa][:_CARD_SAMPLES_PER_TASK]
            for task, rows in self.candidates.items()
        }

    def used_candidates(self, task: str) -> list[dict[str, Any]]:
        """The task's candidate qa rows (passed every check) that an `sft` example uses, in row order."""
        return [r for r in self.candidates.get(task, []) if r["id"] in self.used_qa]

    def add_document(self, doc: PdfDoc, split: str) -> None:
        self.rows["documents"][split] += 1
        self.licences[doc.licence or "unknown"] += 1
        self.doc_paths[doc.sha256] = str(doc.path)
        if len(self.documents) < self.max_card_documents:
            self.documents.append(
                {
                    "file_name": clean(Path(doc.path).name),
                    "num_pages": doc.num_pages,
                    "licence": clean(doc.licence),
                    "source": clean(source_of(doc)),
                    "split": split,
                }
            )

    def add_qa(self, row: Mapping[str, Any], split: str) -> None:
        self.rows["qa"][split] += 1
        self.prompt_versions[row["prompt_version"]] += 1
        self.generators[row["generator"]] += 1
        self.licence_rows["qa"][row.get("licence") or "unknown"] += 1
        if len(self.candidates[row["task"]]) < _CARD_CANDIDATES_PER_TASK and passed_checks(row):
            keys = ("id", "task", "doc_sha256", "question", "answer", "answer_list", "answer_format", "evidence_pages",
                    "verification")  # fmt: skip
            self.candidates[row["task"]].append({k: row[k] for k in keys})

    def add_example(self, row: Mapping[str, Any], split: str) -> None:
        self.rows["sft"][split] += 1
        self.licence_rows["sft"][row.get("licence") or "unknown"] += 1
        if row.get("qa_id"):
            self.used_qa.add(row["qa_id"])
        self.task_counts[split][row["task"]] += 1
        self.task_tokens[split][row["task"]] += row["num_tokens"]
        self.num_tokens.append(row["num_tokens"])
        self.num_pages.append(row["num_pages"])
