"""The per-document loop, written once: fingerprint -> todo (skip done) -> executor.map -> collect -> rejects,
stats and progress; resume and the error budgets live here.

Each stage's per-document output lives under a fingerprint of (stage, version, config, inputs) in the run
directory, so a rerun skips finished work and a changed setting recomputes only what depends on it. Work is keyed
by document sha256, never by worker count; each job writes its own output atomically, so a killed build loses only
unfinished documents. Also owns what every stage shares: `BuildContext`, `StageStats`, the `Progress` hook the CLI
implements, the page-image cache, and the one way a reject is recorded (rejects list, drop counts, progress).
Work whose output is a cache (page images, decontamination signatures) runs through `run_guarded`: one isolated
worker per document as well, so the build process never reads a PDF with MuPDF after the pool stage.
Does not own: what a stage computes (stages/), how jobs run (runner/executor.py, local.py, ray.py), the order of
the stages (pipeline.py).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import RejectedInput, StageError
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import PdfDoc, Reject
from longdocvqa.core.store import RunDir, StageOutput, atomic_write_bytes
from longdocvqa.documents import render
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import Executor, Failure, Job
from longdocvqa.runner.local import IsolatedProcesses

_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp"}


class Progress:
    """What the pipeline reports; the CLI passes a Rich implementation, tests pass nothing."""

    def stage(self, name: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda n=1: None)

    def reject(self, reject: Reject) -> None:
        """Called once per reject line as it is recorded, by every stage (sampling outcomes included)."""


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
    executor: Executor | None = None  # per-document jobs; None: one isolated local process per document

    def stage_stats(self, name: str) -> StageStats:
        return self.stats.setdefault(name, StageStats())

    def document_executor(self) -> Executor:
        """The executor for per-document jobs under the recipe's isolation limits."""
        if self.executor is not None:
            return self.executor
        cfg = self.recipe.isolation
        limits = isolate.Limits(seconds=cfg.seconds_per_document, memory_mb=cfg.memory_mb_per_document)
        return IsolatedProcesses(self.workers, limits)


class PageImages:
    """Page images cached by (document sha256, page, dpi, format, quality, pixel cap). The build process only reads
    them: `render_into_cache` renders each document's missing pages in an isolated worker first."""

    def __init__(self, cache_dir: Path, recipe: Recipe) -> None:
        self.cfg = recipe.render
        self.root = cache_dir / "pages"

    def path(self, sha256: str, page: int) -> Path:
        variant = f"{self.cfg.dpi}-{self.cfg.format}-q{self.cfg.quality}-px{self.cfg.max_pixels}"
        return self.root / sha256[:2] / sha256 / variant / f"{page}.{_EXT[self.cfg.format]}"

    def get(self, doc: PdfDoc, page: int) -> bytes:
        """Bytes of 1-based `page` of `doc`, from the cache (FileNotFoundError when it was not rendered)."""
        return self.path(doc.sha256, page).read_bytes()

    def get_many(self, doc: PdfDoc, pages: Sequence[int]) -> dict[int, bytes]:
        return {p: self.get(doc, p) for p in pages}

    def missing(self, doc: PdfDoc, pages: Iterable[int]) -> list[int]:
        return [p for p in pages if not self.path(doc.sha256, p).is_file()]

    def render(self, doc: PdfDoc, pages: Sequence[int]) -> None:
        """Render `pages` into the cache, `_RENDER_CHUNK` at a time (memory stays flat); a page MuPDF cannot render
        raises RejectedInput naming the file and that page. Runs in a per-document worker (`render_into_cache`)."""
        for start in range(0, len(pages), _RENDER_CHUNK):
            chunk = list(pages[start : start + _RENDER_CHUNK])
            try:
                self._write(doc, self._render(doc, chunk))
            except Exception:  # find the page at fault, keeping the ones before it
                for page in chunk:
                    self._write(doc, self._render_one(doc, page))

    def _render(self, doc: PdfDoc, pages: list[int]) -> dict[int, bytes]:
        cfg = self.cfg
        return render.render_pages(doc.path, pages, cfg.dpi, cfg.format, cfg.quality, cfg.max_pixels)

    def _render_one(self, doc: PdfDoc, page: int) -> dict[int, bytes]:
        try:
            return self._render(doc, [page])
        except Exception as exc:
            reason = "too_big" if isolate.is_memory_error(exc) else "render_failed"
            raise RejectedInput(reason, f"{doc.path} page {page}: {one_line(exc)}") from None

    def _write(self, doc: PdfDoc, rendered: dict[int, bytes]) -> None:
        for page, data in rendered.items():
            atomic_write_bytes(self.path(doc.sha256, page), data)


_RENDER_CHUNK = 16


def render_into_cache(
    ctx: BuildContext, stage: str, wanted: Iterable[tuple[PdfDoc, Sequence[int]]]
) -> dict[str, Reject]:
    """Render each document's missing `wanted` pages into the page cache, each document in its own worker under the
    recipe's isolation limits; returns a one-line reject (render_failed, too_big, timeout, worker_crashed) naming the
    file for each document that could not be rendered, by sha256."""
    images = PageImages(ctx.run.cache_dir, ctx.recipe)
    jobs = [Job(doc.sha256, doc.path, (doc, todo, str(ctx.run.cache_dir), ctx.recipe))
            for doc, pages in wanted if (todo := images.missing(doc, pages))]  # fmt: skip
    return run_guarded(ctx, stage, f"{stage} pages", _render_worker, jobs)


def _render_worker(doc: PdfDoc, pages: list[int], cache_dir: str, recipe: Recipe) -> None:
    PageImages(Path(cache_dir), recipe).render(doc, pages)


def run_guarded(
    ctx: BuildContext, stage: str, label: str | None, fn: Callable[..., None], jobs: Sequence[Job]
) -> dict[str, Reject]:
    """Run `fn(*job.args)` for each job, each in its own worker under the recipe's isolation limits (a progress bar
    named `label`, none when None); returns, by job key, a reject for each job that raised RejectedInput or whose
    worker overran, ran out of memory or died (`timeout`, `too_big`, `worker_crashed`; the detail names `job.item`).
    Nothing is stored: a failed job is tried again on the next run. For work whose output is a cache."""
    if not jobs:
        return {}
    mailbox = ctx.run.stage("guarded", stage)  # where a worker leaves its RejectedInput
    for job in jobs:
        mailbox.path(job.key).unlink(missing_ok=True)
    guarded = [Job(job.key, job.item, (fn, str(ctx.run.root), stage, job.key, job.item, *job.args)) for job in jobs]
    rejects: dict[str, Reject] = {}
    runs = ctx.document_executor().map(_guarded_worker, guarded)
    bar = ctx.progress.stage(label, len(jobs)) if label else nullcontext(lambda n=1: None)
    with bar as advance, contextlib.closing(runs):
        for job, failure in runs:
            if failure is not None:
                detail = f"{job.item}: {failure.detail}"
                rejects[job.key] = Reject(stage=stage, item=job.item, reason=failure.reason, detail=detail)
            elif mailbox.done(job.key):
                rejects[job.key] = Reject.model_validate(mailbox.read(job.key)["reject"])
                mailbox.path(job.key).unlink()
            advance(1)
    return rejects


def _guarded_worker(fn: Callable[..., None], root: str, stage: str, key: str, item: str, *args: Any) -> None:
    """In the worker: `fn(*args)`; an error (all guarded jobs read PDFs with MuPDF) is one reject, not a traceback."""
    try:
        fn(*args)
    except RejectedInput as exc:
        reject = Reject(stage=stage, item=item, reason=exc.reason, detail=exc.detail)
    except Exception as exc:
        reason = "too_big" if isolate.is_memory_error(exc) else "render_failed"
        reject = Reject(stage=stage, item=item, reason=reason, detail=f"{item}: {one_line(exc)}")
    else:
        return
    StageOutput(Path(root), "guarded", stage).write_reject(key, reject)


def timed(ctx: BuildContext, name: str) -> _Timer:
    """`with timed(ctx, "layout") as stats:` adds the block's wall time to the stage's seconds."""
    return _Timer(ctx.stage_stats(name))


class _Timer:
    def __init__(self, stats: StageStats) -> None:
        self.stats = stats

    def __enter__(self) -> StageStats:
        self.start = time.perf_counter()
        return self.stats

    def __exit__(self, *exc: object) -> None:
        self.stats.seconds += time.perf_counter() - self.start


# ---------------------------------------------------------------- rejects and budgets


def record_reject(ctx: BuildContext, stats: StageStats, reject: Reject) -> None:
    """The one way a reject is recorded: the build's rejects, the stage's drop count, the progress display."""
    ctx.rejects.append(reject)
    stats.dropped[reject.reason] += 1
    ctx.progress.reject(reject)


def record_rejects(ctx: BuildContext, stats: StageStats, rejects: Iterable[Reject]) -> None:
    for reject in rejects:
        record_reject(ctx, stats, reject)


def stop(ctx: BuildContext, message: str) -> None:
    """Stop the build (exit 1) with `message`, keeping every finished stage output and the rejects so far."""
    ctx.run.write_rejects(ctx.rejects)
    raise StageError(message)


def check_budget(ctx: BuildContext, stage: str, bad: int, seen: int) -> None:
    """Stop when more than pool.max_reject_rate of a stage's inputs were rejected."""
    limit = ctx.recipe.pool.max_reject_rate
    if seen and bad / seen > limit:
        ctx.run.write_rejects(ctx.rejects)  # the message points there: write what was found so far
        raise StageError(
            f"{stage}: {bad} of {seen} inputs rejected ({bad / seen:.0%}), over max_reject_rate {limit:.0%}; "
            f"see {ctx.run.rejects_path}"
        )


# Drops that say nothing about the endpoint: a repeated question, a page without text for an OCR task.
_NOT_FAILURES = {"duplicate", "duplicate_question", "no_text"}
# Calls that gave nothing usable: the endpoint failed, refused, hung, or answered with no parseable JSON. Semantic
# rejects (evidence, anchor, answer not on the page) are the model's quality, counted in the drops, not here.
_CALL_FAILURES = {"endpoint_error", "generate_failed", "reply_too_large", "truncated", "invalid_json",
                  "schema_violation", "bad_response_body"}  # fmt: skip


def check_generate_budget(ctx: BuildContext, stats: StageStats) -> None:
    """Stop (exit 1) when more questions failed than max_reject_rate allows, naming the most common failure."""
    failures = Counter({k: v for k, v in stats.dropped.items() if k in _CALL_FAILURES or k.startswith("http_")})
    asked = stats.kept + sum(v for k, v in stats.dropped.items() if k not in _NOT_FAILURES)
    failed = sum(failures.values())
    limit = ctx.recipe.pool.max_reject_rate
    if not asked or failed / asked <= limit:
        return
    reason, count = failures.most_common(1)[0]
    example = next((r.detail for r in reversed(ctx.rejects) if r.stage == "generate" and r.reason == reason), "")
    example = " ".join(example.split())  # one line, whatever the server said
    stop(ctx, f"generate: {failed} of {asked} questions failed ({failed / asked:.0%}), over max_reject_rate "
              f"{limit:.0%}; most common: {reason} ({count}): {example[:200]}; finished documents are kept, "
              f"see {ctx.run.rejects_path}")  # fmt: skip


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


# ---------------------------------------------------------------- the per-document loop


def run_jobs(
    ctx: BuildContext, name: str, out: StageOutput, fn: Callable[..., None], jobs: Sequence[Job],
    executor: Executor | None = None,
) -> None:  # fmt: skip
    """Run `fn(*job.args)` for each job whose output is not stored yet (resume), on `executor` (default: one isolated
    process per document); a job that ends without output gets a stored reject. Counts seen and reused."""
    todo = still_to_do(ctx, name, out, jobs)
    runs = (executor or ctx.document_executor()).map(fn, todo)
    with ctx.progress.stage(name, len(todo)) as advance, contextlib.closing(runs):
        for job, result in runs:
            if isinstance(result, Failure):
                reject = Reject(stage=name, item=job.item, reason=result.reason, detail=result.detail)
                out.write_reject(job.key, reject)
            advance(1)


def still_to_do(ctx: BuildContext, name: str, out: StageOutput, jobs: Sequence[Job]) -> list[Job]:
    """Resume: the jobs whose output (result or reject) is not stored yet; counts the stage's seen and reused."""
    stats = ctx.stage_stats(name)
    todo = [job for job in jobs if not out.done(job.key)]
    stats.seen, stats.reused = len(jobs), len(jobs) - len(todo)
    return todo


def collect(ctx: BuildContext, name: str, out: StageOutput, jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
    """Each job's stored output in job order: a stored reject is recorded and counted against the error budget
    (checked once every job is read), a result is yielded."""
    stats = ctx.stage_stats(name)
    bad = 0
    for job in jobs:
        data = out.read(job.key)
        if "reject" in data:
            record_reject(ctx, stats, Reject.model_validate(data["reject"]))
            bad += 1
        else:
            yield job, data["ok"]
    check_budget(ctx, name, bad, len(jobs))
