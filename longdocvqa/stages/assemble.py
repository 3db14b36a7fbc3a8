"""Assemble stage: full-document examples with exact lengths, window, distribution, mixture and budget.

Cheap (no images): runs in the build's process over every generated QA at once. `assemble_key` hashes its inputs;
pipeline.py asks publish whether an assembly of the same inputs was already published (then nothing runs).
Does not own: the examples, lengths and sampling (assembly/assemble.py, assembly/sampling.py), token counting
(assembly/tokens.py), loading the tokenizer or short data (hub/load.py), the published marker (stages/publish.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from longdocvqa.assembly.assemble import Assembly, assemble
from longdocvqa.assembly.sampling import unpicked_rejects
from longdocvqa.assembly.tokens import TokenCounter
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe import AssembleConfig
from longdocvqa.core.records import PdfDoc, QARecord, name_document
from longdocvqa.hub.load import fetch_tokenizer_json, load_short_rows
from longdocvqa.runner.loop import BuildContext, StageResult, record_rejects, timed
from longdocvqa.stages.layout import Layouts


def assemble_key(ctx: BuildContext, docs: list[PdfDoc], qas: dict[str, list[QARecord]], layouts: Layouts) -> str:
    """The hash of everything the assembly depends on (it names the assembly's saved marker in the run directory)."""
    qa_ids = sorted(r.id for rs in qas.values() for r in rs)
    inputs = {"assemble": ctx.recipe.assemble, "seed": ctx.recipe.seed, "dpi": ctx.recipe.render.dpi,
              "layout": layouts.fingerprint, "render_max_pixels": ctx.recipe.render.max_pixels,
              "docs": sorted(d.sha256 for d in docs), "qa": qa_ids}  # fmt: skip
    return content_hash(inputs, length=16)


def run_assemble(
    ctx: BuildContext, docs: list[PdfDoc], qas: dict[str, list[QARecord]], layouts: Layouts
) -> StageResult[Assembly]:
    """Full-document examples with exact lengths, window, distribution, mixture and budget (cheap: no images)."""
    cfg = ctx.recipe.assemble
    with timed(ctx, "assemble") as stats, ctx.progress.stage("assemble", 1) as advance:
        counter = TokenCounter.load(
            cfg.tokenizer, cfg.min_pixels, cfg.max_pixels, fetch=fetch_tokenizer_json,
            render_max_pixels=ctx.recipe.render.max_pixels,
        )  # fmt: skip
        stats.extra["tokenizer_source"] = counter.source
        short_rows = _load_short_rows(cfg) if cfg.short_data.share > 0 else None
        records = [r for doc in docs for r in qas.get(doc.sha256, [])]
        result = assemble(
            {d.sha256: d for d in docs}, records, layouts.final, cfg,
            render_dpi=ctx.recipe.render.dpi, seed=ctx.recipe.seed, counter=counter, short_rows=short_rows,
        )  # fmt: skip
        stats.seen, stats.kept = len(records), result.stats.examples
        _account_assembly(result, records, docs, cfg)
        record_rejects(ctx, stats, result.rejects)
        stats.extra["summary"] = result.stats.model_dump(mode="json", exclude={"length_histogram", "pages_histogram"})
        advance(1)
    return StageResult(result, stats)


def _account_assembly(result: Assembly, records: list[QARecord], docs: list[PdfDoc], cfg: AssembleConfig) -> None:
    """Name each rejected QA's document by its file, and add a line for every QA the sampling left out."""
    paths = {d.sha256: d.path for d in docs}
    doc_of = {qa.id: paths[qa.doc_sha256] for qa in records if qa.doc_sha256 in paths}
    rejected = [r.item for r in result.rejects]
    result.rejects[:] = [name_document(r, doc_of[r.item]) if r.item in doc_of else r for r in result.rejects]
    picked = [p.qa.id for p in result.picks if p.qa is not None]
    mixture: dict[str, float] = {task: share for task, share in cfg.mixture.items()}
    result.rejects.extend(unpicked_rejects(records, picked, rejected, mixture, paths))


def _load_short_rows(cfg: AssembleConfig) -> Sequence[Mapping[str, Any]]:
    return load_short_rows(cfg.short_data)
