"""Pool stage: hash, probe and filter the pool's PDFs; the kept documents, sorted by sha256.

Each file is inspected in its own process as a typed `PoolJob` (documents/pool.py: sha256, page count and sizes,
metadata); a file that cannot be read, overruns its time or memory, or kills its process is one reject naming the
file. Duplicates (same bytes), page counts outside the range and licences not allowed are dropped after the stage, so
changing those settings reuses every inspection. Does not own: listing and probing files (documents/pool.py), the
per-document loop (runner/loop.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from longdocvqa.core.errors import RejectedInput
from longdocvqa.core.fingerprint import stage_fingerprint
from longdocvqa.core.recipe import PoolConfig
from longdocvqa.core.records import PdfDoc, Reject
from longdocvqa.core.store import StageOutput
from longdocvqa.documents import pool
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import Job
from longdocvqa.runner.loop import BuildContext, StageResult, StageStats, collect, record_reject, run_jobs, stop, timed

VERSION = 3  # 3: text.clean


@dataclass(frozen=True)
class PoolJob:
    """One file's inspection: probe `path` under `config` into `out` (key: `key`, the file's cache key)."""

    path: str
    key: str
    config: PoolConfig
    out: StageOutput


def run_pool(ctx: BuildContext) -> StageResult[list[PdfDoc]]:
    """Hash, probe and filter the pool; the kept documents, sorted by sha256."""
    cfg = ctx.recipe.pool
    settings = cfg.model_dump(exclude={"paths", "allow_licences"})  # licences are filtered after the stage
    out = ctx.run.stage("pool", stage_fingerprint("pool", VERSION, settings))
    with timed(ctx, "pool") as stats:
        files, skipped = pool.discover_with_rejects(cfg.paths, index_dir=ctx.run.shard_index_dir)
        for reject in skipped:  # unreadable folders and shards, dangling links, link cycles: one reject line each
            record_reject(ctx, stats, reject)
        jobs = [
            Job(key, f.path, (PoolJob(f.path, key, cfg, out),)) for f, key in ((f, pool.cache_key(f)) for f in files)
        ]
        run_jobs(ctx, "pool", out, _pool_worker, jobs)
        docs = _collect_pool(ctx, jobs, out, stats)
    if not docs:
        stop(ctx, _empty_pool_reason(cfg.paths, stats))
    return StageResult(docs, stats)


def _empty_pool_reason(paths: list[str], stats: StageStats) -> str:
    where = ", ".join(paths)
    if not stats.seen:
        return f"pool: no PDF found in {where}"
    drops = ", ".join(f"{reason}: {n}" for reason, n in stats.dropped.most_common(3))
    return f"pool: none of the {stats.seen} files found in {where} is usable ({drops})"


def _pool_worker(job: PoolJob) -> None:
    """In the file's worker: its PdfDoc, or its reject, stored under its cache key."""
    try:
        job.out.write(job.key, pool.inspect_file(job.path, job.config))
    except RejectedInput as exc:
        job.out.write_reject(job.key, pool.pool_reject(job.path, exc))
    except Exception as exc:  # a broken file must never stop the build
        reason, detail = isolate.exception_failure(exc, "unreadable", job.path)
        job.out.write_reject(job.key, Reject(stage="pool", item=job.path, reason=reason, detail=detail))


def _collect_pool(ctx: BuildContext, jobs: list[Job], out: StageOutput, stats: StageStats) -> list[PdfDoc]:
    cfg = ctx.recipe.pool
    licences = pool.load_licences(cfg.licences)
    docs: dict[str, PdfDoc] = {}
    for job, data in collect(ctx, "pool", out, jobs):
        doc = pool.attach_licence(PdfDoc.model_validate(data), licences)
        reason = _pool_filter(doc, docs, cfg)
        if reason:
            record_reject(ctx, stats, Reject(stage="pool", item=job.item, reason=reason,
                                             detail=_filter_detail(doc, docs, cfg)))  # fmt: skip
        else:
            docs[doc.sha256] = doc
    stats.kept = len(docs)
    stats.extra["pages"] = sum(d.num_pages for d in docs.values())
    return sorted(docs.values(), key=lambda d: d.sha256)


def _pool_filter(doc: PdfDoc, kept: dict[str, PdfDoc], cfg: PoolConfig) -> str | None:
    if doc.sha256 in kept:
        return "duplicate"
    if not pool.in_page_range(doc, cfg):
        return "page_range"
    if not pool.licence_allowed(doc, cfg.allow_licences):
        return "licence_not_allowed"
    return None


def _filter_detail(doc: PdfDoc, kept: dict[str, PdfDoc], cfg: PoolConfig) -> str:
    if doc.sha256 in kept:
        return f"same bytes as {kept[doc.sha256].path}"
    if pool.in_page_range(doc, cfg):
        return f"licence {doc.licence or 'unknown'!r} is not in pool.allow_licences {cfg.allow_licences}"
    return f"{doc.num_pages} pages, outside {cfg.min_pages}-{cfg.max_pages}"
