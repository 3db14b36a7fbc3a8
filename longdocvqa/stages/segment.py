"""Segment stage: section-aligned page spans sampled from each parsed document (documents/segment.py), in this
process.

Keyed by the document's sha256 under a fingerprint of (segment config, seed, layout fingerprint); only documents
with a stored layout get a job (the others were rejected at layout). Each job is a typed `SegmentJob` run through
the per-document loop (`run_jobs`, `collect`) on the in-process executor. Does not own: the sampling rules
(documents/segment.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from longdocvqa.core.fingerprint import stage_fingerprint
from longdocvqa.core.recipe import SegmentConfig
from longdocvqa.core.records import PdfDoc, Segment
from longdocvqa.core.store import StageOutput
from longdocvqa.documents.segment import sample_segments
from longdocvqa.runner.executor import Job
from longdocvqa.runner.local import InProcess
from longdocvqa.runner.loop import BuildContext, StageResult, collect, run_jobs, timed
from longdocvqa.stages.layout import LaidOut, Layouts

VERSION = 1


@dataclass(frozen=True)
class Segmented:
    """The segment stage's outputs: each parsed document's segments, and the fingerprint generation keys under."""

    segments: dict[str, list[Segment]]
    fingerprint: str


@dataclass(frozen=True)
class SegmentJob:
    """One document's segments: sample `layouts`' layout of `sha256` under `config` and `seed` into `out`."""

    sha256: str
    layouts: Layouts
    config: SegmentConfig
    seed: int
    out: StageOutput


def run_segment(ctx: BuildContext, docs: list[PdfDoc], laid_out: LaidOut) -> StageResult[Segmented]:
    """Sample section-aligned segments for every parsed document."""
    cfg = ctx.recipe.segment
    fp = stage_fingerprint(
        "segment", VERSION, {"segment": cfg, "seed": ctx.recipe.seed}, [laid_out.layouts.fingerprint]
    )
    out = ctx.run.stage("segment", fp)
    with timed(ctx, "segment") as stats:
        jobs = [Job(d.sha256, d.path, (SegmentJob(d.sha256, laid_out.layouts, cfg, ctx.recipe.seed, out),))
                for d in docs if d.sha256 in laid_out.parsed]  # fmt: skip
        run_jobs(ctx, "segment", out, _segment_document, jobs, InProcess())
        result = {
            job.key: [Segment.model_validate(s) for s in data] for job, data in collect(ctx, "segment", out, jobs)
        }
        stats.kept = len(result)
        segments = [s for segs in result.values() for s in segs]
        stats.extra.update(segments=len(segments), by_rule=dict(Counter(s.rule for s in segments)))
    return StageResult(Segmented(result, fp), stats)


def _segment_document(job: SegmentJob) -> None:
    """One document's segments, stored."""
    layout = job.layouts.load(job.sha256)
    if layout is not None:
        job.out.write(job.sha256, sample_segments(layout, job.config, job.seed))
