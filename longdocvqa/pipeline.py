"""Wires the stages: pool -> decontaminate -> plan -> layout -> segment -> generate -> assemble -> publish.

The plan (stages/plan.py) picks, from page sizes alone, the (document, task) units the dataset needs; layout,
segment and generate run only for those, with top-up rounds when drops leave a stream of the mixture short.

Each stage's per-document output lives under a fingerprint of (stage, version, config, inputs), so
a rerun skips finished work and a changed setting recomputes only what depends on it. Work is
keyed by document sha256, never by worker count. Documents are processed in parallel processes;
each worker writes its own output atomically, so a killed build loses only unfinished documents.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from longdocvqa import __version__, history, isolate, pool, render
from longdocvqa.errors import ExternalServiceError, RecipeError, RejectedInput, StageError
from longdocvqa.fingerprint import content_hash, stage_fingerprint
from longdocvqa.layout import parse_layout
from longdocvqa.recipe import LayoutConfig, Recipe
from longdocvqa.records import LayoutDoc, PdfDoc, QARecord, Reject, Segment
from longdocvqa.segment import sample_segments
from longdocvqa.stages import plan as planning
from longdocvqa.store import RunDir, StageOutput, atomic_write_bytes, atomic_write_text
from longdocvqa.store import dump as store_dump

STAGE_VERSIONS = {"pool": 3, "layout": 3, "segment": 1, "generate": 1}  # pool 3, layout 3: text.clean
STAGE_ORDER = ("pool", "decontaminate", "plan", "layout", "segment", "generate", "assemble", "publish")
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
        variant = f"{self.cfg.dpi}-{self.cfg.format}-q{self.cfg.quality}-px{self.cfg.max_pixels}"
        return self.root / sha256[:2] / sha256 / variant / f"{page}.{_EXT[self.cfg.format]}"

    def get(self, doc: PdfDoc, page: int) -> bytes:
        """Bytes of 1-based `page` of `doc`, rendered once."""
        return self.get_many(doc, [page])[page]

    def get_many(self, doc: PdfDoc, pages: Sequence[int]) -> dict[int, bytes]:
        missing = [p for p in pages if not self.path(doc.sha256, p).is_file()]
        if missing:
            cfg = self.cfg
            rendered = render.render_pages(doc.path, missing, cfg.dpi, cfg.format, cfg.quality, cfg.max_pixels)
            for page, data in rendered.items():
                atomic_write_bytes(self.path(doc.sha256, page), data)
        return {p: self.path(doc.sha256, p).read_bytes() for p in pages}


def _holding_run_lock(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Hold OUT's lock for the whole build: a second build on the same folder fails at once (RunDirBusy)."""

    @functools.wraps(fn)
    def locked(recipe: Recipe, out_dir: str | Path, **options: Any) -> dict[str, Any]:
        check_recipe_files(recipe)
        with RunDir(out_dir).lock():
            manifest = fn(recipe, out_dir, **options)
        if not manifest.get("examples"):
            drops = ", ".join(f"{k}: {v}" for k, v in Counter(manifest.get("drops", {})).most_common(3)) or "none"
            raise StageError(
                f"publish: the build produced no examples (drops: {drops}); see {RunDir(out_dir).rejects_path}"
            )
        return manifest

    return locked


def check_recipe_files(recipe: Recipe) -> None:
    """Load the prompts and exemplars the recipe names, so a wrong prompt_version or a missing or garbage
    exemplars file stops the build before any work (RecipeError, exit 2), not as a reject per document."""
    from longdocvqa.qa import load_exemplars, load_prompt, task_strings
    from longdocvqa.records import OCR_TASKS

    pool.load_licences(recipe.pool.licences)  # a missing or malformed licence TSV is a recipe error too
    cfg = recipe.generate
    if cfg.generator.kind != "template":
        load_prompt("qa", cfg.prompt_version)
        task_strings(cfg.prompt_version)
        load_exemplars(cfg.exemplars)
        if cfg.verify.enabled:
            load_prompt("verify", cfg.prompt_version)
            load_prompt("judge", cfg.prompt_version)
    if recipe.layout.ocr == "vlm" or any(t in OCR_TASKS for t in cfg.tasks):
        load_prompt("ocr", cfg.prompt_version)


@_holding_run_lock
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
    started, started_at, started_epoch = time.perf_counter(), datetime.now(UTC), time.time()
    atomic_write_text(run.root / "recipe.lock.yaml", recipe.to_yaml())
    docs = run_pool(ctx)
    if limit is not None:
        docs = docs[:limit]
    docs, index = run_decontaminate(ctx, docs)
    segments, qas, layout_fp = run_planned(ctx, docs, index)
    assembled = run_assemble(ctx, docs, qas, layout_fp)
    if assembled is not None:
        run_publish(ctx, *assembled)
    manifest = _manifest(ctx, docs, segments, time.perf_counter() - started)
    run.write_rejects(ctx.rejects)
    _record_history(ctx, manifest, started_at, started_epoch)
    run.write_manifest(manifest)
    return manifest


def _record_history(ctx: BuildContext, manifest: dict[str, Any], started_at: datetime, started_epoch: float) -> None:
    """Append this build to OUT/runs.jsonl; the manifest gets the totals over every build of this run directory."""
    ledger, recipe = ctx.run.ledger_path, ctx.recipe
    record = history.run_record(
        started_at=started_at.isoformat(timespec="seconds"), finished_at=manifest["finished_at"],
        seconds=manifest["seconds"], manifest=manifest,
        calls=history.ledger_calls(ledger, recipe, since=started_epoch, until=time.time()),
    )  # fmt: skip
    history.append_run(ctx.run.root, record)
    manifest["started_at"] = record["started_at"]
    manifest["cumulative"] = history.cumulative(history.read_runs(ctx.run.root), history.ledger_calls(ledger, recipe))


def plan(recipe: Recipe, *, limit: int | None = None, workers: int = 1) -> Any:
    """What a build would produce, from the pool's page sizes alone (`build --dry-run`); writes nothing."""
    return plan_with_units(recipe, limit=limit, workers=workers)[0]


def plan_with_units(
    recipe: Recipe, *, limit: int | None = None, workers: int = 1
) -> tuple[Any, planning.Planner, planning.BuildPlan]:
    """`plan`, plus the plan stage's units over the pool (before decontamination): the model calls, prompt tokens
    and cost per task a build would spend (`build --dry-run`); writes nothing."""
    import tempfile

    from longdocvqa.assemble import plan as assembly_plan

    with tempfile.TemporaryDirectory(prefix="longdocvqa-plan-") as tmp:
        ctx = BuildContext(recipe=recipe, run=RunDir(tmp), workers=workers, progress=Progress())
        docs = run_pool(ctx)[:limit]
    per_doc = recipe.segment.per_document * recipe.generate.questions_per_segment
    planner = planning.Planner([planning.DocSize.from_doc(d) for d in docs], recipe)
    expected = assembly_plan(docs, recipe.assemble, render_dpi=recipe.render.dpi, qas_per_document=per_doc)
    return expected, planner, planner.initial()


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
    settings = cfg.model_dump(exclude={"paths", "allow_licences"})  # licences are filtered after the stage
    out = ctx.run.stage("pool", stage_fingerprint("pool", STAGE_VERSIONS["pool"], settings))
    with _timed(ctx, "pool") as stats:
        files, skipped = pool.discover_with_rejects(cfg.paths)
        for reject in skipped:  # unreadable folders, dangling links, link cycles: each gets its reject line
            _record_bad(ctx, stats, reject)
        keys = {f: pool.cache_key(f) for f in files}
        todo = [
            (str(f), keys[f], cfg.model_dump(), str(out.dir.parent.parent.parent))
            for f in files
            if not out.done(keys[f])
        ]
        stats.seen, stats.reused = len(files), len(files) - len(todo)
        _parallel(ctx, "pool", _pool_worker, todo, out.fingerprint)
        docs = _collect_pool(ctx, files, keys, out, stats)
    if not docs:
        _stop(ctx, _empty_pool_reason(cfg.paths, stats))
    return docs


def _empty_pool_reason(paths: list[str], stats: StageStats) -> str:
    where = ", ".join(paths)
    if not stats.seen:
        return f"pool: no PDF found in {where}"
    drops = ", ".join(f"{reason}: {n}" for reason, n in stats.dropped.most_common(3))
    return f"pool: none of the {stats.seen} files found in {where} is usable ({drops})"


def _stop(ctx: BuildContext, message: str) -> None:
    """Stop the build (exit 1) with `message`, keeping every finished stage output and the rejects so far."""
    ctx.run.write_rejects(ctx.rejects)
    raise StageError(message)


def _pool_worker(path: str, key: str, cfg: dict[str, Any], root: str, fingerprint: str) -> None:
    from longdocvqa.recipe import PoolConfig

    out = StageOutput(Path(root), "pool", fingerprint)
    try:
        out.write(key, pool.inspect_file(Path(path), PoolConfig.model_validate(cfg)))
    except RejectedInput as exc:
        out.write_reject(key, pool.pool_reject(Path(path), exc))
    except Exception as exc:  # a broken file must never stop the build
        reason = "too_big" if isolate.is_memory_error(exc) else "unreadable"
        out.write_reject(key, Reject(stage="pool", item=path, reason=reason, detail=_one_line(exc)))


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
    if not pool.licence_allowed(doc, cfg.allow_licences):
        return "licence_not_allowed"
    return None


def _filter_detail(doc: PdfDoc, kept: dict[str, PdfDoc], cfg: Any) -> str:
    if doc.sha256 in kept:
        return f"same bytes as {kept[doc.sha256].path}"
    if pool.in_page_range(doc, cfg):
        return f"licence {doc.licence or 'unknown'!r} is not in pool.allow_licences {cfg.allow_licences}"
    return f"{doc.num_pages} pages, outside {cfg.min_pages}-{cfg.max_pages}"


def _check_budget(ctx: BuildContext, stage: str, bad: int, seen: int) -> None:
    limit = ctx.recipe.pool.max_reject_rate
    if seen and bad / seen > limit:
        ctx.run.write_rejects(ctx.rejects)  # the message points there: write what was found so far
        raise StageError(
            f"{stage}: {bad} of {seen} inputs rejected ({bad / seen:.0%}), over max_reject_rate {limit:.0%}; "
            f"see {ctx.run.rejects_path}"
        )


# ---------------------------------------------------------------- decontaminate


def run_decontaminate(ctx: BuildContext, docs: list[PdfDoc]) -> tuple[list[PdfDoc], Any]:
    """Drop exact copies and near-duplicates of benchmark documents, and near-duplicates inside the pool."""
    cfg = ctx.recipe.decontaminate
    if not cfg.benchmarks and not cfg.within_pool:
        return docs, None
    from longdocvqa import dedup
    from longdocvqa.hub.benchmarks import build_benchmark_index

    cache = ctx.run.cache_dir / "decontaminate"
    by_sha = {d.sha256: d for d in docs}
    with _timed(ctx, "decontaminate") as stats, ctx.progress.stage("decontaminate", 1) as advance:
        index = build_benchmark_index(cfg, cache, render.page_texts, page_images=_thumbnails)
        unreadable: list[Reject] = []
        texts = [(d.sha256, functools.partial(_page_texts_or_reject, d, unreadable)) for d in docs]
        kept, rejects, report = dedup.check_documents(
            index, texts, cfg, cache, page_images=lambda sha: _thumbnails(Path(by_sha[sha].path))
        )
        for reject in unreadable:  # an empty cached entry would let the document through on the next run
            dedup.SignatureCache(cache, dedup.SignatureSettings.from_config(cfg)).forget(reject.item)
        bad = {r.item for r in unreadable}
        kept, rejects = set(kept) - bad, [*(r for r in rejects if r.item not in bad), *unreadable]
        stats.seen, stats.kept = len(docs), len(kept)
        for reject in rejects:
            ctx.rejects.append(reject)
            stats.dropped[reject.reason] += 1
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
                                 detail=f"{doc.path}: {_one_line(exc)}"))  # fmt: skip
        return []


def _thumbnails(path: Path) -> list[bytes]:
    """Small page images for perceptual hashes of image-only documents (50 DPI is plenty for a 64-bit dHash).

    A document MuPDF cannot render gets none (it is then compared by text only); layout and generation reject it."""
    try:
        count = len(render.page_texts(path))
        return list(render.render_pages(path, list(range(1, count + 1)), 50, "jpeg", 85).values())
    except Exception:
        return []


def run_question_overlap(ctx: BuildContext, qas: dict[str, list[QARecord]], index: Any) -> dict[str, list[QARecord]]:
    """Drop generated questions that share a 13-gram with a benchmark question or answer."""
    if index is None or not ctx.recipe.decontaminate.benchmarks:
        return qas
    from longdocvqa import dedup

    stats = ctx.stage_stats("decontaminate")
    pairs = [(qa.id, qa.question) for records in qas.values() for qa in records]
    rejects = dedup.question_overlaps(index, pairs)
    dropped = {r.item for r in rejects}
    for reject in rejects:
        ctx.rejects.append(reject)
        stats.dropped[reject.reason] += 1
    bench_rejects = [r for r in ctx.rejects if r.stage == "decontaminate"]
    stats.extra["report"] = dedup.decontamination_report(index, bench_rejects)
    return {sha: [qa for qa in records if qa.id not in dropped] for sha, records in qas.items()}


# ---------------------------------------------------------------- plan


def run_plan(ctx: BuildContext, docs: list[PdfDoc]) -> tuple[planning.Planner, planning.BuildPlan]:
    """Which (document, task) units the dataset needs, from page sizes alone; stored as OUT/plan.json and reused
    while recipe, seed and pool are unchanged."""
    with _timed(ctx, "plan") as stats, ctx.progress.stage("plan", 1) as advance:
        planner = planning.Planner([planning.DocSize.from_doc(d) for d in docs], ctx.recipe)
        stored = planning.load_plan(_plan_path(ctx), planner.key)
        build_plan = stored or planner.initial()
        if stored is None:
            atomic_write_text(_plan_path(ctx), build_plan.model_dump_json(indent=1))
        stats.reused = int(stored is not None)
        advance(1)
    return planner, build_plan


def _plan_path(ctx: BuildContext) -> Path:
    return ctx.run.root / "plan.json"


def run_planned(
    ctx: BuildContext, docs: list[PdfDoc], index: Any
) -> tuple[dict[str, list[Segment]], dict[str, list[QARecord]], str]:
    """Plan, then layout, segment and generate the planned units; when drops leave a stream of the mixture short,
    draw more units (top-up round) and run again over the larger plan, finished work reused."""
    from longdocvqa.llm import merge_usage

    planner, build_plan = run_plan(ctx, docs)
    mark, saved = len(ctx.rejects), copy.deepcopy(ctx.stats)
    usage: dict[str, Any] = {}  # model calls of the earlier rounds
    while True:
        planned = [d for d in docs if d.sha256 in build_plan.documents()]
        layout_fp = run_layout(ctx, planned)
        segments, segment_fp = run_segment(ctx, planned, layout_fp)
        qas = run_generate(ctx, planned, segments, layout_fp, segment_fp, tasks=build_plan.tasks_by_doc())
        qas = run_question_overlap(ctx, qas, index)
        more = _top_up(ctx, planner, build_plan, planned, qas, layout_fp)
        if not more:
            break
        build_plan.units += more
        atomic_write_text(_plan_path(ctx), build_plan.model_dump_json(indent=1))
        usage = merge_usage(usage, ctx.stats["generate"].extra.get("usage", {}))
        del ctx.rejects[mark:]  # the next round reports every planned document again
        ctx.stats = {**copy.deepcopy(saved), "plan": ctx.stats["plan"]}
    if usage:
        generate = ctx.stage_stats("generate")
        generate.extra["usage"] = merge_usage(usage, generate.extra.get("usage", {}))
    _finish_plan(ctx, planner, build_plan)
    return segments, qas, layout_fp


def _top_up(
    ctx: BuildContext, planner: planning.Planner, build_plan: planning.BuildPlan, docs: list[PdfDoc],
    qas: dict[str, list[QARecord]], layout_fp: str,
) -> list[planning.PlanUnit]:  # fmt: skip
    """The next round's units: [] when the assembly's sampling of these QAs meets budget and mixture, when the pool
    has no more units for the short streams, after plan.max_rounds rounds, or while endpoint errors are pending."""
    from longdocvqa.assemble import document_candidates
    from longdocvqa.tokens import TokenCounter

    cfg = ctx.recipe.assemble
    if cfg.budget_tokens is None or build_plan.rounds >= ctx.recipe.plan.max_rounds:
        return []
    if ctx.stage_stats("generate").extra.get("incomplete_documents"):
        return []  # calls failed at the endpoint are retried by the next run; drawing more now would pay twice
    with _timed(ctx, "plan"):
        counter = TokenCounter.load(
            cfg.tokenizer, cfg.min_pixels, cfg.max_pixels, render_max_pixels=ctx.recipe.render.max_pixels
        )
        records = [r for doc in docs for r in qas.get(doc.sha256, [])]
        candidates, _ = document_candidates(
            {d.sha256: d for d in docs}, records, lambda sha: _layout_or_fail(ctx, layout_fp, sha), cfg,
            render_dpi=ctx.recipe.render.dpi, seed=ctx.recipe.seed, counter=counter,
        )  # fmt: skip
        deficits = planning.dry_streams(candidates, planner)
        return planner.more(build_plan, deficits, build_plan.rounds + 1) if deficits else []


def _finish_plan(ctx: BuildContext, planner: planning.Planner, build_plan: planning.BuildPlan) -> None:
    """Reject lines for the pool documents the plan leaves out; predicted vs actual model calls per task."""
    stats = ctx.stage_stats("plan")
    for reject in planner.rejects(build_plan):
        ctx.rejects.append(reject)
        stats.dropped[reject.reason] += 1
    forecast = planner.forecast(build_plan)
    usage = ctx.stats["generate"].extra.get("usage", {}) if "generate" in ctx.stats else {}
    stats.seen, stats.kept = len(planner.docs), len(build_plan.documents())
    stats.extra.update(
        units=len(build_plan.units), rounds=build_plan.rounds, forecast=forecast,
        generate_everything_calls=planner.generate_everything_calls(),
        calls=planning.compare(forecast, planning.actual_usage(usage)),
    )  # fmt: skip


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
        reason = "too_big" if isolate.is_memory_error(exc) else "layout_failed"
        out.write_reject(sha, Reject(stage="layout", item=path, reason=reason, detail=_one_line(exc)))


def parse_document(path: str, sha: str, cfg: LayoutConfig) -> LayoutDoc:
    """Raw page content -> labelled layout for one PDF."""
    raw = render.raw_pages(path, find_tables=cfg.find_tables, layout_model=cfg.backend == "pymupdf-layout")
    return parse_layout(sha, raw, render.outline(path), cfg)


def load_layout(run: RunDir, fingerprint: str, sha: str) -> LayoutDoc | None:
    data = run.stage("layout", fingerprint).read(sha)
    return LayoutDoc.model_validate(data["ok"]) if "ok" in data else None


# ---------------------------------------------------------------- segment


def run_segment(ctx: BuildContext, docs: list[PdfDoc], layout_fp: str) -> tuple[dict[str, list[Segment]], str]:
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
    return result, fp


# ---------------------------------------------------------------- generate

# Endpoint settings that change how calls are made, not what they produce: left out of the fingerprint.
_HOW_NOT_WHAT = {
    "base_url",
    "base_url_env",
    "api_key_env",
    "timeout_s",
    "max_concurrency",
    "max_retries",
    "max_reply_mb",
}


def generate_fingerprint(recipe: Recipe, segment_fp: str) -> str:
    cfg = recipe.generate.model_dump(mode="json")
    cfg.pop("processes")  # how calls are spread over processes, not what they return
    for endpoint in (cfg["generator"]["endpoint"], (cfg["verify"].get("endpoint") or {})):
        for key in _HOW_NOT_WHAT:
            endpoint.pop(key, None)
    what = {"generate": cfg, "seed": recipe.seed, "render": recipe.render}
    return stage_fingerprint("generate", STAGE_VERSIONS["generate"], what, [segment_fp])


def run_generate(
    ctx: BuildContext, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str, segment_fp: str,
    tasks: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[QARecord]]:  # fmt: skip
    """QA for every segment and task (or each document's planned `tasks`); per-document results are stored under
    the document and its task subset, model calls go through the ledger (a task added later pays only its calls)."""
    out = ctx.run.stage("generate", generate_fingerprint(ctx.recipe, segment_fp))
    key = _unit_keys(ctx, docs, tasks)
    with _timed(ctx, "generate") as stats:
        todo = [d for d in docs if d.sha256 in segments and not out.done(key[d.sha256])]
        stats.seen = sum(1 for d in docs if d.sha256 in segments)
        stats.reused = stats.seen - len(todo)
        pending: dict[str, dict[str, Any]] = {}
        processes = min(ctx.recipe.generate.processes, len(todo))
        if processes > 1:
            usage = _generate_in_processes(ctx, todo, segments, layout_fp, out.fingerprint, pending, processes, tasks)
        else:
            usage = asyncio.run(_generate_all(ctx, todo, segments, layout_fp, out, pending, tasks)) if todo else {}
        result: dict[str, list[QARecord]] = {}
        for doc in docs:
            if doc.sha256 in segments:
                data = pending.get(doc.sha256) or out.read(key[doc.sha256])["ok"]
                result[doc.sha256] = [QARecord.model_validate(r) for r in data["records"]]
                for reject in data["rejects"]:
                    ctx.rejects.append(planning.name_document(Reject.model_validate(reject), doc.path))
                    stats.dropped[reject["reason"]] += 1
        records = [r for rs in result.values() for r in rs]
        stats.kept = len(records)
        stats.extra.update(qa=len(records), by_task=dict(sorted(Counter(r.task for r in records).items())))
        if usage:
            stats.extra["usage"] = usage
        if pending:
            stats.extra["incomplete_documents"] = len(pending)  # endpoint errors: retried on the next run
    _check_generate_budget(ctx, stats)
    return result


# Drops that say nothing about the endpoint: a repeated question, a page without text for an OCR task.
_NOT_FAILURES = {"duplicate", "duplicate_question", "no_text"}
# Calls that gave nothing usable: the endpoint failed, refused, hung, or answered with no parseable JSON. Semantic
# rejects (evidence, anchor, answer not on the page) are the model's quality, counted in the drops, not here.
_CALL_FAILURES = {"endpoint_error", "generate_failed", "reply_too_large", "truncated", "invalid_json",
                  "schema_violation", "bad_response_body"}  # fmt: skip


def _check_generate_budget(ctx: BuildContext, stats: StageStats) -> None:
    """Stop (exit 1) when more questions failed than max_reject_rate allows, naming the most common failure."""
    if ctx.recipe.generate.generator.kind == "template":
        return
    failures = Counter({k: v for k, v in stats.dropped.items() if k in _CALL_FAILURES or k.startswith("http_")})
    asked = stats.kept + sum(v for k, v in stats.dropped.items() if k not in _NOT_FAILURES)
    failed = sum(failures.values())
    limit = ctx.recipe.pool.max_reject_rate
    if not asked or failed / asked <= limit:
        return
    reason, count = failures.most_common(1)[0]
    example = next((r.detail for r in reversed(ctx.rejects) if r.stage == "generate" and r.reason == reason), "")
    example = " ".join(example.split())  # one line, whatever the server said
    _stop(ctx, f"generate: {failed} of {asked} questions failed ({failed / asked:.0%}), over max_reject_rate "
               f"{limit:.0%}; most common: {reason} ({count}): {example[:200]}; finished documents are kept, "
               f"see {ctx.run.rejects_path}")  # fmt: skip


def _unit_keys(ctx: BuildContext, docs: list[PdfDoc], tasks: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    every = ctx.recipe.generate.tasks
    return {d.sha256: planning.unit_key(d.sha256, None if tasks is None else tasks.get(d.sha256), every) for d in docs}


async def _generate_all(
    ctx: BuildContext,
    docs: list[PdfDoc],
    segments: dict[str, list[Segment]],
    layout_fp: str,
    out: StageOutput,
    pending: dict[str, dict[str, Any]],
    tasks: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    from longdocvqa.qa import open_clients

    cfg = ctx.recipe.generate
    client, verifier = open_clients(cfg, str(ctx.run.ledger_path))
    images = PageImages(ctx.run.cache_dir, ctx.recipe)
    limit = asyncio.Semaphore(max(4, cfg.generator.endpoint.max_concurrency))
    key = _unit_keys(ctx, docs, tasks)
    try:
        with ctx.progress.stage("generate", len(docs)) as advance:

            async def one(doc: PdfDoc) -> None:
                async with limit:
                    result = await _within_time_limit(ctx, doc, _generate_document(
                        ctx, doc, segments[doc.sha256], layout_fp, client, verifier, images,
                        None if tasks is None else tasks.get(doc.sha256),
                    ))  # fmt: skip
                if result is not None and _complete(result):
                    out.write(key[doc.sha256], result)
                elif result is not None:
                    pending[doc.sha256] = json.loads(json.dumps(store_dump(result)))
                advance(1)

            await asyncio.gather(*(one(doc) for doc in docs))
        if client is None:
            return {}
        return {"generator": client.usage(), **({"verifier": verifier.usage()} if verifier else {})}
    finally:
        for c in (client, verifier):
            if c is not None:
                await c.aclose()


async def _within_time_limit(
    ctx: BuildContext, doc: PdfDoc, work: Awaitable[dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Await one document's generation for at most isolation.seconds_per_document (0: no limit); past it the
    document is rejected `timeout` and not stored as done, so the next run retries it (finished calls are ledgered)."""
    seconds = ctx.recipe.isolation.seconds_per_document
    if not seconds:
        return await work
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        detail = f"generation took over {seconds:g} s (isolation.seconds_per_document); retried on the next run"
        return {"records": [], "rejects": [Reject(stage="generate", item=doc.path, reason="timeout", detail=detail)]}


def _generate_in_processes(
    ctx: BuildContext, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str,
    generate_fp: str, pending: dict[str, dict[str, Any]], processes: int,
    tasks: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """_generate_all over `processes` worker processes, each with 1/processes of the documents and of the
    endpoint's concurrency; one client process tops out near 300 requests/s of its own CPU (2 cores)."""
    import multiprocessing

    from longdocvqa.llm import Ledger, merge_usage

    Ledger(ctx.run.ledger_path).close()  # create it and switch it to WAL once, before several processes open it
    recipe = _concurrency_share(ctx.recipe, processes)
    shards = [docs[i::processes] for i in range(processes)]
    done: Any = multiprocessing.get_context().Queue()
    usage: dict[str, Any] = {}
    with ctx.progress.stage("generate", len(docs)) as advance:
        init = (done, os.getpid())
        executor = ProcessPoolExecutor(processes, initializer=_generate_worker_init, initargs=init)
        with executor, isolate.interrupt_kills(executor):
            futures = [
                executor.submit(
                    _generate_shard,
                    recipe,
                    str(ctx.run.root),
                    shard,
                    {d.sha256: segments[d.sha256] for d in shard},
                    layout_fp,
                    generate_fp,
                    None if tasks is None else {d.sha256: list(tasks.get(d.sha256, [])) for d in shard},
                )
                for shard in shards
            ]
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, timeout=0.2, return_when=FIRST_COMPLETED)
                while not done.empty():
                    advance(done.get())
                for future in finished:
                    shard_usage, shard_pending = future.result()  # re-raises ExternalServiceError: stop the build
                    usage = merge_usage(usage, shard_usage)
                    pending.update(shard_pending)
    return usage


def _concurrency_share(recipe: Recipe, processes: int) -> Recipe:
    """The recipe as one of `processes` workers sees it: 1/processes of each endpoint's max_concurrency."""
    data = recipe.model_dump(mode="json")
    for endpoint in (data["generate"]["generator"]["endpoint"], data["generate"]["verify"].get("endpoint")):
        if endpoint:
            endpoint["max_concurrency"] = -(-endpoint["max_concurrency"] // processes)
    return Recipe.model_validate(data)


_WORKER_DONE: Any = None  # the parent's queue of finished-document counts, set in each generate worker


def _generate_worker_init(done: Any, parent_pid: int) -> None:
    global _WORKER_DONE
    isolate.die_with_parent(parent_pid)
    _WORKER_DONE = done


class _QueueProgress(Progress):
    """A worker's progress: document counts go to the parent's bar through the queue."""

    def stage(self, name: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda n=1: _WORKER_DONE.put(n))


def _generate_shard(
    recipe: Recipe, run_root: str, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str,
    generate_fp: str, tasks: dict[str, list[str]] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:  # fmt: skip
    """One worker's documents: (usage, incomplete documents); finished documents are stored as they finish."""
    ctx = BuildContext(recipe=recipe, run=RunDir(run_root), workers=1, progress=_QueueProgress())
    pending: dict[str, dict[str, Any]] = {}
    out = ctx.run.stage("generate", generate_fp)
    usage = asyncio.run(_generate_all(ctx, docs, segments, layout_fp, out, pending, tasks))
    return usage, pending


def _complete(result: dict[str, Any]) -> bool:
    """A document whose calls failed at the endpoint is not stored as done: the next run retries those calls."""
    return not any(r.reason in _RETRY_NEXT_RUN for r in result["rejects"])


_RETRY_NEXT_RUN = {"endpoint_error", "generate_failed", "reply_too_large", "timeout"}  # raise max_reply_mb and rerun


async def _generate_document(
    ctx: BuildContext, doc: PdfDoc, segs: list[Segment], layout_fp: str,
    client: Any, verifier: Any, images: PageImages, tasks: Sequence[str] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    from longdocvqa.qa import generate_document

    cfg = ctx.recipe.generate
    if tasks is not None:  # the plan's tasks for this document only
        cfg = cfg.model_copy(update={"tasks": [t for t in cfg.tasks if t in tasks]})
    layout = load_layout(ctx.run, layout_fp, doc.sha256)
    if layout is None:
        return None
    ocr_rejects: list[Reject] = []
    needs_images = cfg.generator.kind != "template" and cfg.input_mode != "text"
    try:
        if ctx.recipe.layout.ocr == "vlm" and client is not None and any(p.image_only for p in layout.pages):
            layout, segs, ocr_rejects = await _ocr_image_pages(ctx, doc, layout, segs, layout_fp, client, images)
        if needs_images:  # render the segments' pages off the event loop, once, into the page cache
            pages = sorted({p for seg in segs for p in seg.pages})
            await asyncio.to_thread(images.get_many, doc, pages)
    except ExternalServiceError:
        raise
    except Exception as exc:  # MuPDF cannot render a page (or memory runs out): reject this document only
        reason = "too_big" if isolate.is_memory_error(exc) else "render_failed"
        return {"records": [], "rejects": [Reject(stage="generate", item=doc.path, reason=reason,
                                                  detail=_one_line(exc))]}  # fmt: skip
    page_image = (lambda i: images.get(doc, i)) if needs_images else None
    try:
        records, rejects = await generate_document(
            doc, layout, segs, cfg, ctx.recipe.seed, client, page_image, verifier=verifier
        )
    except (ExternalServiceError, RecipeError):
        raise  # the endpoint is down beyond the retry budget, or the recipe is wrong: stop; finished work is kept
    except Exception as exc:  # a failure on one document is recorded, never fatal to the build
        reject = Reject(stage="generate", item=doc.path, reason="generate_failed", detail=_one_line(exc))
        records, rejects = [], [reject]
    return {"records": records, "rejects": ocr_rejects + rejects}


def ocr_fingerprint(recipe: Recipe, layout_fp: str) -> str:
    what = {"model": recipe.generate.generator.endpoint.model, "max_pixels": recipe.generate.max_pixels}
    return stage_fingerprint("layout-ocr", 1, what, [layout_fp])


async def _ocr_image_pages(
    ctx: BuildContext, doc: PdfDoc, layout: LayoutDoc, segs: list[Segment], layout_fp: str,
    client: Any, images: PageImages,
) -> tuple[LayoutDoc, list[Segment], list[Reject]]:  # fmt: skip
    """Fill scanned pages' blocks with a VLM transcription (through the ledger) and store the completed layout."""
    from longdocvqa.qa import transcribe_page

    rejects = []
    scanned = [p for p in layout.pages if p.image_only]
    pictures = await asyncio.to_thread(images.get_many, doc, [p.index for p in scanned])
    for page in scanned:
        size = (page.width_pt, page.height_pt)
        blocks, reject = await transcribe_page(
            client, pictures[page.index], page.index, size, max_pixels=ctx.recipe.generate.max_pixels
        )
        if reject is not None:
            rejects.append(reject.model_copy(update={"item": f"{doc.path} {reject.item}"}))
        page.blocks = [*blocks, *(b for b in page.blocks if b.label == "figure")]
    ctx.run.stage("layout-ocr", ocr_fingerprint(ctx.recipe, layout_fp)).write(doc.sha256, layout)
    texts = [seg.model_copy(update={"page_texts": [layout.page_text(p) for p in seg.pages]}) for seg in segs]
    return layout, texts, rejects


# ---------------------------------------------------------------- assemble


def run_assemble(
    ctx: BuildContext, docs: list[PdfDoc], qas: dict[str, list[QARecord]], layout_fp: str
) -> tuple[Any, Path] | None:
    """Full-document examples with exact lengths, window, distribution, mixture and budget (cheap: no images).

    Returns None when the same inputs were already assembled and published (nothing to do)."""
    from longdocvqa.assemble import assemble
    from longdocvqa.tokens import TokenCounter

    cfg = ctx.recipe.assemble
    qa_ids = sorted(r.id for rs in qas.values() for r in rs)
    inputs = {"assemble": cfg, "seed": ctx.recipe.seed, "dpi": ctx.recipe.render.dpi, "layout": layout_fp,
              "render_max_pixels": ctx.recipe.render.max_pixels,
              "docs": sorted(d.sha256 for d in docs), "qa": qa_ids}  # fmt: skip
    done = ctx.run.root / "stages" / "assemble" / f"{content_hash(inputs, length=16)}.json"
    if _reuse_assembly(ctx, done):
        return None
    with _timed(ctx, "assemble") as stats, ctx.progress.stage("assemble", 1) as advance:
        from longdocvqa.hub.load import fetch_tokenizer_json

        counter = TokenCounter.load(
            cfg.tokenizer, cfg.min_pixels, cfg.max_pixels, fetch=fetch_tokenizer_json,
            render_max_pixels=ctx.recipe.render.max_pixels,
        )  # fmt: skip
        stats.extra["tokenizer_source"] = counter.source
        short_rows = _load_short_rows(ctx.recipe) if cfg.short_data.share > 0 else None
        records = [r for doc in docs for r in qas.get(doc.sha256, [])]
        result = assemble(
            {d.sha256: d for d in docs}, records, lambda sha: _layout_or_fail(ctx, layout_fp, sha), cfg,
            render_dpi=ctx.recipe.render.dpi, seed=ctx.recipe.seed, counter=counter, short_rows=short_rows,
        )  # fmt: skip
        stats.seen, stats.kept = len(records), result.stats.examples
        _account_assembly(result, records, docs, cfg)
        for reject in result.rejects:
            ctx.rejects.append(reject)
            stats.dropped[reject.reason] += 1
        stats.extra["summary"] = result.stats.model_dump(mode="json", exclude={"length_histogram", "pages_histogram"})
        advance(1)
    return result, done


def _account_assembly(result: Any, records: list[QARecord], docs: list[PdfDoc], cfg: Any) -> None:
    """Name each rejected QA's document by its file, and add a line for every QA the sampling left out."""
    paths = {d.sha256: d.path for d in docs}
    doc_of = {qa.id: paths[qa.doc_sha256] for qa in records if qa.doc_sha256 in paths}
    rejected = [r.item for r in result.rejects]
    result.rejects[:] = [planning.name_document(r, doc_of[r.item]) if r.item in doc_of else r for r in result.rejects]
    picked = [p.qa.id for p in result.picks if p.qa is not None]
    result.rejects.extend(planning.unpicked_rejects(records, picked, rejected, cfg.mixture, paths))


def _reuse_assembly(ctx: BuildContext, done: Path) -> bool:
    """Restore the stats of an assembly whose dataset was already published from the same inputs."""
    if not done.is_file():
        return False
    saved = json.loads(done.read_text(encoding="utf-8"))
    publish_marker = ctx.run.root / "stages" / "publish" / f"{saved['publish_fp']}.done"
    if not publish_marker.is_file() or not (ctx.run.dataset_dir / "README.md").is_file():
        return False
    if saved.get("publish_key") != publish_key(ctx.recipe):
        return False  # published under other settings (version, licence, shard size, card text...): publish again
    for name in ("assemble", "publish"):
        stats = ctx.stage_stats(name)
        stats.seen, stats.kept, stats.reused = saved[name]["seen"], saved[name]["kept"], saved[name]["seen"]
        stats.extra.update(saved[name]["extra"])
    for reject in saved["rejects"]:
        ctx.rejects.append(Reject.model_validate(reject))
        ctx.stats["assemble" if reject["stage"] == "assemble" else "publish"].dropped[reject["reason"]] += 1
    return True


def _save_assembly(ctx: BuildContext, done: Path, publish_fp: str, rejects: list[Reject]) -> None:
    stages = {name: {"seen": ctx.stats[name].seen, "kept": ctx.stats[name].kept, "extra": ctx.stats[name].extra}
              for name in ("assemble", "publish")}  # fmt: skip
    payload = {
        "publish_fp": publish_fp,
        "publish_key": publish_key(ctx.recipe),
        "rejects": [r.model_dump(mode="json") for r in rejects],
        **stages,
    }
    atomic_write_text(done, json.dumps(payload, sort_keys=True))


def _layout_or_fail(ctx: BuildContext, layout_fp: str, sha: str) -> LayoutDoc:
    ocr = ctx.run.stage("layout-ocr", ocr_fingerprint(ctx.recipe, layout_fp))
    if ocr.done(sha):
        return LayoutDoc.model_validate(ocr.read(sha)["ok"])
    layout = load_layout(ctx.run, layout_fp, sha)
    if layout is None:
        raise StageError(f"assemble: no layout stored for document {sha}")
    return layout


def _load_short_rows(recipe: Recipe) -> Any:
    from longdocvqa.hub.load import load_short_rows

    return load_short_rows(recipe.assemble.short_data)


# ---------------------------------------------------------------- publish


def run_publish(ctx: BuildContext, assembly: Any, done: Path) -> None:
    """Write OUT/dataset/ (Parquet shards with embedded page images, card, plots), unless already written."""
    from longdocvqa.hub.card import BuildReport
    from longdocvqa.hub.publish import write_dataset

    picks = [(p.id, p.doc_id, p.short_index) for p in assembly.picks]
    fp = content_hash({"recipe": publish_key(ctx.recipe), "picks": picks, "v": 1}, length=16)
    marker = ctx.run.root / "stages" / "publish" / f"{fp}.done"
    with _timed(ctx, "publish") as stats:
        stats.seen = len(picks)
        if marker.is_file() and (ctx.run.dataset_dir / "README.md").is_file():
            stats.reused = stats.kept = len(picks)
            _save_assembly(ctx, done, fp, list(assembly.rejects))
            return
        images = PageImages(ctx.run.cache_dir, ctx.recipe)
        from longdocvqa.assemble import write_histograms

        plots = write_histograms(assembly.stats, ctx.run.root / "plots")
        decontamination = ctx.stats.get("decontaminate", StageStats()).extra.get("report", {})
        report = BuildReport(
            drops_by_reason=_drops(ctx.rejects), decontamination=decontamination,
            generator=_generator_name(ctx.recipe),
            length_histogram_png=plots["length"], pages_histogram_png=plots["pages"],
            **_what_ran(ctx.recipe),
        )  # fmt: skip
        with ctx.progress.stage("publish", len(picks)) as advance:
            summary = write_dataset(
                ctx.run.dataset_dir, ctx.recipe, assembly.documents(), assembly.qa_rows(),
                _advancing(assembly.examples(), advance), _publish_pages(images, assembly),
                build=report, short_images=_short_images(assembly),
            )  # fmt: skip
        for reject in summary.rejects:
            ctx.rejects.append(reject)
            stats.dropped[reject.reason] += 1
        stats.kept = sum(summary.counts["sft"].values())
        stats.extra["rows"] = summary.counts
        atomic_write_text(marker, fp + "\n")
    _save_assembly(ctx, done, fp, [*assembly.rejects, *summary.rejects])


def publish_key(recipe: Recipe) -> str:
    """What the published bytes and card depend on besides the picks: the whole resolved recipe (version,
    licence, shard size, names, descriptions...) and the longdocvqa version that writes them."""
    return content_hash({"recipe": recipe.fingerprint(), "longdocvqa": __version__}, length=16)


def _advancing(items: Iterable[Any], advance: Callable[[int], None]) -> Iterable[Any]:
    for item in items:
        yield item
        advance(1)


def _doc(assembly: Any, sha: str) -> PdfDoc:
    return assembly.docs[sha]


def _publish_pages(images: PageImages, assembly: Any) -> Callable[[str, int], bytes]:
    """publish's page_image: a page MuPDF cannot render (or that runs out of memory) raises RejectedInput naming the
    file and the cause, so write_dataset skips that example with a reject; a failed document is not tried again."""
    failed: dict[str, RejectedInput] = {}

    def page_image(sha: str, page: int) -> bytes:
        doc = _doc(assembly, sha)
        if sha not in failed:
            try:
                return images.get(doc, page)
            except Exception as exc:
                reason = "too_big" if isolate.is_memory_error(exc) else "render_failed"
                failed[sha] = RejectedInput(reason, f"{doc.path} page {page}: {_one_line(exc)}")
        raise RejectedInput(failed[sha].reason, failed[sha].detail)

    return page_image


def _short_images(assembly: Any) -> Callable[[int], list[bytes]] | None:
    rows = assembly.short_rows
    if rows is None:
        return None
    from longdocvqa.hub.load import short_row_images

    return lambda index: short_row_images(rows[index])


def _what_ran(recipe: Recipe) -> dict[str, Any]:
    """The card's account of generation, verification and decontamination, from the settings this build ran."""
    from longdocvqa.qa import TEMPLATE_PROMPT_VERSION

    gen, verify = recipe.generate.generator, recipe.generate.verify
    return {
        "generator_kind": gen.kind,
        "prompt_version": TEMPLATE_PROMPT_VERSION if gen.kind == "template" else recipe.generate.prompt_version,
        "verifier": (verify.endpoint or gen.endpoint).model if verify.enabled and gen.kind != "template" else None,
        "benchmarks": [b.name for b in recipe.decontaminate.benchmarks],
        "within_pool": recipe.decontaminate.within_pool,
    }


def _generator_name(recipe: Recipe) -> str:
    gen = recipe.generate.generator
    return "template-baseline (offline, from the layout)" if gen.kind == "template" else gen.endpoint.model


def _drops(rejects: Iterable[Reject]) -> dict[str, int]:
    return dict(sorted(Counter(f"{r.stage}/{r.reason}" for r in rejects).items()))


# ---------------------------------------------------------------- helpers


def _parallel(
    ctx: BuildContext, name: str, fn: Callable[..., None], jobs: list[tuple[Any, ...]], fingerprint: str
) -> None:
    """Run `fn(*job, fingerprint)` for each job, each in its own process under the recipe's per-document limits.

    Each job writes its own output; a job that overruns its time or memory, or whose process dies, gets a reject
    (job[0] is the file, job[1] its key) and the other jobs go on."""
    cfg = ctx.recipe.isolation
    limits = isolate.Limits(seconds=cfg.seconds_per_document, memory_mb=cfg.memory_mb_per_document)
    out = ctx.run.stage(name, fingerprint)

    def failed(job: tuple[Any, ...], reason: str, detail: str) -> None:
        out.write_reject(job[1], Reject(stage=name, item=str(job[0]), reason=reason, detail=detail))

    if jobs:
        render.preload()  # forked workers inherit the import
    with ctx.progress.stage(name, len(jobs)) as advance:
        isolate.run_isolated(
            fn, [(*job, fingerprint) for job in jobs], workers=ctx.workers, limits=limits, on_failure=failed,
            advance=advance,
        )  # fmt: skip


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


def _manifest(
    ctx: BuildContext, docs: Iterable[PdfDoc], segments: dict[str, list[Segment]], seconds: float
) -> dict[str, Any]:
    return {
        "name": ctx.recipe.name,
        "version": ctx.recipe.version,
        "recipe_fingerprint": ctx.recipe.fingerprint(),
        "longdocvqa_version": __version__,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "documents": len(list(docs)),
        "segments": sum(len(s) for s in segments.values()),
        "examples": ctx.stats["assemble"].kept if "assemble" in ctx.stats else 0,
        "stages": {name: stats.as_dict() for name, stats in ctx.stats.items()},
        "drops": _drops(ctx.rejects),
    }
