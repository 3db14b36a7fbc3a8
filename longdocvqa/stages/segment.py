"""Segment stage: section-aligned page spans sampled from each parsed document (segment.py), in this process.

Keyed by the document's sha256 under a fingerprint of (segment config, seed, layout fingerprint); a document
without a stored layout (rejected at layout) gets no segments. Does not own: the sampling rules (segment.py).
"""

from __future__ import annotations

from collections import Counter

from longdocvqa.core.fingerprint import stage_fingerprint
from longdocvqa.core.recipe import SegmentConfig
from longdocvqa.core.records import PdfDoc, Segment
from longdocvqa.core.store import RunDir
from longdocvqa.documents.segment import sample_segments
from longdocvqa.runner.executor import Job
from longdocvqa.runner.local import InProcess
from longdocvqa.runner.loop import BuildContext, run_jobs, timed
from longdocvqa.stages.layout import load_layout

VERSION = 1


def run_segment(ctx: BuildContext, docs: list[PdfDoc], layout_fp: str) -> tuple[dict[str, list[Segment]], str]:
    """Sample section-aligned segments for every parsed document."""
    cfg = ctx.recipe.segment
    fp = stage_fingerprint("segment", VERSION, {"segment": cfg, "seed": ctx.recipe.seed}, [layout_fp])
    out = ctx.run.stage("segment", fp)
    with timed(ctx, "segment") as stats:
        args = (str(ctx.run.root), layout_fp, fp, cfg, ctx.recipe.seed)
        jobs = [Job(d.sha256, d.path, (d.sha256, *args)) for d in docs]
        run_jobs(ctx, "segment", out, _segment_document, jobs, InProcess())
        result = {
            d.sha256: [Segment.model_validate(s) for s in out.read(d.sha256)["ok"]] for d in docs if out.done(d.sha256)
        }
        stats.kept = len(result)
        segments = [s for segs in result.values() for s in segs]
        stats.extra.update(segments=len(segments), by_rule=dict(Counter(s.rule for s in segments)))
    return result, fp


def _segment_document(sha: str, root: str, layout_fp: str, fp: str, cfg: SegmentConfig, seed: int) -> None:
    """One document's segments, stored; nothing when the document has no layout (rejected there)."""
    run = RunDir(root)
    layout = load_layout(run, layout_fp, sha)
    if layout is not None:
        run.stage("segment", fp).write(sha, sample_segments(layout, cfg, seed))
