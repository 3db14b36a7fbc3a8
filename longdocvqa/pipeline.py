"""Wires the stages: pool -> decontaminate -> plan -> layout -> segment -> generate -> assemble -> publish.

The plan (stages/plan.py) picks, from page sizes alone, the (document, task) units the dataset needs; layout,
segment and generate run only for those, with top-up rounds when drops leave a stream of the mixture short
(stages/plan_rounds.py). Each stage lives in stages/; the per-document loop, resume and error budgets in runner.py;
how jobs run in executors/. This module holds the build's lock, its order of stages, the dry-run entry, the
manifest and the run history.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from longdocvqa import __version__
from longdocvqa.assembly.stats import AssemblyPlan, estimate_assembly
from longdocvqa.audit.report import saved_summary
from longdocvqa.core import history
from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import OCR_TASKS, PdfDoc, Segment
from longdocvqa.core.store import RunDir, atomic_write_text
from longdocvqa.documents import pool
from longdocvqa.generate import load_prompt, make_generator
from longdocvqa.runner.executor import Executor
from longdocvqa.runner.loop import BuildContext, Progress
from longdocvqa.stages import plan as planning
from longdocvqa.stages.assemble import run_assemble
from longdocvqa.stages.decontaminate import run_decontaminate
from longdocvqa.stages.plan_rounds import run_planned
from longdocvqa.stages.pool import run_pool
from longdocvqa.stages.publish import drops_by_reason, run_publish

STAGE_ORDER = ("pool", "decontaminate", "plan", "layout", "segment", "generate", "assemble", "publish")


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
    pool.load_licences(recipe.pool.licences)  # a missing or malformed licence TSV is a recipe error too
    cfg = recipe.generate
    make_generator(cfg).check_prompts()
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
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run every stage of `recipe` into `out_dir`, reusing finished work; return the manifest. `executor` runs the
    per-document jobs (default: this machine's processes; executors/ray.py: a Ray cluster); it never changes what
    is written."""
    run = RunDir(out_dir)
    ctx = BuildContext(recipe=recipe, run=run, workers=workers or os.cpu_count() or 1, progress=progress or Progress())
    ctx.executor = executor
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


def plan_with_units(
    recipe: Recipe, *, limit: int | None = None, workers: int = 1
) -> tuple[AssemblyPlan, planning.Planner, planning.BuildPlan]:
    """What a build would produce, from the pool's page sizes alone, plus the plan stage's units over the pool
    (before decontamination): the model calls, prompt tokens and cost per task (`build --dry-run`); writes nothing."""
    with tempfile.TemporaryDirectory(prefix="longdocvqa-plan-") as tmp:
        ctx = BuildContext(recipe=recipe, run=RunDir(tmp), workers=workers, progress=Progress())
        docs = run_pool(ctx)[:limit]
    per_doc = recipe.segment.per_document * recipe.generate.questions_per_segment
    planner = planning.Planner([planning.DocSize.from_doc(d) for d in docs], recipe)
    expected = estimate_assembly(docs, recipe.assemble, render_dpi=recipe.render.dpi, qas_per_document=per_doc)
    return expected, planner, planner.initial()


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
        "drops": drops_by_reason(ctx.rejects),
        "audit": saved_summary(ctx.run.root),  # the last `longdocvqa audit --report`, kept across builds
    }
