"""The recipe: one YAML file describes one dataset version, every stage's settings included.

Models are strict (`extra="forbid"`): an unknown key is an error naming its dotted path. Relative
paths are resolved against the recipe file's folder, so a recipe works from any working directory.
Secrets never appear here: only the *names* of environment variables that hold them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe_generate import (
    GenerateConfig,
)
from longdocvqa.core.recipe_yaml import read_recipe_yaml
from longdocvqa.core.records import Task
from longdocvqa.core.settings import (
    MAX_COUNT,
    MAX_MEMORY_MB,
    MAX_NUM_PERM,
    MAX_PAGES,
    MAX_PIXELS,
    MAX_SECONDS,
    MAX_SEED,
    MAX_TOKENS,
    Strict,
)

_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")


class PoolConfig(Strict):
    """Which PDFs enter the pool."""

    paths: list[str] = Field(
        description="files, folders, globs, .txt files listing paths (one per line), tar shards (*.tar: each *.pdf "
        "member is a document, recorded as SHARD.tar/MEMBER) and fsspec URLs (s3://, gs://, hf://datasets/...)"
    )
    min_pages: int = Field(32, ge=1, le=MAX_PAGES)
    max_pages: int = Field(50, ge=1, le=MAX_PAGES)
    max_file_mb: float = Field(200.0, gt=0, le=MAX_MEMORY_MB)
    min_page_side_pt: float = Field(72.0, gt=0, le=1e6, description="pages smaller than 1 inch are rejected as absurd")
    max_page_side_pt: float = Field(14400.0, gt=0, le=1e6, description="PDF's own limit: 200 inches")
    licences: str | None = Field(None, description="optional TSV file: path-or-filename<TAB>licence<TAB>source")
    max_reject_rate: float = Field(0.5, ge=0, le=1, description="stop the build when more of the pool is rejected")
    allow_licences: list[str] | None = Field(
        None,
        description="keep only documents whose licence (from `licences`) is one of these, case-insensitive; "
        "'unknown' matches documents without one; others are rejected with reason licence_not_allowed",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PoolConfig:
        if self.min_pages > self.max_pages:
            raise ValueError(f"min_pages ({self.min_pages}) must be <= max_pages ({self.max_pages})")
        return self


class RenderConfig(Strict):
    """How pages become images (PyMuPDF raster, Pillow encoder)."""

    dpi: int = Field(144, ge=36, le=600)
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: int = Field(90, ge=1, le=100)
    max_pixels: int = Field(
        12845056,
        ge=28 * 28,
        le=MAX_PIXELS,
        description="pixel cap per page image: a larger page renders at the lower DPI that fits (default: "
        "Qwen2.5-VL's max_pixels, 16384*28*28, so no page is rasterised above what the model would see)",
    )


class IsolationConfig(Strict):
    """Per-document bounds: every MuPDF read of a document (pool, layout, decontaminate, page rendering for generate
    and publish) runs in its own worker process; the time bound also caps one document's generation (a document over
    it is rejected `timeout`, retried next run)."""

    seconds_per_document: float = Field(
        600.0,
        ge=0,
        le=MAX_SECONDS,
        description="wall time per document in each MuPDF read and in generate; 0: unbounded",
    )
    memory_mb_per_document: int = Field(
        4096, ge=0, le=MAX_MEMORY_MB, description="address space a document's worker may add (RLIMIT_AS); 0: unbounded"
    )


class LayoutConfig(Strict):
    """How pages become labelled blocks."""

    backend: Literal["heuristic", "pymupdf-layout"] = "heuristic"
    find_tables: bool = Field(True, description="run PyMuPDF's table finder on pages with ruled grids")
    image_only_max_chars: int = Field(
        20, ge=0, le=MAX_COUNT, description="a page with fewer text characters counts as scanned"
    )
    ocr: Literal["none", "vlm"] = Field("none", description="transcribe image-only pages with the generator's VLM")


class SegmentConfig(Strict):
    """Section-aligned page spans given to the generator."""

    min_pages: int = Field(8, ge=1, le=MAX_PAGES)
    max_pages: int = Field(15, ge=1, le=MAX_PAGES)
    per_document: int = Field(1, ge=1, le=MAX_COUNT)

    @model_validator(mode="after")
    def _ordered(self) -> SegmentConfig:
        if self.min_pages > self.max_pages:
            raise ValueError(f"min_pages ({self.min_pages}) must be <= max_pages ({self.max_pages})")
        return self


class BenchmarkSource(Strict):
    """One evaluation benchmark to decontaminate against."""

    name: str
    kind: Literal["pdfs", "hub", "jsonl"]
    path: str | None = Field(None, description="folder/glob of PDFs, JSONL file, or local dataset folder")
    repo: str | None = Field(None, description="Hub dataset id (kind: hub)")
    config: str | None = None
    split: str = "test"
    revision: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    doc_id_column: str | None = None
    question_column: str | None = None
    answer_column: str | None = None


class DecontaminateConfig(Strict):
    """Benchmark decontamination and within-pool near-duplicate removal."""

    benchmarks: list[BenchmarkSource] = Field(default_factory=list)
    num_perm: int = Field(128, ge=16, le=MAX_NUM_PERM)
    shingle_words: int = Field(5, ge=1, le=1000)
    threshold: float = Field(0.7, gt=0, le=1)
    window_pages: int = Field(
        10, ge=1, le=MAX_PAGES, description="also compare every window of this many consecutive pages"
    )
    question_ngram: int = Field(13, ge=3, le=1000)
    within_pool: bool = True
    backend: Literal["numpy", "datasketch", "rensa"] = "numpy"


class ShortDataConfig(Strict):
    """A second source of short instruction data in TRL format, mixed at a token share."""

    path: str | None = None
    repo: str | None = None
    config: str | None = None
    split: str = "train"
    share: float = Field(0.0, ge=0, le=0.95)


class AssembleConfig(Strict):
    """Full-document examples, lengths, distribution, mixture and budget."""

    tokenizer: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    min_pixels: int = Field(3136, ge=1, le=MAX_PIXELS)
    max_pixels: int = Field(12845056, ge=1, le=MAX_PIXELS)
    min_tokens: int = Field(32768, ge=1, le=MAX_TOKENS)
    max_tokens: int = Field(131072, ge=1, le=MAX_TOKENS)
    distribution: Literal["pool-native", "long-biased", "target"] = "pool-native"
    target: dict[str, float] | None = Field(
        None,
        description="distribution: target: token bins {'lo-hi': share}, shares sum to 1; lo <= length < hi, the "
        "last bin also holds hi; K = 1024",
    )
    long_bias: float = Field(
        4.0,
        gt=0,
        le=1000,
        description="long-biased: weight exp(long_bias * x), x = position of the length in the window, 0..1",
    )
    mixture: dict[Task, float] = Field(
        default_factory=lambda: dict[Task, float]({"extract-single": 0.4, "extract-multi": 0.4, "reasoning": 0.2}),
        description="share of each task (by mixture_unit); shares sum to 1",
    )
    mixture_unit: Literal["tokens", "examples"] = "tokens"
    budget_tokens: int | None = Field(None, ge=1, le=10**15, description="total token budget; none keeps everything")
    on_shortfall: Literal["stop", "rescale"] = "rescale"
    short_data: ShortDataConfig = Field(default_factory=ShortDataConfig)
    page_labels: bool = True
    question_position: Literal["after", "before"] = "after"
    answer_instruction: bool = False
    list_format: Literal["json", "comma"] = "json"
    system_prompt: str | None = None

    @model_validator(mode="after")
    def _window(self) -> AssembleConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        if any(share < 0 for share in self.mixture.values()) or abs(sum(self.mixture.values()) - 1) > 1e-6:
            raise ValueError(f"mixture shares must be >= 0 and sum to 1, got {self.mixture}")
        if self.distribution == "target" and not self.target:
            raise ValueError("distribution: target needs a `target` histogram, e.g. {'32K-64K': 0.5, '64K-128K': 0.5}")
        self.target_bins()
        return self

    def target_bins(self) -> list[tuple[int, int, float]]:
        """The `target` histogram as sorted (lo, hi, share) token bins; raises ValueError when malformed."""
        bins = []
        for key, share in (self.target or {}).items():
            match = re.fullmatch(r"\s*(\d+)([kK]?)\s*-\s*(\d+)([kK]?)\s*", key)
            if not match or share < 0:
                raise ValueError(f"target bin {key!r}: write 'lo-hi' in tokens (e.g. '32768-65536' or '32K-64K')")
            lo, hi = (int(match[i]) * (1024 if match[i + 1] else 1) for i in (1, 3))
            if lo >= hi:
                raise ValueError(f"target bin {key!r}: lo must be < hi")
            bins.append((lo, hi, share))
        bins.sort()
        if any(a[1] > b[0] for a, b in zip(bins, bins[1:], strict=False)):
            raise ValueError(f"target bins overlap: {sorted(self.target or {})}")
        if bins and abs(sum(b[2] for b in bins) - 1) > 1e-6:
            raise ValueError(f"target shares must sum to 1, got {sum(b[2] for b in bins)}")
        return bins


class PlanConfig(Strict):
    """What the plan stage draws before any layout, rendering or model call (stages/plan.py)."""

    overdraw: float = Field(
        0.1, ge=0, le=10, description="extra share of the budget planned for QA that generation or checks drop"
    )
    max_rounds: int = Field(
        20,
        ge=0,
        le=1000,
        description="at most this many top-up rounds (more documents drawn when drops exceed the margin)",
    )


class PublishConfig(Strict):
    """The Hub-ready dataset folder."""

    test_share: float = Field(0.0, ge=0, lt=1, description="share of documents held out as the test split")
    max_shard_mb: int = Field(500, ge=1, le=MAX_MEMORY_MB)
    rows_per_group: int = Field(
        4, ge=1, le=MAX_COUNT, description="rows per Parquet row group, at most (see max_row_group_mb)"
    )
    max_row_group_mb: int = Field(
        100,
        ge=1,
        le=100_000,
        description="bytes per row group, at most (the Hub viewer reads row groups up to 100 MB)",
    )
    include_pdf: bool = Field(
        True,
        description="embed each source PDF in the `documents` config (a `datasets.Pdf` column); false for pools whose "
        "licences allow redistributing page images but not the files",
    )
    licence: str = "other"
    licence_name: str | None = Field(
        None, description="card `license_name` when licence is `other`; default: the source licences, joined"
    )
    licence_link: str | None = Field(
        None, description="card `license_link` when licence is `other`; default: the LICENSE.md written beside it"
    )
    repo: str | None = None
    pretty_name: str | None = None

    @field_validator("licence_link")
    @classmethod
    def _safe_link(cls, value: str | None) -> str | None:
        """The card links to it: an http(s) URL or a file in the dataset, never `javascript:` or `data:`."""
        scheme = re.match(r"^\s*([A-Za-z][A-Za-z0-9+.-]*):", value or "")
        if scheme and scheme[1].lower() not in ("http", "https"):
            raise ValueError(f"give an http(s) URL or a file in the dataset, not a {scheme[1]}: link")
        if value and re.search(r"[\x00-\x20<>\"`]", value):
            raise ValueError("a link has no spaces, quotes, angle brackets or control characters")
        return value


class Recipe(Strict):
    """One dataset version."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str
    seed: int = Field(0, ge=0, le=MAX_SEED)
    description: str = ""
    pool: PoolConfig
    render: RenderConfig = Field(default_factory=RenderConfig)
    layout: LayoutConfig = Field(default_factory=LayoutConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    assemble: AssembleConfig = Field(default_factory=AssembleConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    isolation: IsolationConfig = Field(default_factory=IsolationConfig)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError(f"version must be semantic (MAJOR.MINOR.PATCH), got {value!r}")
        return value

    def fingerprint(self) -> str:
        """Content hash of the resolved recipe."""
        return content_hash(self, length=16)

    def to_yaml(self) -> str:
        """The resolved recipe as YAML (the run directory's recipe.lock.yaml)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def check_limit(limit: int | None) -> None:
    """`build --limit N`: a positive document count (a negative one would cut documents off the end of the pool)."""
    if limit is not None and not 1 <= limit <= MAX_COUNT * 1000:
        raise RecipeError(f"--limit: {limit} is not a document count between 1 and {MAX_COUNT * 1000:,}")


def load_recipe(path: str | Path) -> Recipe:
    """Read, validate and resolve a recipe file; errors name the file and each bad key's dotted path."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    data = read_recipe_yaml(path)
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
    recipe = parse_recipe(data, source=str(path))
    return resolve_paths(recipe, path.resolve().parent)


def parse_recipe(data: dict, source: str = "<recipe>") -> Recipe:
    """Validate a recipe mapping; raise RecipeError with one line per problem."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{source}: invalid recipe\n" + "\n".join(format_errors(exc))) from None


def format_errors(exc: ValidationError) -> list[str]:
    """One bullet per error: `- pool.max_pages: message`."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"- {where}: {message}")
    return lines


def resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Make the recipe's relative paths absolute against `base` (the recipe's folder)."""

    def absolute(p: str | None) -> str | None:
        if p is None or "://" in p or os.path.isabs(p):
            return p
        return str((base / p).resolve()) if not any(c in p for c in "*?[") else str(base / p)

    recipe.pool.paths = [absolute(p) or p for p in recipe.pool.paths]
    recipe.pool.licences = absolute(recipe.pool.licences)
    recipe.generate.exemplars = absolute(recipe.generate.exemplars)
    recipe.assemble.short_data.path = absolute(recipe.assemble.short_data.path)
    for bench in recipe.decontaminate.benchmarks:
        bench.path = absolute(bench.path)
    return recipe
