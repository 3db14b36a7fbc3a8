"""The dataset card: README.md of the published folder (YAML header + Markdown body) and its histogram PNGs.

The YAML header is what tools read: `configs` (data files per config and split, `sft` the default), `dataset_info`
(Features and split sizes, in `datasets`' own YAML form), licence, task categories, size category, tags, and a
`longdocvqa` block that the trainer and `validate` read (version, recipe fingerprint, processor `min_pixels` /
`max_pixels`, token window, counts and token totals per task and split, task shares).
The body is for people: what the dataset is, how it was built, counts, drops, decontamination, lengths, examples,
sources and licences, how to load and train. Rows are the truth; this module only describes them.
"""

from __future__ import annotations

import re
import shutil
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from longdocvqa.assembly import chart
from longdocvqa.core.contract import CARD_KEY, CONFIGS, configs_yaml, ordered_splits
from longdocvqa.core.recipe import Recipe
from longdocvqa.hub.features import features_for
from longdocvqa.hub.redact import public_recipe_yaml
from longdocvqa.hub.stats import PublishStats

ASSETS = "assets"
LENGTH_PNG = f"{ASSETS}/length_histogram.png"
PAGES_PNG = f"{ASSETS}/pages_histogram.png"
LICENCE_FILE = "LICENSE.md"
TASK_CATEGORIES = ["visual-question-answering", "document-question-answering", "image-text-to-text"]
TAGS = ["long-context", "long-document", "document-understanding", "multimodal", "synthetic", "sft", "longdocvqa"]
_SIZE_BOUNDS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
_HIST_BINS = 30


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


def size_category(num_rows: int) -> str:
    """The Hub's size category for `num_rows` examples."""
    return next((name for bound, name in _SIZE_BOUNDS if num_rows < bound), "n>1M")


def write_card(folder: Path, recipe: Recipe, stats: PublishStats, build: BuildReport | None = None) -> Path:
    """Write README.md and the histogram PNGs into the dataset folder; returns the README path."""
    build = build or BuildReport()
    write_card_charts(folder, stats, build)
    write_licence_file(folder, recipe, stats)
    header = card_header(folder, recipe, stats)
    text = (
        "---\n"
        + yaml.safe_dump(header, sort_keys=False, allow_unicode=True)
        + "---\n\n"
        + card_body(recipe, stats, build)
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


# ---- header ---------------------------------------------------------------------------------------------------


def card_header(folder: Path, recipe: Recipe, stats: PublishStats) -> dict[str, Any]:
    """The YAML header as a dict."""
    num_sft = sum(stats.rows["sft"].values())
    header: dict[str, Any] = {
        "pretty_name": recipe.publish.pretty_name or recipe.name,
        "license": recipe.publish.licence,
        **licence_yaml(recipe, stats),
        "task_categories": TASK_CATEGORIES,
        "size_categories": [size_category(num_sft)],
        "tags": TAGS,
        "configs": configs_yaml(stats.rows),
        "dataset_info": dataset_info_yaml(folder, stats),
        CARD_KEY: longdocvqa_yaml(recipe, stats),
    }
    return header


def licence_yaml(recipe: Recipe, stats: PublishStats) -> dict[str, str]:
    """`license_name` and `license_link` when the licence is `other` (the Hub shows them instead of a known id)."""
    if recipe.publish.licence != "other":
        return {}
    mixed = "-".join(sorted(_slug(name) for name in stats.licences)) or "unknown"
    name = recipe.publish.licence_name or (f"mixed-{mixed}" if len(stats.licences) > 1 else mixed)
    return {"license_name": name, "license_link": recipe.publish.licence_link or LICENCE_FILE}


def _slug(text: str) -> str:
    """`GPL-2 (portions LGPL)` -> `gpl-2-portions-lgpl`: an id the Hub accepts as `license_name`."""
    return re.sub(r"[^a-z0-9.+]+", "-", text.lower()).strip("-") or "unknown"


def write_licence_file(folder: Path, recipe: Recipe, stats: PublishStats) -> Path:
    """LICENSE.md: the licence of every source document (rows carry theirs in `licence` / `source`)."""
    lines = [
        f"# Licences of {recipe.publish.pretty_name or recipe.name} {recipe.version}",
        "",
        "Each row inherits the licence of the source document it is made from; `sft`, `qa` and `documents` rows "
        "carry it in their `licence` and `source` columns, so a subset can be selected by licence.",
        "",
        _licence_table(stats),
        "",
        _document_table(stats),
        "",
    ]
    path = folder / LICENCE_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def dataset_info_yaml(folder: Path, stats: PublishStats) -> list[dict[str, Any]]:
    """`dataset_info:` per config, in the YAML form `datasets` writes itself (features, splits, sizes)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo

    out = []
    for config in CONFIGS:
        sizes = stats.num_bytes.get(config, {})
        splits = SplitDict()
        for split in ordered_splits(stats.rows[config]):
            splits.add(SplitInfo(name=split, num_bytes=sizes.get(split, 0), num_examples=stats.rows[config][split]))
        shards = [p for paths in stats.shards.get(config, {}).values() for p in paths]
        download = sum(p.stat().st_size for p in shards)
        info = DatasetInfo(
            features=features_for(config), splits=splits, download_size=download, dataset_size=sum(sizes.values())
        )
        out.append({"config_name": config, **info._to_yaml_dict()})
    return out


def longdocvqa_yaml(recipe: Recipe, stats: PublishStats) -> dict[str, Any]:
    """The `longdocvqa:` block: what the trainer and `validate` read."""
    a = recipe.assemble
    counts = {c: {s: stats.rows[c][s] for s in ordered_splits(stats.rows[c])} for c in CONFIGS}
    return {
        "name": recipe.name,
        "version": recipe.version,
        "recipe_fingerprint": recipe.fingerprint(),
        "tokenizer": a.tokenizer,
        "min_pixels": a.min_pixels,
        "max_pixels": a.max_pixels,
        "min_tokens": a.min_tokens,
        "max_tokens": a.max_tokens,
        "render": {"dpi": recipe.render.dpi, "format": recipe.render.format, "quality": recipe.render.quality},
        "test_share": recipe.publish.test_share,
        "mixture": dict(a.mixture),
        "mixture_unit": a.mixture_unit,
        "task_shares": task_shares(stats, a.mixture_unit),
        "counts": counts,
        "task_counts": {s: dict(sorted(stats.task_counts[s].items())) for s in ordered_splits(stats.task_counts)},
        "task_tokens": {s: dict(sorted(stats.task_tokens[s].items())) for s in ordered_splits(stats.task_tokens)},
        "num_tokens_total": sum(stats.num_tokens),
    }


def task_shares(stats: PublishStats, unit: str) -> dict[str, float]:
    """Share of each task over all splits of `sft`, by tokens or by examples (rounded to 6 digits)."""
    source = stats.task_tokens if unit == "tokens" else stats.task_counts
    totals: dict[str, int] = {}
    for per_task in source.values():
        for task, value in per_task.items():
            totals[task] = totals.get(task, 0) + value
    whole = sum(totals.values()) or 1
    return {task: round(value / whole, 6) for task, value in sorted(totals.items())}


# ---- body -----------------------------------------------------------------------------------------------------


def card_body(recipe: Recipe, stats: PublishStats, build: BuildReport) -> str:
    """The Markdown body."""
    sections = [
        _intro(recipe, stats, build),
        _usage(recipe),
        _contents(recipe, stats),
        _lengths(stats),
        _provenance(recipe, stats, build),
        _examples(stats),
        _sources(stats),
        _fields(recipe),
    ]
    return "\n\n".join(s.strip() for s in sections) + "\n"


def _intro(recipe: Recipe, stats: PublishStats, build: BuildReport) -> str:
    name = recipe.publish.pretty_name or recipe.name
    pages = stats.num_pages
    span = f"{min(pages)}-{max(pages)} pages" if pages else "no examples"
    return f"""
# {name} {recipe.version}

{_baseline_warning(recipe, build)}Long-document visual question answering for long-context continued pre-training of
vision-language models (the MMProLong recipe). Each `sft` example is a whole PDF document given as page images
({span}) followed by a question whose answer needs one or more of its pages; the assistant turn is the answer.
{recipe.description}

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


def _contents(recipe: Recipe, stats: PublishStats) -> str:
    lines = [
        "## Contents",
        "",
        "| config | " + " | ".join(_splits(stats)) + " |",
        "|---|" + "---|" * len(_splits(stats)),
    ]
    for config in ("sft", "qa", "documents"):
        lines.append(f"| {config} | " + " | ".join(str(stats.rows[config].get(s, 0)) for s in _splits(stats)) + " |")
    shares = task_shares(stats, recipe.assemble.mixture_unit)
    lines += ["", f"Examples and tokens per task (`sft`; shares by {recipe.assemble.mixture_unit}):", ""]
    lines += ["| task | split | examples | tokens | share | target |", "|---|---|---|---|---|---|"]
    targets = {str(task): share for task, share in recipe.assemble.mixture.items()}
    for split in _splits(stats):
        for task, count in sorted(stats.task_counts.get(split, {}).items()):
            target = targets.get(task)
            lines.append(
                f"| {task} | {split} | {count} | {stats.task_tokens[split][task]:,} | "
                f"{shares.get(task, 0):.3f} | {'' if target is None else f'{target:.3f}'} |"
            )
    return "\n".join(lines)


def _lengths(stats: PublishStats) -> str:
    tokens, pages = stats.num_tokens, stats.num_pages
    if not tokens:
        return "## Lengths\n\nNo examples."
    return f"""
## Lengths

Total: **{sum(tokens):,} tokens** in {len(tokens):,} examples. Tokens per example: min {min(tokens):,}, median
{int(statistics.median(tokens)):,}, max {max(tokens):,}. Pages per example: min {min(pages)}, median
{int(statistics.median(pages))}, max {max(pages)}.

![Sequence length histogram]({LENGTH_PNG})

![Pages per example histogram]({PAGES_PNG})
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
    parts += ["", "### Drops by reason", "", _table(build.drops_by_reason, ("stage/reason", "dropped"))]
    parts += ["", "### Decontamination", "", _decontamination_section(recipe, build)]
    parts += [
        "",
        "<details><summary>Recipe (resolved; local paths relative to the pool root, endpoints redacted)</summary>",
        "",
        "```yaml",
        public_recipe_yaml(recipe).rstrip(),
        "```",
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


def _examples(stats: PublishStats) -> str:
    lines = [
        "## Example rows (`qa`)",
        "",
        "Rows that passed every check that ran (answer found on an evidence page for extraction tasks, the "
        "verifier's agreement when verification was on) and are used by an `sft` example.",
        "",
        "| task | question | answer | format | evidence pages |",
        "|---|---|---|---|---|",
    ]
    for task, rows in sorted(stats.samples.items()):
        for row in rows:
            pages = ", ".join(str(p) for p in row["evidence_pages"])
            lines.append(
                f"| {task} | {_cell(row['question'])} | {_cell(row['answer'])} | {row['answer_format']} | {pages} |"
            )
    return "\n".join(lines)


def _sources(stats: PublishStats) -> str:
    lines = ["## Source documents and licences", "", _licence_table(stats), "", _document_table(stats)]
    return "\n".join(lines)


def _licence_table(stats: PublishStats) -> str:
    """Per licence: documents, `sft` examples and `qa` rows (every row carries its document's licence)."""
    rows = ["| licence | documents | sft examples | qa rows |", "|---|---|---|---|"]
    sft_rows: Mapping[str, int] = stats.licence_rows.get("sft", {})
    qa_rows: Mapping[str, int] = stats.licence_rows.get("qa", {})
    names = sorted(set(stats.licences) | set(sft_rows) | set(qa_rows))
    for name in names:
        sft, qa = sft_rows.get(name, 0), qa_rows.get(name, 0)
        rows.append(f"| {_cell(name)} | {stats.licences.get(name, 0)} | {sft} | {qa} |")
    return "\n".join(rows) if names else "No documents."


def _document_table(stats: PublishStats) -> str:
    total = sum(stats.rows["documents"].values())
    lines = ["| file | pages | licence | source | split |", "|---|---|---|---|---|"]
    for doc in stats.documents:
        lines.append(
            f"| {_cell(doc['file_name'])} | {doc['num_pages']} | {doc['licence'] or 'unknown'} | "
            f"{_cell(doc['source'] or '')} | {doc['split']} |"
        )
    if total > len(stats.documents):
        lines += ["", f"... and {total - len(stats.documents):,} more: see the `documents` config."]
    return "\n".join(lines)


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


def _splits(stats: PublishStats) -> list[str]:
    return ordered_splits({split for config in ("sft", "qa", "documents") for split in stats.rows[config]}) or [
        "train"
    ]


def _decontamination_section(recipe: Recipe, build: BuildReport) -> str:
    """What decontamination ran: the benchmarks and counts, or a visible line saying none was configured."""
    names = _benchmarks(recipe, build)
    if names:
        return _decontamination(build.decontamination)
    within = recipe.decontaminate.within_pool if build.within_pool is None else build.within_pool
    pool = (build.decontamination.get("within_pool") or {}).get("pool_near_dup", 0)
    line = f"Near-duplicates removed inside the pool: {pool}." if within else "No near-duplicate removal was run."
    return (
        "**No benchmark was configured: these documents were not decontaminated against any evaluation "
        f"benchmark.** {line}"
    )


def _decontamination(report: Mapping[str, Any]) -> str:
    """One row per benchmark and rule: documents or questions dropped, and the matched benchmark items."""
    if not report:
        return "Not run."
    if "benchmarks" not in report:  # a plain measure -> value mapping
        return _table(report, ("benchmark / measure", "value"))
    rows = ["| benchmark | kind | rule | dropped | matched benchmark items |", "|---|---|---|---|---|"]
    for name, source in sorted((report.get("benchmarks") or {}).items()):
        for rule, hit in source.get("dropped", {}).items():
            items = ", ".join(f"`{_cell(i, 60)}`" for i in hit.get("benchmark_ids", [])[:10]) or "-"
            rows.append(f"| {_cell(name)} | {source.get('kind', '')} | {rule} | {hit.get('count', 0)} | {items} |")
    if len(rows) == 2:
        rows.append("| (no benchmark configured) | | | | |")
    pool = (report.get("within_pool") or {}).get("pool_near_dup", 0)
    settings = report.get("settings") or {}
    how = ", ".join(f"{k}={v}" for k, v in settings.items() if k in ("num_perm", "shingle_words", "threshold",
                                                                     "window_pages", "question_ngram"))  # fmt: skip
    return "\n".join(rows) + f"\n\nNear-duplicates removed inside the pool: {pool}. MinHash LSH settings: {how}."


def _table(data: Mapping[str, Any], head: tuple[str, str]) -> str:
    if not data:
        return "None."
    rows = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    rows += [f"| {_cell(str(k))} | {_cell(str(v))} |" for k, v in sorted(data.items())]
    return "\n".join(rows)


def _cell(text: Any, limit: int = 120) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ---- plots ----------------------------------------------------------------------------------------------------


def write_card_charts(folder: Path, stats: PublishStats, build: BuildReport) -> None:
    """Copy the assembly stage's PNGs into assets/, or draw them from the rows' num_tokens / num_pages."""
    (folder / ASSETS).mkdir(parents=True, exist_ok=True)
    plots = [
        (build.length_histogram_png, LENGTH_PNG, stats.num_tokens, "tokens per example"),
        (build.pages_histogram_png, PAGES_PNG, stats.num_pages, "pages per example"),
    ]
    for given, name, values, label in plots:
        if given is not None and Path(given).is_file():
            shutil.copyfile(given, folder / name)
        else:
            draw_histogram(values, label, folder / name)


def draw_histogram(values: list[int], label: str, path: Path) -> None:
    """A plain histogram PNG of the rows' values (Pillow; deterministic bytes, so reruns are byte-identical)."""
    edges, counts = chart.histogram(values or [0], _HIST_BINS)
    chart.stacked_histogram(edges, {"examples": counts}, path, xlabel=label)
