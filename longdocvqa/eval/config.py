"""An evaluation's settings (`EvalConfig`) and its per-(question, length) record (`Prediction`).

The types run.py produces and report.py writes, in a module of their own so that neither imports the other.
Does not own: running (run.py), writing the outputs (report.py), scoring rules (score.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from longdocvqa.assembly.tokens import HUB_MAX_PIXELS, HUB_MIN_PIXELS
from longdocvqa.core.recipe_generate import EndpointConfig
from longdocvqa.core.settings import MAX_SEED, MAX_TOKENS
from longdocvqa.eval.data import EvalQuestion
from longdocvqa.eval.prompt import PromptPlan
from longdocvqa.eval.score import evidence_position

DEFAULT_LENGTHS = (32768, 65536, 131072)


class EvalConfig(BaseModel):
    """Everything an evaluation depends on; the same config and ledger give the same predictions and scores."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="built dataset folder, run directory or Hub repo; or a benchmark folder")
    split: str = "test"
    revision: str | None = None
    out: Path
    endpoint: EndpointConfig
    judge: EndpointConfig | None = None
    lengths: list[int] = Field(default_factory=lambda: list(DEFAULT_LENGTHS), max_length=64)
    input_mode: Literal["images", "text"] = "images"
    dpi: int = Field(144, ge=36, le=600, description="rendering of benchmark PDFs (datasets keep the build's pages)")
    pdf_dir: Path | None = Field(None, description="the dataset's PDFs, for text input")
    tokenizer: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    min_pixels: int = HUB_MIN_PIXELS
    max_pixels: int = HUB_MAX_PIXELS
    limit: int | None = Field(None, ge=1, description="evaluate the first N questions only")
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @field_validator("lengths")
    @classmethod
    def _positive(cls, lengths: list[int]) -> list[int]:
        if not lengths or any(not 1 <= length <= MAX_TOKENS for length in lengths):
            raise ValueError(f"lengths must be token counts from 1 to {MAX_TOKENS:,}, e.g. 32768,65536")
        return sorted(set(lengths))


@dataclass
class Prediction:
    """One (question, length): the plan, the model's reply, the extracted answer and the score."""

    question: EvalQuestion
    plan: PromptPlan
    raw_answer: str = ""
    extracted: str | list[str] = ""
    score: float | None = None
    error: str = ""
    call_id: str = ""

    def row(self) -> dict[str, Any]:
        """The predictions.jsonl line."""
        q, plan = self.question, self.plan
        return {
            "question_id": q.id, "doc_id": q.doc_id, "task": q.task, "answer_format": q.answer_format,
            "evidence_position": evidence_position(q.answer, q.evidence_pages), "evidence_pages": q.evidence_pages,
            "length": plan.target_tokens, "prompt_tokens": plan.prompt_tokens, "num_pages": plan.num_pages,
            "documents": len(plan.blocks), "depth": plan.depth, "padding_exhausted": plan.padding_exhausted,
            "question": q.question, "answer": q.answer, "raw_answer": self.raw_answer, "extracted": self.extracted,
            "score": self.score, "skipped": plan.skipped, "error": self.error, "call_id": self.call_id,
        }  # fmt: skip
