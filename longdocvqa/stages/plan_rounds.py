"""The plan stage's rounds: plan, then layout, segment and generate only the planned units, with top-up rounds.

`run_plan` picks the (document, task) units from page sizes alone (stages/plan.py) and stores them as
OUT/plan.json; `run_planned` runs layout, segment, generate and the question-overlap check over the planned
documents, and when drops leave a stream of the mixture short, draws more units and runs again over the larger plan,
finished work reused. Does not own: the planning rules (stages/plan.py) or what each stage computes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from longdocvqa.assembly.assemble import document_candidates
from longdocvqa.assembly.tokens import TokenCounter
from longdocvqa.core.records import PdfDoc, QARecord, Segment
from longdocvqa.core.store import atomic_write_text
from longdocvqa.decontamination import dedup
from longdocvqa.generate.quality import usage_split
from longdocvqa.llm import merge_usage
from longdocvqa.runner.loop import BuildContext, record_rejects, timed
from longdocvqa.stages import plan as planning
from longdocvqa.stages.decontaminate import run_question_overlap
from longdocvqa.stages.generate import run_generate
from longdocvqa.stages.layout import layout_or_fail, run_layout
from longdocvqa.stages.segment import run_segment


def run_plan(ctx: BuildContext, docs: list[PdfDoc]) -> tuple[planning.Planner, planning.BuildPlan]:
    """Which (document, task) units the dataset needs, from page sizes alone; stored as OUT/plan.json and reused
    while recipe, seed and pool are unchanged."""
    with timed(ctx, "plan") as stats, ctx.progress.stage("plan", 1) as advance:
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
    ctx: BuildContext, docs: list[PdfDoc], index: dedup.BenchmarkIndex | None
) -> tuple[dict[str, list[Segment]], dict[str, list[QARecord]], str]:
    """Plan, then layout, segment and generate the planned units; when drops leave a stream of the mixture short,
    draw more units (top-up round) and run again over the larger plan, finished work reused."""
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
        generate.extra["calls_by_role"] = usage_split(generate.extra["usage"])  # every round's calls, by role
    _finish_plan(ctx, planner, build_plan)
    return segments, qas, layout_fp


def _top_up(
    ctx: BuildContext, planner: planning.Planner, build_plan: planning.BuildPlan, docs: list[PdfDoc],
    qas: dict[str, list[QARecord]], layout_fp: str,
) -> list[planning.PlanUnit]:  # fmt: skip
    """The next round's units: [] when the assembly's sampling of these QAs meets budget and mixture, when the pool
    has no more units for the short streams, after plan.max_rounds rounds, or while endpoint errors are pending."""
    cfg = ctx.recipe.assemble
    if cfg.budget_tokens is None or build_plan.rounds >= ctx.recipe.plan.max_rounds:
        return []
    if ctx.stage_stats("generate").extra.get("incomplete_documents"):
        return []  # calls failed at the endpoint are retried by the next run; drawing more now would pay twice
    with timed(ctx, "plan"):
        counter = TokenCounter.load(
            cfg.tokenizer, cfg.min_pixels, cfg.max_pixels, render_max_pixels=ctx.recipe.render.max_pixels
        )
        records = [r for doc in docs for r in qas.get(doc.sha256, [])]
        candidates, _ = document_candidates(
            {d.sha256: d for d in docs}, records, lambda sha: layout_or_fail(ctx, layout_fp, sha), cfg,
            render_dpi=ctx.recipe.render.dpi, seed=ctx.recipe.seed, counter=counter,
        )  # fmt: skip
        deficits = planning.dry_streams(candidates, planner)
        return planner.more(build_plan, deficits, build_plan.rounds + 1) if deficits else []


def _finish_plan(ctx: BuildContext, planner: planning.Planner, build_plan: planning.BuildPlan) -> None:
    """Reject lines for the pool documents the plan leaves out; predicted vs actual model calls per task."""
    stats = ctx.stage_stats("plan")
    record_rejects(ctx, stats, planner.rejects(build_plan))
    forecast = planner.forecast(build_plan)
    usage = ctx.stats["generate"].extra.get("usage", {}) if "generate" in ctx.stats else {}
    stats.seen, stats.kept = len(planner.docs), len(build_plan.documents())
    stats.extra.update(
        units=len(build_plan.units), rounds=build_plan.rounds, forecast=forecast,
        generate_everything_calls=planner.generate_everything_calls(),
        calls=planning.compare(forecast, planning.actual_usage(usage)),
    )  # fmt: skip
