"""Layout stage: each planned document parsed into labelled blocks (title, section, paragraph, table, figure...).

Each document runs in its own process under the per-document limits (runner.py, executors/local.py); a PDF that
fails to parse, overruns, or kills its process is one reject naming the file. The stored layout is keyed by the
document's sha256 under the stage fingerprint, so segment, generate and assemble read it by (fingerprint, sha256).
Does not own: the labelling rules (layout.py) or PDF access (render.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longdocvqa.core.environment import raise_if_environment
from longdocvqa.core.errors import RejectedInput, StageError
from longdocvqa.core.fingerprint import stage_fingerprint
from longdocvqa.core.recipe import LayoutConfig, Recipe
from longdocvqa.core.records import LayoutDoc, PdfDoc, Reject
from longdocvqa.core.store import RunDir, StageOutput
from longdocvqa.documents.parse import parse_document
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import Job
from longdocvqa.runner.loop import BuildContext, collect, one_line, run_jobs, timed

VERSION = 3  # 3: text.clean


def layout_fingerprint(recipe: Recipe) -> str:
    return stage_fingerprint("layout", VERSION, recipe.layout)


def run_layout(ctx: BuildContext, docs: list[PdfDoc]) -> str:
    """Parse every kept document into labelled blocks (in parallel); returns the stage fingerprint."""
    out = ctx.run.stage("layout", layout_fingerprint(ctx.recipe))
    with timed(ctx, "layout") as stats:
        cfg, root = ctx.recipe.layout.model_dump(), str(ctx.run.root)
        jobs = [Job(d.sha256, d.path, (d.path, d.sha256, cfg, root, out.fingerprint)) for d in docs]
        run_jobs(ctx, "layout", out, _layout_worker, jobs)
        parsed = sum(1 for _ in collect(ctx, "layout", out, jobs))
        stats.kept = parsed
    return out.fingerprint


def _layout_worker(path: str, sha: str, cfg: dict[str, Any], root: str, fingerprint: str) -> None:
    out = StageOutput(Path(root), "layout", fingerprint)
    try:
        out.write(sha, parse_document(path, sha, LayoutConfig.model_validate(cfg)))
    except RejectedInput as exc:
        out.write_reject(sha, Reject(stage="layout", item=path, reason=exc.reason, detail=exc.detail))
    except Exception as exc:  # a broken page must never stop the build
        raise_if_environment(exc, path)  # a full disk must: the worker exits with it, nothing is stored
        reason = "too_big" if isolate.is_memory_error(exc) else "layout_failed"
        out.write_reject(sha, Reject(stage="layout", item=path, reason=reason, detail=one_line(exc)))


def load_layout(run: RunDir, fingerprint: str, sha: str) -> LayoutDoc | None:
    data = run.stage("layout", fingerprint).read(sha)
    return LayoutDoc.model_validate(data["ok"]) if "ok" in data else None


def ocr_fingerprint(recipe: Recipe, layout_fp: str) -> str:
    """Where generation stores a layout whose scanned pages a VLM transcribed (layout.ocr: vlm)."""
    what = {"model": recipe.generate.generator.endpoint.model, "max_pixels": recipe.generate.max_pixels}
    return stage_fingerprint("layout-ocr", 1, what, [layout_fp])


def layout_or_fail(ctx: BuildContext, layout_fp: str, sha: str) -> LayoutDoc:
    """A generated document's final layout: with its transcribed scanned pages when there are any."""
    ocr = ctx.run.stage("layout-ocr", ocr_fingerprint(ctx.recipe, layout_fp))
    if ocr.done(sha):
        return LayoutDoc.model_validate(ocr.read(sha)["ok"])
    layout = load_layout(ctx.run, layout_fp, sha)
    if layout is None:
        raise StageError(f"assemble: no layout stored for document {sha}")
    return layout
