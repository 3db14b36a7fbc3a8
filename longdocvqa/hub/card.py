"""The dataset card: README.md of the published folder (YAML header + Markdown body), LICENSE.md, and its pictures.

This module writes the files and the body's prose. The YAML header, what tools read, is card_header.py's.
The body is for people: what the dataset is, how it was built, counts, drops, decontamination, lengths, examples,
sources and licences, how to load and train. Rows are the truth; this module only describes them.
Does not own: the header (card_header.py), the tables (card_tables.py), the charts (charts.py), the example
pictures (card_examples.py).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from longdocvqa.core.contract import CARD_KEY
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.safetext import md_text
from longdocvqa.hub.card_examples import PageImage, examples_section, write_example_pictures
from longdocvqa.hub.card_header import LICENCE_FILE, card_header
from longdocvqa.hub.card_tables import (
    contents_table,
    decontamination_section,
    document_table,
    licence_table,
    qa_examples_table,
    sources_section,
    table,
)
from longdocvqa.hub.charts import LENGTH_PNG, PAGES_PNG, write_card_charts
from longdocvqa.hub.redact import public_recipe_yaml
from longdocvqa.hub.stats import PublishStats


class BuildReport(BaseModel):
    """What the build knows that the rows do not; the lead's pipeline fills it from the manifest."""

    model_config = ConfigDict(extra="forbid")

    drops_by_reason: dict[str, int] = Field(default_factory=dict, description="'stage/reason' -> count")
    decontamination: dict[str, Any] = Field(default_factory=dict, description="benchmark -> matches/removed ...")
    length_histogram_png: Path | None = None
    pages_histogram_png: Path | None = None
    generator: str | None = Field(default=None, description="generator model; defaults to the recipe's")
    notes: str = ""
    generator_kind: str | None = Field(default=None, description="'template' or 'openai'; defaults to the recipe's")
    prompt_version: str | None = Field(default=None, description="prompt version; defaults to the recipe's")
    verifier: str | None = Field(default=None, description="verifier model when verification ran, else None")
    benchmarks: list[str] | None = Field(default=None, description="benchmarks decontaminated against (names)")
    within_pool: bool | None = Field(default=None, description="near-duplicates removed inside the pool")
    audit: dict[str, Any] | None = Field(default=None, description="the hand audit's summary (audit/report.py)")


@dataclass
class CardPictures:
    """What the card's pictures came to: a line when there are no charts, example pictures per task, notes."""

    charts_note: str | None = None
    examples: dict[str, str] = field(default_factory=dict)
    example_notes: list[str] = field(default_factory=list)


def write_card(
    folder: Path,
    recipe: Recipe,
    stats: PublishStats,
    build: BuildReport | None = None,
    page_image: PageImage | None = None,
) -> Path:
    """Write README.md, LICENSE.md, the charts and (with `page_image(doc_sha256, page)`, the page cache) one example
    picture per task into the dataset folder; returns the README path."""
    build = build or BuildReport()
    given = {"length": build.length_histogram_png, "pages": build.pages_histogram_png}
    pictures = CardPictures(write_card_charts(folder, recipe, stats, given))
    pictures.examples, pictures.example_notes = write_example_pictures(folder, recipe, stats, page_image)
    write_licence_file(folder, recipe, stats)
    header = card_header(folder, recipe, stats)
    text = (
        "---\n"
        + yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
        + "---\n\n"
        + card_body(recipe, stats, build, pictures)
    )
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def split_card(text: str) -> tuple[dict[str, Any], str]:
    """(YAML header, body) of a README; raises ValueError when the header is missing or not a mapping."""
    if not text.startswith("---\n"):
        raise ValueError("README.md does not start with a YAML header ('---')")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ValueError("README.md YAML header is not closed by '---'")
    header = yaml.safe_load(text[4:end])
    if not isinstance(header, dict):
        raise ValueError("README.md YAML header is not a mapping")
    return header, text[end + 5 :]


def write_licence_file(folder: Path, recipe: Recipe, stats: PublishStats) -> Path:
    """LICENSE.md: the licence of every source document (rows carry theirs in `licence` / `source`)."""
    lines = [
        f"# Licences of {recipe.publish.pretty_name or recipe.name} {recipe.version}",
        "",
        "Each row inherits the licence of the source document it is made from; `sft`, `qa` and `documents` rows "
        "carry it in their `licence` and `source` columns, so a subset can be selected by licence.",
        "",
        licence_table(stats),
        "",
        document_table(stats),
        "",
    ]
    path = folder / LICENCE_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ---- body -----------------------------------------------------------------------------------------------------


def card_body(recipe: Recipe, stats: PublishStats, build: BuildReport, pictures: CardPictures | None = None) -> str:
    """The Markdown body."""
    pictures = pictures or CardPictures()
    sections = [
        _intro(recipe, stats, build),
        _usage(recipe),
        contents_table(recipe, stats),
        _lengths(stats, pictures.charts_note),
        _provenance(recipe, stats, build),
        examples_section(pictures.examples, pictures.example_notes),
        qa_examples_table(stats),
        sources_section(stats),
        _fields(recipe),
    ]
    return "\n\n".join(s.strip() for s in sections) + "\n"


def _intro(recipe: Recipe, stats: PublishStats, build: BuildReport) -> str:
    name = recipe.publish.pretty_name or recipe.name
    pages = stats.num_pages
    span = f"{min(pages)}-{max(pages)} pages" if pages else "no examples"
    return f"""
# {md_text(name)} {recipe.version}

{_baseline_warning(recipe, build)}Long-document visual question answering for long-context continued pre-training of
vision-language models (the MMProLong recipe). Each `sft` example is a whole PDF document given as page images
({span}) followed by a question whose answer needs one or more of its pages; the assistant turn is the answer.
{md_text(recipe.description)}

Built with longdocvqa from recipe `{recipe.name}` version `{recipe.version}` (fingerprint `{recipe.fingerprint()}`):
PDFs were hashed and filtered{_decontaminated_clause(recipe, build)}, rendered at {recipe.render.dpi} DPI, parsed
into labelled blocks, cut into section-aligned segments of {recipe.segment.min_pages}-{recipe.segment.max_pages}
pages, given to {_generator_clause(recipe, build)} that wrote question-answer pairs with evidence pages, checked by
rules (evidence pages inside the segment, answer format, an anchor in the question, extracted answers found on an
evidence page){_verified_clause(recipe, build)}, and assembled into full-document examples with exact Qwen2.5-VL
token lengths.
"""


def is_template(recipe: Recipe, build: BuildReport) -> bool:
    """Whether the QA came from the offline template baseline."""
    return (build.generator_kind or recipe.generate.generator.kind) == "template"


def _baseline_warning(recipe: Recipe, build: BuildReport) -> str:
    if not is_template(recipe, build):
        return ""
    return (
        "**Not training data.** The questions and answers of this build come from the offline template baseline "
        "(fill-in questions made from the layout, no model): they exist to demonstrate and test the pipeline. "
        "Build with a strong VLM as `generate.generator` for training data.\n\n"
    )


def _benchmarks(recipe: Recipe, build: BuildReport) -> list[str]:
    if build.benchmarks is not None:
        return list(build.benchmarks)
    return [b.name for b in recipe.decontaminate.benchmarks]


def _decontaminated_clause(recipe: Recipe, build: BuildReport) -> str:
    names = _benchmarks(recipe, build)
    within = recipe.decontaminate.within_pool if build.within_pool is None else build.within_pool
    dedup = ", near-duplicates inside the pool removed" if within else ""
    if not names:
        return f"{dedup}, **not** decontaminated against any benchmark (none was configured)"
    return f"{dedup}, decontaminated against {', '.join(f'`{n}`' for n in names)}"


def _within_pool(recipe: Recipe, build: BuildReport) -> bool:
    return recipe.decontaminate.within_pool if build.within_pool is None else build.within_pool


def _decontamination(recipe: Recipe, build: BuildReport) -> str:
    return decontamination_section(_benchmarks(recipe, build), _within_pool(recipe, build), build.decontamination)


def _generator_clause(recipe: Recipe, build: BuildReport) -> str:
    if is_template(recipe, build):
        return "the offline template baseline (no model)"
    return f"the generator `{build.generator or _generator(recipe)}`"


def _verified_clause(recipe: Recipe, build: BuildReport) -> str:
    verifier = _verifier(recipe, build)
    return f", verified as answerable by `{verifier}`" if verifier else "; no answerability verification was run"


def _verifier(recipe: Recipe, build: BuildReport) -> str | None:
    if build.verifier is not None:
        return build.verifier
    verify = recipe.generate.verify
    if not verify.enabled:
        return None
    return (verify.endpoint or recipe.generate.generator.endpoint).model


def _usage(recipe: Recipe) -> str:
    repo = recipe.publish.repo or "ORG/NAME"
    tag = f"v{recipe.version}"
    a = recipe.assemble
    return f"""
## How to load

```python
from datasets import load_dataset

sft = load_dataset("{repo}", "sft", revision="{tag}")              # images + messages (TRL format)
qa = load_dataset("{repo}", "qa", revision="{tag}")                # one row per QA, full provenance
documents = load_dataset("{repo}", "documents", revision="{tag}")  # one row per source document
stream = load_dataset("{repo}", "sft", revision="{tag}", streaming=True)
```

## How to train

The `sft` config is TRL's conversational vision format: `SFTTrainer` consumes it without conversion. The
longdocvqa repository's `train/` folder holds the script (`train/sft.py`, TRL's SFT script plus long-context
settings) and its configs:

```bash
accelerate launch --config_file train/configs/accelerate-fsdp2-8gpu.yaml train/sft.py \\
    --config train/configs/qwen2.5-vl-7b-128k-fsdp2.yaml \\
    --dataset_name {repo} --dataset_revision {tag} --min_pixels {a.min_pixels} --max_pixels {a.max_pixels}
```

Build the Qwen2.5-VL processor with `min_pixels={a.min_pixels}` and `max_pixels={a.max_pixels}` (recorded in this
card's `{CARD_KEY}` header) so that token lengths match `num_tokens`, and keep `max_length` at or above
{a.max_tokens} (examples are never truncated).
"""


def _lengths(stats: PublishStats, charts_note: str | None = None) -> str:
    tokens, pages = stats.num_tokens, stats.num_pages
    if not tokens:
        return "## Lengths\n\nNo examples."
    charts = f"![Tokens per example]({LENGTH_PNG})\n\n![Pages per example]({PAGES_PNG})"
    return f"""
## Lengths

Total: **{sum(tokens):,} tokens** in {len(tokens):,} examples. Tokens per example: min {min(tokens):,}, median
{int(statistics.median(tokens)):,}, max {max(tokens):,}. Pages per example: min {min(pages)}, median
{int(statistics.median(pages))}, max {max(pages)}.

{f"{charts_note}." if charts_note else charts}
"""


def _provenance(recipe: Recipe, stats: PublishStats, build: BuildReport) -> str:
    generator = build.generator or _generator(recipe)
    versions = ", ".join(f"`{v}` ({n})" for v, n in sorted(stats.prompt_versions.items())) or "none"
    used = ", ".join(f"`{g}` ({n})" for g, n in sorted(stats.generators.items())) or "none"
    verifier = _verifier(recipe, build)
    kind = "template baseline, offline" if is_template(recipe, build) else "OpenAI-compatible endpoint"
    prompt = build.prompt_version or recipe.generate.prompt_version
    parts = [
        "## How it was built",
        "",
        f"- Generator: `{generator}` ({kind}; QA rows by generator: {used})",
        f"- Prompt version: `{prompt}` (QA rows by prompt version: {versions})",
        f"- Verification: {f'on, answerability checked by `{verifier}`' if verifier else 'off'}",
        audit_line(build.audit),
    ]
    if build.notes:
        parts += ["", build.notes]
    parts += ["", "### Drops by reason", "", table(build.drops_by_reason, ("stage/reason", "dropped"))]
    parts += ["", "### Decontamination", "", _decontamination(recipe, build)]
    parts += [
        "",
        "<details><summary>Recipe (resolved; local paths relative to the pool root, endpoints redacted)</summary>",
        "",
        *_fenced(public_recipe_yaml(recipe).rstrip(), "yaml"),
        "",
        "</details>",
    ]
    return "\n".join(parts)


def audit_line(audit: Mapping[str, Any] | None) -> str:
    """The card's hand-audit bullet (`longdocvqa audit --report` writes the summary; audit/report.py)."""
    if not audit or not audit.get("overall", {}).get("judged"):
        return "- Hand audit: none was done (`longdocvqa audit OUT` samples QA for a person to check)"
    row, sample = audit["overall"], audit.get("sample", {})
    low, high = (f"{100 * v:.1f}" for v in row["ci95"])
    unclear = f"; {row['unclear']} unclear counted apart" if row.get("unclear") else ""
    audited = audit.get("verdicts", row["judged"] + row.get("unclear", 0))
    how = f"seeded task-stratified sample of {sample.get('size', '?')} of {sample.get('population', '?')} published QA"
    when = str(audit.get("audited_at") or "?")[:10]
    return (f"- Hand audit: {row['correct']} of {row['judged']} correct (95% CI {low}-{high}%{unclear}), {audited} QA "
            f"audited from a {how} (seed {sample.get('seed', '?')}), {when}")  # fmt: skip


def _fields(recipe: Recipe) -> str:
    return """
## Data fields

- `sft`: `id`, `task`, `doc_id` (document sha256), `qa_id` (the `qa` row, null for OCR tasks), `num_pages`,
  `num_tokens` (exact Qwen2.5-VL length with the recorded processor settings), `images` (every page, in order),
  `messages` (user turn: page labels, one `{"type": "image"}` block per page, the question; assistant turn: the
  answer), `licence` and `source` (of the source document; null for short-data rows).
- `qa`: `id`, `task`, `doc_sha256`, `segment_id`, `segment_start`, `segment_end`, `segment_sections`, `question`,
  `answer` (text; JSON for List answers), `answer_list` (items of List answers), `answer_format`, `evidence_pages`
  (absolute, 1-based), `evidence_sources`, `evidence_description`, `generator`, `prompt_version`, `call_id`,
  `verification`, `num_tokens`, `licence`, `source` (of the source document).
- `documents`: `sha256`, `file_name`, `num_pages`, `page_sizes_pt`, `size_bytes`, `title`, `producer`, `licence`,
  `source`, `pdf` (PDF_FIELD).

Splits are by document: a document and all its examples are in `train` or in `test`, never both.
""".replace("PDF_FIELD", _pdf_field(recipe))


def _pdf_field(recipe: Recipe) -> str:
    """What the `documents` config's `pdf` column holds in this version (`publish.include_pdf`)."""
    if recipe.publish.include_pdf:
        return (
            "the source PDF itself, bytes embedded as a `datasets.Pdf`: re-render its pages at any DPI; "
            "its sha256 is the row's `sha256`"
        )
    return "null: this version does not redistribute the PDF files (`publish.include_pdf: false`), only page images"


def _generator(recipe: Recipe) -> str:
    gen = recipe.generate.generator
    return gen.endpoint.model if gen.kind == "openai" else "template (offline baseline from the layout)"


def _fenced(text: str, language: str) -> list[str]:
    """A code block whose fence is longer than any run of backticks in `text`, so the text cannot close it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [fence + language, text, fence]
