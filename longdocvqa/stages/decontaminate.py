"""Decontaminate stage: drop pool documents that copy or nearly copy a benchmark document or each other, and
generated questions that share a 13-gram with a benchmark question or answer.

Runs over the whole pool at once (dedup.py: MinHash LSH over page shingles, perceptual hashes of image-only
pages, cached per document); the benchmark index comes from hub/benchmarks.py. Every PDF (pool and benchmark) is
read in its own worker under the recipe's isolation limits, its signatures and page hashes cached; a pool document
MuPDF cannot read, or whose reading crashes, overruns or runs out of memory, is one reject naming the file, never a
traceback; a benchmark PDF in that case is listed as unreadable in the decontamination report.
Does not own: the signatures and the matching (decontamination/dedup.py), loading benchmarks (hub).
"""

from __future__ import annotations

import functools
import pickle
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longdocvqa.core.errors import RejectedInput, StageError
from longdocvqa.core.recipe import DecontaminateConfig
from longdocvqa.core.records import PdfDoc, QARecord, Reject
from longdocvqa.core.store import atomic_write_bytes
from longdocvqa.decontamination import dedup
from longdocvqa.documents import render
from longdocvqa.hub.benchmarks import build_benchmark_index
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import Job
from longdocvqa.runner.loop import BuildContext, one_line, record_rejects, run_guarded, timed


def run_decontaminate(ctx: BuildContext, docs: list[PdfDoc]) -> tuple[list[PdfDoc], dedup.BenchmarkIndex | None]:
    """Drop exact copies and near-duplicates of benchmark documents, and near-duplicates inside the pool."""
    cfg = ctx.recipe.decontaminate
    if not cfg.benchmarks and not cfg.within_pool:
        return docs, None
    cache = ctx.run.cache_dir / "decontaminate"
    with timed(ctx, "decontaminate") as stats, ctx.progress.stage("decontaminate", 1) as advance:
        read = functools.partial(_read_isolated, ctx, cache)
        index = build_benchmark_index(cfg, cache, functools.partial(read, _texts_worker),
                                      page_images=functools.partial(read, _thumbnails_worker))  # fmt: skip
        unreadable = _read_documents(ctx, [d for d in docs if d.sha256 not in index.files], cache)
        readable = [d for d in docs if d.sha256 not in unreadable]
        texts = [(d.sha256, functools.partial(_not_cached, d.path)) for d in readable]
        by_sha = {d.sha256: d.path for d in readable}
        kept, rejects, report = dedup.check_documents(
            index, texts, cfg, cache, page_images=lambda sha: _not_cached(by_sha[sha])
        )
        stats.seen, stats.kept = len(docs), len(kept)
        record_rejects(ctx, stats, [*rejects, *unreadable.values()])
        stats.extra["report"] = report
        advance(1)
    return [d for d in docs if d.sha256 in kept], index


def _read_documents(ctx: BuildContext, docs: list[PdfDoc], cache: Path) -> dict[str, Reject]:
    """Each pool document's page signatures (and, without enough text, its page-image hashes) into the signature
    cache, each document in its own worker under the recipe's isolation limits, so MuPDF never reads a pool PDF in
    the build process. Returns a one-line reject (item: the sha256, detail naming the file) for each document that
    could not be read (`render_failed`, `too_big`, `timeout`, `worker_crashed`); it is tried again on the next run."""
    cfg = ctx.recipe.decontaminate
    signatures = _signature_cache(cfg, cache)
    jobs = [Job(d.sha256, d.path, (d.path, d.sha256, cfg, str(cache))) for d in docs
            if not _cached(signatures, d.sha256, cfg.window_pages)]  # fmt: skip
    failed = run_guarded(ctx, "decontaminate", "decontaminate reading", _read_worker, jobs)
    return {sha: reject.model_copy(update={"item": sha}) for sha, reject in failed.items()}


def _signature_cache(cfg: DecontaminateConfig, cache: Path) -> dedup.SignatureCache:
    return dedup.SignatureCache(cache, dedup.SignatureSettings.from_config(cfg))


def _cached(signatures: dedup.SignatureCache, sha: str, window_pages: int) -> bool:
    """Whether everything the checks read of document `sha` is in the signature cache."""
    if not (signatures.root / sha[:2] / f"{sha}.npy").is_file():
        return False
    has_text = bool(signatures.signatures(sha, ()).spans(window_pages))
    return has_text or (signatures.image_root / sha[:2] / f"{sha}.npy").is_file()


def _read_worker(path: str, sha: str, cfg: DecontaminateConfig, cache: str) -> None:
    """In a worker: page texts -> signatures, and for a document with too little text, thumbnails -> hashes."""
    signatures = _signature_cache(cfg, Path(cache))
    read = signatures.signatures(sha, lambda: _page_texts(path))
    if not read.spans(cfg.window_pages):
        signatures.image_hashes(sha, lambda: _thumbnails(path))


def _page_texts(path: str) -> list[str]:
    try:
        return render.page_texts(path)
    except Exception as exc:
        reason = "too_big" if isolate.is_memory_error(exc) else "render_failed"
        raise RejectedInput(reason, f"{path}: {one_line(exc)}") from None


def _not_cached(path: str) -> list[Any]:
    """The checks' fallback, never reached: `_read_documents` cached what they read, or rejected the document."""
    raise StageError(f"decontaminate: {path} is not in the signature cache (was OUT/cache changed during the build?)")


def _thumbnails(path: str | Path) -> list[bytes]:
    """Small page images for perceptual hashes of image-only documents (50 DPI is plenty for a 64-bit dHash).

    A document MuPDF cannot render gets none (it is then compared by text only); layout and generation reject it."""
    try:
        count = len(render.page_texts(path))
        return list(render.render_pages(path, list(range(1, count + 1)), 50, "jpeg", 85).values())
    except Exception:
        return []


# ---------------------------------------------------------------- benchmark PDFs, read in a worker too


def _read_isolated(ctx: BuildContext, cache: Path, worker: Callable[[str, str], None], path: Path) -> list[Any]:
    """`worker(path, result_file)` in its own worker under the isolation limits, its result read back; a benchmark PDF
    whose reading fails, overruns, runs out of memory or crashes raises RejectedInput (the index lists it as
    unreadable in its source's summary, still matched by sha256, and the build goes on)."""
    key = uuid.uuid4().hex
    result = cache / "benchmark-reads" / f"{key}.pickle"
    result.parent.mkdir(parents=True, exist_ok=True)
    try:
        job = Job(key, str(path), (str(path), str(result)))
        failed = run_guarded(ctx, "decontaminate", None, worker, [job])
        if (reject := failed.get(job.key)) is not None:
            raise RejectedInput(reject.reason, reject.detail)
        with result.open("rb") as handle:
            return list(pickle.load(handle))
    finally:
        result.unlink(missing_ok=True)


def _texts_worker(path: str, result: str) -> None:
    atomic_write_bytes(Path(result), pickle.dumps(_page_texts(path)))


def _thumbnails_worker(path: str, result: str) -> None:
    atomic_write_bytes(Path(result), pickle.dumps(_thumbnails(path)))


def run_question_overlap(
    ctx: BuildContext, qas: dict[str, list[QARecord]], index: dedup.BenchmarkIndex | None
) -> dict[str, list[QARecord]]:
    """Drop generated questions that share a 13-gram with a benchmark question or answer."""
    if index is None or not ctx.recipe.decontaminate.benchmarks:
        return qas
    stats = ctx.stage_stats("decontaminate")
    pairs = [(qa.id, qa.question) for records in qas.values() for qa in records]
    rejects = dedup.question_overlaps(index, pairs)
    dropped = {r.item for r in rejects}
    record_rejects(ctx, stats, rejects)
    bench_rejects = [r for r in ctx.rejects if r.stage == "decontaminate"]
    stats.extra["report"] = dedup.decontamination_report(index, bench_rejects)
    return {sha: [qa for qa in records if qa.id not in dropped] for sha, records in qas.items()}
