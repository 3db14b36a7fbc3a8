"""The generate stage's settings: the endpoint (one model, one or several servers), the generator, verification,
multi-page necessity and the rubric judge.

Does not own: the other stages' settings or loading a recipe (recipe.py), the bounds (settings.py).
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from longdocvqa.core.records import QA_TASKS, Task
from longdocvqa.core.settings import (
    CLIENT_OWNED_KEYS,
    MAX_COUNT,
    MAX_PAGES,
    MAX_PIXELS,
    MAX_SECONDS,
    MAX_SEED,
    MAX_TOKENS,
    Strict,
    finite,
)


class EndpointConfig(Strict):
    """An OpenAI-compatible endpoint. URL and key may come from environment variables.

    `base_url` may list several servers of the same model (requests spread by least outstanding requests, a
    failing one drained for `drain_cooldown_s`); `max_concurrency` is then per server.
    """

    base_url: str | list[str] | None = Field(None, description="base URL .../v1, or a list of them (same model)")
    base_url_env: str | None = Field(
        None, description="environment variable holding the base URL, or several separated by commas"
    )
    model: str = "Qwen/Qwen2.5-VL-72B-Instruct"
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    timeout_s: float = Field(120.0, gt=0, le=MAX_SECONDS)
    max_concurrency: int = Field(16, ge=1, le=MAX_COUNT)
    max_retries: int = Field(6, ge=0, le=1000, description="transient errors: timeouts, resets, 429, 5xx")
    response_mode: Literal["json_schema", "json_object", "text"] = "json_schema"
    max_tokens: int = Field(1024, ge=1, le=MAX_TOKENS)
    temperature: float = Field(0.0, ge=0, le=100)
    seed: int | None = Field(0, ge=-MAX_SEED, le=MAX_SEED)
    extra_body: dict[str, object] = Field(default_factory=dict)
    price_input_per_mtok: float | None = Field(None, ge=0, le=1e6)
    price_output_per_mtok: float | None = Field(None, ge=0, le=1e6)
    max_reply_mb: float = Field(
        4.0, gt=0, le=1024, description="a reply body larger than this is refused unread and counted as a failure"
    )
    drain_after_failures: int = Field(
        3,
        ge=1,
        le=MAX_COUNT,
        description="several base URLs: consecutive failed attempts (connection, timeout, 5xx) that drain one",
    )
    drain_cooldown_s: float = Field(
        30.0,
        gt=0,
        le=MAX_SECONDS,
        description="a drained server gets no requests for this long, then one probe (doubling to 16x)",
    )

    @field_validator("base_url")
    @classmethod
    def _base_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value or not all(u.strip() for u in value):
                raise ValueError("give at least one base URL, none of them empty")
            if len(set(value)) < len(value):
                raise ValueError("the same base URL is listed twice")
        return value

    @field_validator("extra_body")
    @classmethod
    def _extra_body(cls, value: dict[str, object]) -> dict[str, object]:
        owned = sorted(CLIENT_OWNED_KEYS & set(value))
        if owned:
            raise ValueError(f"{', '.join(owned)}: set by the client from the endpoint's own settings, not extra_body")
        if not finite(value):
            raise ValueError("NaN and infinite numbers are not allowed")
        return value

    def resolved_base_urls(self) -> list[str]:
        """Base URLs from the named environment variable (comma-separated), else from the recipe; [] when none."""
        if self.base_url_env and os.environ.get(self.base_url_env):
            return [u.strip() for u in os.environ[self.base_url_env].split(",") if u.strip()]
        if not self.base_url:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


class GeneratorConfig(Strict):
    """Who writes the QA: `template` (offline baseline from the layout) or `openai` (any compatible API)."""

    kind: Literal["template", "openai"] = "template"
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)


class VerifyConfig(Strict):
    """Optional answerability check by a second model that sees only the evidence pages."""

    enabled: bool = False
    endpoint: EndpointConfig | None = Field(None, description="the verifier's endpoint; none: the generator's")
    multi_page: Literal["off", "relabel", "drop"] = Field(
        "off",
        description="multi-page necessity (needs enabled): an extract-multi or reasoning QA the verifier answers from "
        "ONE of its evidence pages alone is relabelled (extract-multi -> extract-single; evidence that page) or "
        "dropped; at most one call per evidence page",
    )

    @model_validator(mode="after")
    def _needs_verifier(self) -> VerifyConfig:
        if self.multi_page != "off" and not self.enabled:
            raise ValueError("multi_page needs the verifier: set enabled: true")
        return self


_RUBRIC_NAME = r"^[a-z][a-z0-9_]{0,39}$"
DEFAULT_RUBRICS = {"grounded_correct": 0.35, "self_contained": 0.25, "needs_document": 0.2, "fits_task_format": 0.2}


class JudgeConfig(Strict):
    """Optional rubric judge: one call per QA scores named rubrics 1-5 from the evidence pages and the QA."""

    enabled: bool = False
    endpoint: EndpointConfig | None = Field(None, description="the judge's endpoint (another model family is best)")
    rubrics: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_RUBRICS),
        description="rubric name -> weight (weights > 0, normalised to sum 1); names of prompts/judge_qa_<version>.md "
        "or described in `descriptions`",
    )
    descriptions: dict[str, str] = Field(default_factory=dict, description="rubric name -> what a 5 means (added)")
    threshold: float = Field(4.0, ge=1, le=5, description="QA whose weighted score (1-5) is under this are dropped")
    prompt_version: str = "v1"

    @field_validator("rubrics")
    @classmethod
    def _rubrics(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name in value if not re.match(_RUBRIC_NAME, name)]
        if not value or bad or any(not weight > 0 for weight in value.values()):
            raise ValueError(f"give rubric names matching {_RUBRIC_NAME} with weights > 0 (bad: {bad or value})")
        return value

    def weights(self) -> dict[str, float]:
        """Rubric weights normalised to sum 1."""
        total = sum(self.rubrics.values())
        return {name: weight / total for name, weight in self.rubrics.items()}


class GenerateConfig(Strict):
    """QA generation settings."""

    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    tasks: list[Task] = Field(default_factory=lambda: list(QA_TASKS))
    questions_per_segment: int = Field(1, ge=1, le=1000)
    input_mode: Literal["images", "text", "images+text"] = "images"
    prompt_version: str = "v1"
    exemplars: str | None = Field(None, description="JSONL of in-context exemplars")
    num_exemplars: int = Field(2, ge=0, le=1000)
    max_pixels: int = Field(1280 * 28 * 28, ge=28 * 28, le=MAX_PIXELS, description="image size sent to the generator")
    max_invalid_retries: int = Field(
        2, ge=0, le=100, description="re-asks after invalid output, with the error appended"
    )
    temperature_schedule: list[float] = Field(default_factory=lambda: [0.0, 0.3, 0.7], max_length=100)
    ocr_needle_pages: tuple[int, int] = (1, 3)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    processes: int = Field(
        1,
        ge=1,
        le=1024,
        description="client processes for model calls: documents are split between them, each with its own event "
        "loop and an equal share of max_concurrency, one shared ledger; 2-4 help above ~100 requests/s",
    )

    @field_validator("ocr_needle_pages")
    @classmethod
    def _needle_bounds(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1 or value[0] > value[1] or value[1] > MAX_PAGES:
            raise ValueError(f"give [low, high] page counts with 1 <= low <= high, got {list(value)}")
        return value
