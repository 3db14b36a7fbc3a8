"""Pool stage: hash, probe and filter the pool's PDFs; the kept documents, sorted by sha256.

Each file is inspected in its own process (pool.py: sha256, page count and sizes, metadata); a file that cannot
be read, overruns its time or memory, or kills its process is one reject naming the file. Duplicates (same bytes),
page counts outside the range and licences not allowed are dropped after the stage, so changing those settings
reuses every inspection. Does not own: listing and probing files (pool.py), the per-document loop (runner.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longdocvqa.core.environment import raise_if_environment
from longdocvqa.core.errors import RejectedInput
from longdocvqa.core.fingerprint import stage_fingerprint
from longdocvqa.core.recipe import PoolConfig
from longdocvqa.core.records import PdfDoc, Reject
from longdocvqa.core.store import StageOutput
from longdocvqa.documents import pool
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import Job
from longdocvqa.runner.loop import BuildContext, StageStats, collect, one_line, record_reject, run_jobs, stop, timed

VERSION = 3  # 3: text.clean


def run_pool(ctx: BuildContext) -> list[PdfDoc]:
    """Hash, probe and filter the pool; returns kept documents sorted by sha256."""
    cfg = ctx.recipe.pool
    settings = cfg.model_dump(exclude={"paths", "allow_licences"})  # licences are filtered after the stage
    out = ctx.run.stage("pool", stage_fingerprint("pool", VERSION, settings))
    with timed(ctx, "pool") as stats:
        files, skipped = pool.discover_with_rejects(cfg.paths, index_dir=ctx.run.cache_dir / "shards")
        for reject in skipped:  # unreadable folders and shards, dangling links, link cycles: one reject line each
            record_reject(ctx, stats, reject)
        root, settings_dict = str(out.dir.parent.parent.parent), cfg.model_dump()  # one dict shared by all jobs
        jobs = [Job(key, f.path, (f.path, key, settings_dict, root, out.fingerprint))
                for f, key in ((f, pool.cache_key(f)) for f in files)]  # fmt: skip
        run_jobs(ctx, "pool", out, _pool_worker, jobs)
        docs = _collect_pool(ctx, jobs, out, stats)
    if not docs:
        stop(ctx, _empty_pool_reason(cfg.paths, stats))
    return docs


def _empty_pool_reason(paths: list[str], stats: StageStats) -> str:
    where = ", ".join(paths)
    if not stats.seen:
        return f"pool: no PDF found in {where}"
    drops = ", ".join(f"{reason}: {n}" for reason, n in stats.dropped.most_common(3))
    return f"pool: none of the {stats.seen} files found in {where} is usable ({drops})"


def _pool_worker(path: str, key: str, cfg: dict[str, Any], root: str, fingerprint: str) -> None:
    out = StageOutput(Path(root), "pool", fingerprint)
    try:
        out.write(key, pool.inspect_file(path, PoolConfig.model_validate(cfg)))
    except RejectedInput as exc:
        out.write_reject(key, pool.pool_reject(path, exc))
    except Exception as exc:  # a broken file must never stop the build
        raise_if_environment(exc, path)  # a full disk must: the worker exits with it, nothing is stored
        reason = "too_big" if isolate.is_memory_error(exc) else "unreadable"
        out.write_reject(key, Reject(stage="pool", item=path, reason=reason, detail=one_line(exc)))


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
