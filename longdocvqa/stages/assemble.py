"""Assemble stage: full-document examples with exact lengths, window, distribution, mixture and budget.

Cheap (no images): runs in the build's process over every generated QA at once; its inputs' hash names a marker
under stages/assemble/, and when the same inputs were already assembled and published the stats and rejects are
restored instead (stages/publish.py). Does not own: the examples, lengths and sampling (assemble.py, sampling.py),
token counting (tokens.py), loading the tokenizer or short data (hub/load.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from longdocvqa.assembly.assemble import Assembly, assemble
from longdocvqa.assembly.tokens import TokenCounter
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe import AssembleConfig
from longdocvqa.core.records import PdfDoc, QARecord
from longdocvqa.hub.load import fetch_tokenizer_json, load_short_rows
from longdocvqa.runner.loop import BuildContext, record_rejects, timed
from longdocvqa.stages.layout import layout_or_fail
from longdocvqa.stages.plan import name_document, unpicked_rejects
from longdocvqa.stages.publish import reuse_published


def run_assemble(
    ctx: BuildContext, docs: list[PdfDoc], qas: dict[str, list[QARecord]], layout_fp: str
) -> tuple[Assembly, Path] | None:
    """Full-document examples with exact lengths, window, distribution, mixture and budget (cheap: no images).

    Returns None when the same inputs were already assembled and published (nothing to do)."""
    cfg = ctx.recipe.assemble
    qa_ids = sorted(r.id for rs in qas.values() for r in rs)
    inputs = {"assemble": cfg, "seed": ctx.recipe.seed, "dpi": ctx.recipe.render.dpi, "layout": layout_fp,
              "render_max_pixels": ctx.recipe.render.max_pixels,
              "docs": sorted(d.sha256 for d in docs), "qa": qa_ids}  # fmt: skip
    done = ctx.run.root / "stages" / "assemble" / f"{content_hash(inputs, length=16)}.json"
    if reuse_published(ctx, done):
        return None
    with timed(ctx, "assemble") as stats, ctx.progress.stage("assemble", 1) as advance:
        counter = TokenCounter.load(
            cfg.tokenizer, cfg.min_pixels, cfg.max_pixels, fetch=fetch_tokenizer_json,
            render_max_pixels=ctx.recipe.render.max_pixels,
        )  # fmt: skip
        stats.extra["tokenizer_source"] = counter.source
        short_rows = _load_short_rows(cfg) if cfg.short_data.share > 0 else None
        records = [r for doc in docs for r in qas.get(doc.sha256, [])]
        result = assemble(
            {d.sha256: d for d in docs}, records, lambda sha: layout_or_fail(ctx, layout_fp, sha), cfg,
            render_dpi=ctx.recipe.render.dpi, seed=ctx.recipe.seed, counter=counter, short_rows=short_rows,
        )  # fmt: skip
        stats.seen, stats.kept = len(records), result.stats.examples
        _account_assembly(result, records, docs, cfg)
        record_rejects(ctx, stats, result.rejects)
        stats.extra["summary"] = result.stats.model_dump(mode="json", exclude={"length_histogram", "pages_histogram"})
        advance(1)
    return result, done


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
