"""Wires the stages: pool -> decontaminate -> plan -> layout -> segment -> generate -> assemble -> publish.

Each stage function returns a `StageResult` (runner/loop.py): its outputs, stats and reject lines; this module
passes each stage's outputs to the next, so no stage reads another's stats or rejects. The plan (stages/plan.py)
picks, from page sizes alone, the (document, task) units the dataset needs; layout, segment, generate and the
question check run only for those, one round at a time (`_rounds`), with a top-up round when drops leave a stream of
the mixture short. Each round runs on a fork of the build's account; the last round's is kept. Each stage lives in
stages/, its rules in the domain folders; the per-document loop, resume and error budgets in runner/loop.py; how
jobs run in runner/local.py and runner/ray.py. This module holds the build's lock and recipe check (once, here),
its order of stages, the dry-run entry, the manifest and the run history.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from longdocvqa import __version__
from longdocvqa.assembly import planning
from longdocvqa.assembly.stats import AssemblyPlan, estimate_assembly
from longdocvqa.audit.report import saved_summary
from longdocvqa.core import history, rundir
from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import OCR_TASKS, PdfDoc, Segment
from longdocvqa.core.store import RunDir, atomic_write_text
from longdocvqa.documents import pool
from longdocvqa.generate import load_prompt, make_generator
from longdocvqa.runner.executor import ClientPool, Executor, HostsClients
from longdocvqa.runner.loop import BuildContext, Progress, StageResult
from longdocvqa.stages.assemble import assemble_key, run_assemble
from longdocvqa.stages.decontaminate import Checked, Decontaminated, run_decontaminate, run_question_overlap
from longdocvqa.stages.generate import Generated, run_generate
from longdocvqa.stages.layout import LaidOut, run_layout
from longdocvqa.stages.plan import extend_plan, finish_plan, planner_for, run_plan, top_up
from longdocvqa.stages.pool import run_pool
from longdocvqa.stages.publish import restore_published, run_publish
from longdocvqa.stages.segment import Segmented, run_segment

STAGE_ORDER = ("pool", "decontaminate", "plan", "layout", "segment", "generate", "assemble", "publish")


def _holding_run_lock(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Hold OUT's lock for the whole build: a second build on the same folder fails at once (RunDirBusy)."""

    @functools.wraps(fn)
    def locked(recipe: Recipe, out_dir: str | Path, **options: Any) -> dict[str, Any]:
        check_recipe_files(recipe)
        rundir.claim(Path(out_dir))  # never a foreign folder (the CLI claims first, with --force when given)
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
    clients: ClientPool | None = None,
) -> dict[str, Any]:
    """Run every stage of `recipe` into `out_dir`, reusing finished work; return the manifest. `executor` runs the
    per-document jobs (default: this machine's processes; runner/ray.py: a Ray cluster), `clients` generation's
    client workers (default: this machine, or the executor's when it hosts them: Ray actors); neither changes what
    is written."""
    run = RunDir(out_dir)
    ctx = BuildContext(recipe=recipe, run=run, workers=workers or os.cpu_count() or 1, progress=progress or Progress())
    ctx.executor = executor
    ctx.clients = clients if clients is not None or not isinstance(executor, HostsClients) else executor.client_pool()
    started, started_at, started_epoch = time.perf_counter(), datetime.now(UTC), time.time()
    atomic_write_text(run.recipe_lock_path, recipe.to_yaml())
    pooled = run_pool(ctx).outputs
    decontaminated = run_decontaminate(ctx, pooled[:limit] if limit is not None else pooled)
    docs = decontaminated.outputs.docs
    final = _rounds(ctx, docs, decontaminated)
    layouts, qas = final.layout.outputs.layouts, final.checked.outputs.qas
    key = assemble_key(ctx, docs, qas, layouts)
    if not restore_published(ctx, key):  # the same inputs were already assembled and published: nothing to do
        assembled = run_assemble(ctx, docs, qas, layouts)
        run_publish(ctx, assembled, key, final.checked.outputs.report, ctx.drops_by_reason())
    manifest = _manifest(ctx, docs, final.segment.outputs.segments, time.perf_counter() - started)
    run.write_rejects(ctx.rejects)
    _record_history(ctx, manifest, started_at, started_epoch)
    run.write_manifest(manifest)
    return manifest


@dataclass(frozen=True)
class Round:
    """One round of the plan: the planned documents through layout, segment, generate and the question check."""

    layout: StageResult[LaidOut]
    segment: StageResult[Segmented]
    generate: StageResult[Generated]
    checked: StageResult[Checked]


def _rounds(ctx: BuildContext, docs: list[PdfDoc], decontaminated: StageResult[Decontaminated]) -> Round:
    """Plan, then run the planned units; while drops leave a stream of the mixture short, draw more units and run a
    round over the larger plan (finished work reused). Each round records into its own fork of the build's
    account; the last round's is kept, with the model usage of every round."""
    plan = run_plan(ctx, docs).outputs
    usage: dict[str, Any] = {}  # model calls of the earlier rounds
    while True:
        round_ctx, planned = ctx.fork(), plan.documents(docs)
        laid_out = run_layout(round_ctx, planned)
        segmented = run_segment(round_ctx, planned, laid_out.outputs)
        generated = run_generate(round_ctx, planned, segmented.outputs, laid_out.outputs.layouts,
                                 tasks=plan.units.tasks_by_doc(), earlier_usage=usage)  # fmt: skip
        checked = run_question_overlap(round_ctx, generated.outputs.qas, planned, decontaminated)
        more = top_up(ctx, plan, planned, checked.outputs.qas, laid_out.outputs.layouts,
                      generated.outputs.incomplete_documents)  # fmt: skip
        if not more:
            break
        extend_plan(ctx, plan, more)
        usage = generated.outputs.usage
    ctx.absorb(round_ctx)
    finish_plan(ctx, plan, generated.outputs.usage)
    return Round(laid_out, segmented, generated, checked)


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
        docs = run_pool(ctx).outputs[:limit]
    per_doc = recipe.segment.per_document * recipe.generate.questions_per_segment
    planner = planner_for(docs, recipe)
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
        "drops": ctx.drops_by_reason(),
        "audit": saved_summary(ctx.run.root),  # the last `longdocvqa audit --report`, kept across builds
    }
