"""Layout stage: each planned document parsed into labelled blocks (title, section, paragraph, table, figure...).

Each document runs in its own process under the per-document limits (runner/loop.py, runner/local.py) as a typed
`LayoutJob`; a PDF that fails to parse, overruns, or kills its process is one reject naming the file. The stored
layout is keyed by the document's sha256 under the stage fingerprint; later stages read it through the `Layouts`
reference the stage returns (with the layout generation stores when it transcribes scanned pages).
Does not own: the labelling rules (documents/layout.py, documents/parse.py) or PDF access (documents/render.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from longdocvqa.core.errors import RejectedInput, StageError
from longdocvqa.core.fingerprint import stage_fingerprint
from longdocvqa.core.recipe import LayoutConfig, Recipe
from longdocvqa.core.records import LayoutDoc, PdfDoc, Reject
from longdocvqa.core.store import RunDir, StageOutput
from longdocvqa.documents import render
from longdocvqa.documents.parse import parse_document
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import Job
from longdocvqa.runner.loop import BuildContext, StageResult, collect, run_jobs, timed

VERSION = 3  # 3: text.clean


@dataclass(frozen=True)
class Layouts:
    """Where the documents' layouts are stored: the layout stage's output, and the completed layouts generation
    stores for documents whose scanned pages a VLM transcribed (layout.ocr: vlm). Picklable: jobs carry it."""

    stored: StageOutput
    ocr: StageOutput

    @property
    def fingerprint(self) -> str:
        return self.stored.fingerprint

    def load(self, sha: str) -> LayoutDoc | None:
        """The layout stage's layout of document `sha`; None when it was rejected there."""
        data = self.stored.read(sha)
        return LayoutDoc.model_validate(data["ok"]) if "ok" in data else None

    def final(self, sha: str) -> LayoutDoc:
        """A generated document's final layout: with its transcribed scanned pages when there are any."""
        if self.ocr.done(sha):
            return LayoutDoc.model_validate(self.ocr.read(sha)["ok"])
        layout = self.load(sha)
        if layout is None:
            raise StageError(f"assemble: no layout stored for document {sha}")
        return layout


@dataclass(frozen=True)
class LaidOut:
    """The layout stage's outputs: where the layouts are, and which documents have one (the others were rejected)."""

    layouts: Layouts
    parsed: frozenset[str]


@dataclass(frozen=True)
class LayoutJob:
    """One document's layout job: parse `path` under `config` into `out` (key: its sha256)."""

    path: str
    sha256: str
    config: LayoutConfig
    out: StageOutput


def layout_fingerprint(recipe: Recipe) -> str:
    return stage_fingerprint("layout", VERSION, recipe.layout)


def layouts_of(recipe: Recipe, run: RunDir) -> Layouts:
    """The layouts of `recipe`'s layout settings in `run` (the ocr fingerprint depends on generation's model)."""
    fingerprint = layout_fingerprint(recipe)
    return Layouts(run.stage("layout", fingerprint), run.stage("layout-ocr", ocr_fingerprint(recipe, fingerprint)))


def run_layout(ctx: BuildContext, docs: list[PdfDoc]) -> StageResult[LaidOut]:
    """Parse every planned document into labelled blocks (in parallel)."""
    layouts = layouts_of(ctx.recipe, ctx.run)
    with timed(ctx, "layout") as stats:
        jobs = [Job(d.sha256, d.path, (LayoutJob(d.path, d.sha256, ctx.recipe.layout, layouts.stored),)) for d in docs]
        if ctx.recipe.layout.backend == "pymupdf-layout" and jobs:
            render.layout_model()  # once here: the local executor's per-document processes fork from this one
        run_jobs(ctx, "layout", layouts.stored, layout_worker, jobs)
        parsed = frozenset(job.key for job, _ in collect(ctx, "layout", layouts.stored, jobs))
        stats.kept = len(parsed)
    return StageResult(LaidOut(layouts, parsed), stats)


def layout_worker(job: LayoutJob) -> None:
    """In the document's worker: its layout, or its reject, stored under its sha256."""
    try:
        job.out.write(job.sha256, parse_document(job.path, job.sha256, job.config))
    except RejectedInput as exc:
        job.out.write_reject(job.sha256, Reject(stage="layout", item=job.path, reason=exc.reason, detail=exc.detail))
    except Exception as exc:  # a broken page must never stop the build
        reason, detail = isolate.exception_failure(exc, "layout_failed", job.path)
        job.out.write_reject(job.sha256, Reject(stage="layout", item=job.path, reason=reason, detail=detail))


def ocr_fingerprint(recipe: Recipe, layout_fp: str) -> str:
    """Where generation stores a layout whose scanned pages a VLM transcribed (layout.ocr: vlm)."""
    what = {"model": recipe.generate.generator.endpoint.model, "max_pixels": recipe.generate.max_pixels}
    return stage_fingerprint("layout-ocr", 1, what, [layout_fp])
