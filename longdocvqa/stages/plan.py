"""Plan stage: which (document, task) units the dataset needs, from page sizes alone, and its top-up rounds.

`run_plan` picks the units (assembly/planning.py) and stores them as OUT/plan.json, reused while recipe, seed and
pool are unchanged. pipeline.py then runs layout, segment, generate and the question check over the planned
documents, one round at a time; after each round `top_up` replays the assembly's sampling on the round's QAs and,
when drops leave a stream of the mixture short, `extend_plan` draws more units for the next round (finished work
reused). `finish_plan` records the documents the plan leaves out and predicted vs actual model calls.
Does not own: the planning rules (assembly/planning.py), the rounds' order (pipeline.py), what each stage computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from longdocvqa.assembly import planning
from longdocvqa.assembly.assemble import document_candidates
from longdocvqa.assembly.tokens import TokenCounter
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import PdfDoc, QARecord
from longdocvqa.core.store import atomic_write_text
from longdocvqa.runner.loop import BuildContext, StageResult, record_rejects, timed
from longdocvqa.stages.layout import Layouts


@dataclass
class Plan:
    """The plan stage's outputs: the planner (page sizes, stream orders) and the units planned so far."""

    planner: planning.Planner
    units: planning.BuildPlan

    def documents(self, docs: list[PdfDoc]) -> list[PdfDoc]:
        """The planned documents among `docs`, in their order."""
        planned = self.units.documents()
        return [d for d in docs if d.sha256 in planned]


def planner_for(docs: list[PdfDoc], recipe: Recipe) -> planning.Planner:
    return planning.Planner([planning.DocSize.from_doc(d) for d in docs], recipe)


def run_plan(ctx: BuildContext, docs: list[PdfDoc]) -> StageResult[Plan]:
    """Which (document, task) units the dataset needs, from page sizes alone; stored as OUT/plan.json and reused
    while recipe, seed and pool are unchanged."""
    with timed(ctx, "plan") as stats, ctx.progress.stage("plan", 1) as advance:
        planner = planner_for(docs, ctx.recipe)
        stored = planning.load_plan(ctx.run.plan_path, planner.key)
        build_plan = stored or planner.initial()
        if stored is None:
            atomic_write_text(ctx.run.plan_path, build_plan.model_dump_json(indent=1))
        stats.reused = int(stored is not None)
        advance(1)
    return StageResult(Plan(planner, build_plan), stats)


def top_up(
    ctx: BuildContext, plan: Plan, docs: list[PdfDoc], qas: dict[str, list[QARecord]], layouts: Layouts,
    incomplete_documents: int,
) -> list[planning.PlanUnit]:  # fmt: skip
    """The next round's units: [] when the assembly's sampling of these QAs meets budget and mixture, when the pool
    has no more units for the short streams, after plan.max_rounds rounds, or while endpoint errors are pending
    (`incomplete_documents`: calls failed at the endpoint are retried by the next run; drawing more now would pay
    twice)."""
    cfg = ctx.recipe.assemble
    if cfg.budget_tokens is None or plan.units.rounds >= ctx.recipe.plan.max_rounds or incomplete_documents:
        return []
    with timed(ctx, "plan"):
        counter = TokenCounter.load(
            cfg.tokenizer, cfg.min_pixels, cfg.max_pixels, render_max_pixels=ctx.recipe.render.max_pixels
        )
        records = [r for doc in docs for r in qas.get(doc.sha256, [])]
        candidates, _ = document_candidates(
            {d.sha256: d for d in docs}, records, layouts.final, cfg,
            render_dpi=ctx.recipe.render.dpi, seed=ctx.recipe.seed, counter=counter,
        )  # fmt: skip
        deficits = planning.dry_streams(candidates, plan.planner)
        return plan.planner.more(plan.units, deficits, plan.units.rounds + 1) if deficits else []


def extend_plan(ctx: BuildContext, plan: Plan, more: list[planning.PlanUnit]) -> None:
    """Add a top-up round's units to the plan, and store it."""
    plan.units.units += more
    atomic_write_text(ctx.run.plan_path, plan.units.model_dump_json(indent=1))


def finish_plan(ctx: BuildContext, plan: Plan, usage: Mapping[str, Any]) -> None:
    """Reject lines for the pool documents the plan leaves out; predicted vs actual model calls per task (`usage`:
    generation's, over every round)."""
    stats = ctx.stage_stats("plan")
    planner, build_plan = plan.planner, plan.units
    record_rejects(ctx, stats, planner.rejects(build_plan))
    forecast = planner.forecast(build_plan)
    stats.seen, stats.kept = len(planner.docs), len(build_plan.documents())
    stats.extra.update(
        units=len(build_plan.units), rounds=build_plan.rounds, forecast=forecast,
        generate_everything_calls=planner.generate_everything_calls(),
        calls=planning.compare(forecast, planning.actual_usage(usage)),
    )  # fmt: skip
