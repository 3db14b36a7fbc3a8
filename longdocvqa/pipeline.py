"""Wires the stages: pool -> decontaminate -> layout -> segment -> generate -> assemble -> publish.

Each stage's per-document output lives under a fingerprint of (stage, version, config, inputs), so
a rerun skips finished work and a changed setting recomputes only what depends on it. Work is
keyed by document sha256, never by worker count. Documents are processed in parallel processes;
each worker writes its own output atomically, so a killed build loses only unfinished documents.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from longdocvqa import __version__, pool, render
from longdocvqa.errors import RejectedInput, StageError
from longdocvqa.fingerprint import stage_fingerprint
from longdocvqa.layout import parse_layout
from longdocvqa.recipe import LayoutConfig, Recipe
from longdocvqa.records import LayoutDoc, PdfDoc, Reject, Segment
from longdocvqa.segment import sample_segments
from longdocvqa.store import RunDir, StageOutput, atomic_write_bytes, atomic_write_text

STAGE_VERSIONS = {"pool": 1, "layout": 1, "segment": 1}
_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp"}


class Progress:
    """What the pipeline reports; the CLI passes a Rich implementation, tests pass nothing."""

    def stage(self, name: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda n=1: None)

    def reject(self, reject: Reject) -> None:
        """Called once per unusable input (bad file, failed parse), as it is found."""


@dataclass
class StageStats:
    seen: int = 0
    kept: int = 0
    reused: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        counts = {"seen": self.seen, "kept": self.kept, "reused": self.reused}
        return {
            **counts,
            "dropped": dict(sorted(self.dropped.items())),
            "seconds": round(self.seconds, 3),
            **self.extra,
        }


@dataclass
class BuildContext:
    """Everything a stage needs: the recipe, the run directory, options, stats and rejects so far."""

    recipe: Recipe
    run: RunDir
    workers: int
    progress: Progress
    stats: dict[str, StageStats] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)

    def stage_stats(self, name: str) -> StageStats:
        return self.stats.setdefault(name, StageStats())


class PageImages:
    """Page images rendered on demand and cached by (document sha256, page, dpi, format, quality)."""

    def __init__(self, cache_dir: Path, recipe: Recipe) -> None:
        self.cfg = recipe.render
        self.root = cache_dir / "pages"

    def path(self, sha256: str, page: int) -> Path:
        variant = f"{self.cfg.dpi}-{self.cfg.format}-q{self.cfg.quality}"
        return self.root / sha256[:2] / sha256 / variant / f"{page}.{_EXT[self.cfg.format]}"

    def get(self, doc: PdfDoc, page: int) -> bytes:
        """Bytes of 1-based `page` of `doc`, rendered once."""
        return self.get_many(doc, [page])[page]

    def get_many(self, doc: PdfDoc, pages: Sequence[int]) -> dict[int, bytes]:
        missing = [p for p in pages if not self.path(doc.sha256, p).is_file()]
        if missing:
            rendered = render.render_pages(doc.path, missing, self.cfg.dpi, self.cfg.format, self.cfg.quality)
            for page, data in rendered.items():
                atomic_write_bytes(self.path(doc.sha256, page), data)
        return {p: self.path(doc.sha256, p).read_bytes() for p in pages}


def build(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run every stage of `recipe` into `out_dir`, reusing finished work; return the manifest."""
    run = RunDir(out_dir)
    ctx = BuildContext(recipe=recipe, run=run, workers=workers or os.cpu_count() or 1, progress=progress or Progress())
    started = time.perf_counter()
    atomic_write_text(run.root / "recipe.lock.yaml", recipe.to_yaml())
    docs = run_pool(ctx)
    if limit is not None:
        docs = docs[:limit]
    layouts_fp = run_layout(ctx, docs)
    segments = run_segment(ctx, docs, layouts_fp)
    manifest = _manifest(ctx, docs, segments, time.perf_counter() - started)
    run.write_rejects(ctx.rejects)
    run.write_manifest(manifest)
    return manifest


def _timed(ctx: BuildContext, name: str) -> _Timer:
    return _Timer(ctx.stage_stats(name))


class _Timer:
    def __init__(self, stats: StageStats) -> None:
        self.stats = stats

    def __enter__(self) -> StageStats:
        self.start = time.perf_counter()
        return self.stats

    def __exit__(self, *exc: object) -> None:
        self.stats.seconds += time.perf_counter() - self.start


# ---------------------------------------------------------------- pool


def run_pool(ctx: BuildContext) -> list[PdfDoc]:
    """Hash, probe and filter the pool; returns kept documents sorted by sha256."""
    cfg = ctx.recipe.pool
    out = ctx.run.stage("pool", stage_fingerprint("pool", STAGE_VERSIONS["pool"], cfg.model_dump(exclude={"paths"})))
    with _timed(ctx, "pool") as stats:
        files = pool.discover(cfg.paths)
        keys = {f: pool.cache_key(f) for f in files}
        todo = [
            (str(f), keys[f], cfg.model_dump(), str(out.dir.parent.parent.parent))
            for f in files
            if not out.done(keys[f])
        ]
        stats.seen, stats.reused = len(files), len(files) - len(todo)
        _parallel(ctx, "pool", _pool_worker, todo, out.fingerprint)
        docs = _collect_pool(ctx, files, keys, out, stats)
    return docs


def _pool_worker(path: str, key: str, cfg: dict[str, Any], root: str, fingerprint: str) -> None:
    from longdocvqa.recipe import PoolConfig

    out = StageOutput(Path(root), "pool", fingerprint)
    try:
        out.write(key, pool.inspect_file(Path(path), PoolConfig.model_validate(cfg)))
    except RejectedInput as exc:
        out.write_reject(key, pool.pool_reject(Path(path), exc))
    except Exception as exc:  # a broken file must never stop the build
        out.write_reject(key, Reject(stage="pool", item=path, reason="unreadable", detail=_one_line(exc)))


def _collect_pool(
    ctx: BuildContext, files: list[Path], keys: dict[Path, str], out: StageOutput, stats: StageStats
) -> list[PdfDoc]:
    cfg = ctx.recipe.pool
    licences = pool.load_licences(cfg.licences)
    docs: dict[str, PdfDoc] = {}
    bad = 0
    for f in files:
        data = out.read(keys[f])
        if "reject" in data:
            _record_bad(ctx, stats, Reject.model_validate(data["reject"]))
            bad += 1
            continue
        doc = pool.attach_licence(PdfDoc.model_validate(data["ok"]), licences)
        reason = _pool_filter(doc, docs, cfg)
        if reason:
            ctx.rejects.append(Reject(stage="pool", item=str(f), reason=reason, detail=_filter_detail(doc, docs, cfg)))
            stats.dropped[reason] += 1
        else:
            docs[doc.sha256] = doc
    _check_budget(ctx, "pool", bad, len(files))
    stats.kept = len(docs)
    stats.extra["pages"] = sum(d.num_pages for d in docs.values())
    return sorted(docs.values(), key=lambda d: d.sha256)


def _record_bad(ctx: BuildContext, stats: StageStats, reject: Reject) -> None:
    ctx.rejects.append(reject)
    stats.dropped[reject.reason] += 1
    ctx.progress.reject(reject)


def _pool_filter(doc: PdfDoc, kept: dict[str, PdfDoc], cfg: Any) -> str | None:
    if doc.sha256 in kept:
        return "duplicate"
    if not pool.in_page_range(doc, cfg):
        return "page_range"
    return None


def _filter_detail(doc: PdfDoc, kept: dict[str, PdfDoc], cfg: Any) -> str:
    if doc.sha256 in kept:
        return f"same bytes as {kept[doc.sha256].path}"
    return f"{doc.num_pages} pages, outside {cfg.min_pages}-{cfg.max_pages}"


def _check_budget(ctx: BuildContext, stage: str, bad: int, seen: int) -> None:
    limit = ctx.recipe.pool.max_reject_rate
    if seen and bad / seen > limit:
        raise StageError(
            f"{stage}: {bad} of {seen} inputs rejected ({bad / seen:.0%}), over max_reject_rate {limit:.0%}; "
            f"see {ctx.run.rejects_path}"
        )


# ---------------------------------------------------------------- layout


def layout_fingerprint(recipe: Recipe) -> str:
    return stage_fingerprint("layout", STAGE_VERSIONS["layout"], recipe.layout)


def run_layout(ctx: BuildContext, docs: list[PdfDoc]) -> str:
    """Parse every kept document into labelled blocks (in parallel); returns the stage fingerprint."""
    out = ctx.run.stage("layout", layout_fingerprint(ctx.recipe))
    with _timed(ctx, "layout") as stats:
        todo = [
            (d.path, d.sha256, ctx.recipe.layout.model_dump(), str(ctx.run.root))
            for d in docs
            if not out.done(d.sha256)
        ]
        stats.seen, stats.reused = len(docs), len(docs) - len(todo)
        _parallel(ctx, "layout", _layout_worker, todo, out.fingerprint)
        bad = 0
        for doc in docs:
            data = out.read(doc.sha256)
            if "reject" in data:
                _record_bad(ctx, stats, Reject.model_validate(data["reject"]))
                bad += 1
        stats.kept = len(docs) - bad
        _check_budget(ctx, "layout", bad, len(docs))
    return out.fingerprint


def _layout_worker(path: str, sha: str, cfg: dict[str, Any], root: str, fingerprint: str) -> None:
    out = StageOutput(Path(root), "layout", fingerprint)
    try:
        out.write(sha, parse_document(path, sha, LayoutConfig.model_validate(cfg)))
    except RejectedInput as exc:
        out.write_reject(sha, Reject(stage="layout", item=path, reason=exc.reason, detail=exc.detail))
    except Exception as exc:  # a broken page must never stop the build
        out.write_reject(sha, Reject(stage="layout", item=path, reason="layout_failed", detail=_one_line(exc)))


def parse_document(path: str, sha: str, cfg: LayoutConfig) -> LayoutDoc:
    """Raw page content -> labelled layout for one PDF."""
    raw = render.raw_pages(path, find_tables=cfg.find_tables, layout_model=cfg.backend == "pymupdf-layout")
    return parse_layout(sha, raw, render.outline(path), cfg)


def load_layout(run: RunDir, fingerprint: str, sha: str) -> LayoutDoc | None:
    data = run.stage("layout", fingerprint).read(sha)
    return LayoutDoc.model_validate(data["ok"]) if "ok" in data else None


# ---------------------------------------------------------------- segment


def run_segment(ctx: BuildContext, docs: list[PdfDoc], layout_fp: str) -> dict[str, list[Segment]]:
    """Sample section-aligned segments for every parsed document."""
    cfg = ctx.recipe.segment
    fp = stage_fingerprint(
        "segment", STAGE_VERSIONS["segment"], {"segment": cfg, "seed": ctx.recipe.seed}, [layout_fp]
    )
    out = ctx.run.stage("segment", fp)
    result: dict[str, list[Segment]] = {}
    with _timed(ctx, "segment") as stats, ctx.progress.stage("segment", len(docs)) as advance:
        for doc in docs:
            stats.seen += 1
            if out.done(doc.sha256):
                stats.reused += 1
            else:
                layout = load_layout(ctx.run, layout_fp, doc.sha256)
                if layout is None:
                    advance(1)
                    continue
                out.write(doc.sha256, sample_segments(layout, cfg, ctx.recipe.seed))
            result[doc.sha256] = [Segment.model_validate(s) for s in out.read(doc.sha256)["ok"]]
            advance(1)
        stats.kept = len(result)
        segments = [s for segs in result.values() for s in segs]
        stats.extra.update(segments=len(segments), by_rule=dict(Counter(s.rule for s in segments)))
    return result


# ---------------------------------------------------------------- helpers


def _parallel(
    ctx: BuildContext, name: str, fn: Callable[..., None], jobs: list[tuple[Any, ...]], fingerprint: str
) -> None:
    """Run `fn(*job, fingerprint)` for each job, in processes when workers > 1; each job writes its own output."""
    with ctx.progress.stage(name, len(jobs)) as advance:
        if ctx.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                fn(*job, fingerprint)
                advance(1)
            return
        with ProcessPoolExecutor(max_workers=min(ctx.workers, len(jobs))) as executor:
            futures = [executor.submit(fn, *job, fingerprint) for job in jobs]
            for future in as_completed(futures):
                future.result()
                advance(1)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


def _manifest(
    ctx: BuildContext, docs: Iterable[PdfDoc], segments: dict[str, list[Segment]], seconds: float
) -> dict[str, Any]:
    drops: Counter[str] = Counter()
    for reject in ctx.rejects:
        drops[f"{reject.stage}/{reject.reason}"] += 1
    return {
        "name": ctx.recipe.name,
        "version": ctx.recipe.version,
        "recipe_fingerprint": ctx.recipe.fingerprint(),
        "longdocvqa_version": __version__,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "documents": len(list(docs)),
        "segments": sum(len(s) for s in segments.values()),
        "stages": {name: stats.as_dict() for name, stats in ctx.stats.items()},
        "drops": dict(sorted(drops.items())),
    }
