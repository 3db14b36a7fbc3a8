"""Decontaminate stage: drop pool documents that copy or nearly copy a benchmark document or each other, and
generated questions that share a 13-gram with a benchmark question or answer.

Runs over the whole pool at once (dedup.py: MinHash LSH over page shingles, perceptual hashes of image-only
pages, cached per document); the benchmark index comes from hub/benchmarks.py. A document MuPDF cannot read is
one reject, never a traceback. Does not own: the signatures and the matching (dedup.py), loading benchmarks (hub).
"""

from __future__ import annotations

import functools
from pathlib import Path

from longdocvqa import dedup, isolate, render
from longdocvqa.hub.benchmarks import build_benchmark_index
from longdocvqa.records import PdfDoc, QARecord, Reject
from longdocvqa.runner import BuildContext, one_line, record_rejects, timed


def run_decontaminate(ctx: BuildContext, docs: list[PdfDoc]) -> tuple[list[PdfDoc], dedup.BenchmarkIndex | None]:
    """Drop exact copies and near-duplicates of benchmark documents, and near-duplicates inside the pool."""
    cfg = ctx.recipe.decontaminate
    if not cfg.benchmarks and not cfg.within_pool:
        return docs, None
    cache = ctx.run.cache_dir / "decontaminate"
    by_sha = {d.sha256: d for d in docs}
    with timed(ctx, "decontaminate") as stats, ctx.progress.stage("decontaminate", 1) as advance:
        index = build_benchmark_index(cfg, cache, render.page_texts, page_images=_thumbnails)
        unreadable: list[Reject] = []
        texts = [(d.sha256, functools.partial(_page_texts_or_reject, d, unreadable)) for d in docs]
        kept, rejects, report = dedup.check_documents(
            index, texts, cfg, cache, page_images=lambda sha: _thumbnails(by_sha[sha].path)
        )
        for reject in unreadable:  # an empty cached entry would let the document through on the next run
            dedup.SignatureCache(cache, dedup.SignatureSettings.from_config(cfg)).forget(reject.item)
        bad = {r.item for r in unreadable}
        kept, rejects = set(kept) - bad, [*(r for r in rejects if r.item not in bad), *unreadable]
        stats.seen, stats.kept = len(docs), len(kept)
        record_rejects(ctx, stats, rejects)
        stats.extra["report"] = report
        advance(1)
    return [d for d in docs if d.sha256 in kept], index


def _page_texts_or_reject(doc: PdfDoc, unreadable: list[Reject]) -> list[str]:
    """The document's page texts; one MuPDF cannot read gets a reject (item: its sha256, dropped from the kept set
    by run_decontaminate) and no text, never a traceback in the build's process."""
    try:
        return render.page_texts(doc.path)
    except Exception as exc:
        reason = "too_big" if isolate.is_memory_error(exc) else "render_failed"
        unreadable.append(Reject(stage="decontaminate", item=doc.sha256, reason=reason,
                                 detail=f"{doc.path}: {one_line(exc)}"))  # fmt: skip
        return []


def _thumbnails(path: str | Path) -> list[bytes]:
    """Small page images for perceptual hashes of image-only documents (50 DPI is plenty for a 64-bit dHash).

    A document MuPDF cannot render gets none (it is then compared by text only); layout and generation reject it."""
    try:
        count = len(render.page_texts(path))
        return list(render.render_pages(path, list(range(1, count + 1)), 50, "jpeg", 85).values())
    except Exception:
        return []


def run_question_overlap(
    ctx: BuildContext, qas: dict[str, list[QARecord]], index: dedup.BenchmarkIndex | None
) -> dict[str, list[QARecord]]:
    """Drop generated questions that share a 13-gram with a benchmark question or answer."""
    if index is None or not ctx.recipe.decontaminate.benchmarks:
        return qas
    stats = ctx.stage_stats("decontaminate")
    pairs = [(qa.id, qa.question) for records in qas.values() for qa in records]
    rejects = dedup.question_overlaps(index, pairs)
    dropped = {r.item for r in rejects}
    record_rejects(ctx, stats, rejects)
    bench_rejects = [r for r in ctx.rejects if r.stage == "decontaminate"]
    stats.extra["report"] = dedup.decontamination_report(index, bench_rejects)
    return {sha: [qa for qa in records if qa.id not in dropped] for sha, records in qas.items()}
