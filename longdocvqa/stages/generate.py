"""Generate stage: questions and answers for every planned (document, task) unit, through the model ledger.

Per-document results are stored under the document and its task subset (a task added later pays only its calls);
a document whose calls failed at the endpoint is not stored as done, so the next run retries exactly those calls
(finished ones are replayed from the ledger, never paid twice). Documents run concurrently on one event loop, or
over `generate.processes` worker processes (runner/local.py ProcessPool; Ray actors under `--executor ray`),
each with its share of the endpoint's concurrency and its own call-ledger shard, merged when the stage ends.
Scanned pages are transcribed first when layout.ocr is `vlm`.
The page images a document's calls need are rendered beforehand, each document in its own isolated worker
(runner.render_into_cache): a page MuPDF cannot render, or a render that crashes, overruns or runs out of memory,
is one reject naming the file.
Does not own: prompts, checks and the generators (generate/), the model client and ledger (llm/).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from longdocvqa.core.errors import ExternalServiceError, RecipeError
from longdocvqa.core.fingerprint import stage_fingerprint
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import LayoutDoc, PdfDoc, QARecord, Reject, Segment
from longdocvqa.core.store import RunDir, StageOutput
from longdocvqa.core.store import dump as store_dump
from longdocvqa.generate import generate_document, make_generator, open_clients, transcribe_page
from longdocvqa.llm import Ledger, LLMClient, merge_usage
from longdocvqa.llm.ledger import merge_shards, shard_path
from longdocvqa.runner.executor import ClientPool, Job
from longdocvqa.runner.local import ProcessPool, worker_advance
from longdocvqa.runner.loop import (
    BuildContext,
    PageImages,
    Progress,
    check_generate_budget,
    one_line,
    record_reject,
    render_into_cache,
    still_to_do,
    timed,
)
from longdocvqa.stages.layout import load_layout, ocr_fingerprint
from longdocvqa.stages.plan import name_document, unit_key

VERSION = 2  # 2: template-v2 (the template baseline asks page distances, not counts)

# Endpoint settings that change how calls are made, not what they produce: left out of the fingerprint.
_HOW_NOT_WHAT = {
    "base_url",
    "base_url_env",
    "api_key_env",
    "timeout_s",
    "max_concurrency",
    "max_retries",
    "max_reply_mb",
    "drain_after_failures",
    "drain_cooldown_s",
}


def generate_fingerprint(recipe: Recipe, segment_fp: str) -> str:
    cfg = recipe.generate.model_dump(mode="json")
    cfg.pop("processes")  # how calls are spread over processes, not what they return
    for endpoint in (cfg["generator"]["endpoint"], (cfg["verify"].get("endpoint") or {})):
        for key in _HOW_NOT_WHAT:
            endpoint.pop(key, None)
    what = {"generate": cfg, "seed": recipe.seed, "render": recipe.render}
    return stage_fingerprint("generate", VERSION, what, [segment_fp])


def run_generate(
    ctx: BuildContext, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str, segment_fp: str,
    tasks: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[QARecord]]:  # fmt: skip
    """QA for every segment and task (or each document's planned `tasks`); per-document results are stored under
    the document and its task subset, model calls go through the ledger (a task added later pays only its calls)."""
    out = ctx.run.stage("generate", generate_fingerprint(ctx.recipe, segment_fp))
    key = _unit_keys(ctx, docs, tasks)
    with timed(ctx, "generate") as stats:
        jobs = [Job(key[d.sha256], d.path, (d,)) for d in docs if d.sha256 in segments]
        todo = [job.args[0] for job in still_to_do(ctx, "generate", out, jobs)]
        pending: dict[str, dict[str, Any]] = {}
        todo = _render_pages(ctx, todo, segments, layout_fp, out, key, pending)
        processes = min(ctx.recipe.generate.processes, len(todo))
        remote = ctx.document_executor().client_pool()  # Ray: client actors, even for one share
        if processes > 1 or (remote is not None and todo):
            usage = _generate_in_processes(
                ctx, todo, segments, layout_fp, out.fingerprint, pending, processes, tasks, remote
            )
        else:
            merge_shards(ctx.run.ledger_path)  # a crashed multi-process run's writer shards: replayed from here
            usage = asyncio.run(_generate_all(ctx, todo, segments, layout_fp, out, pending, tasks)) if todo else {}
        result: dict[str, list[QARecord]] = {}
        for doc in docs:
            if doc.sha256 in segments:
                data = pending.get(doc.sha256) or out.read(key[doc.sha256])["ok"]
                result[doc.sha256] = [QARecord.model_validate(r) for r in data["records"]]
                for reject in data["rejects"]:
                    record_reject(ctx, stats, name_document(Reject.model_validate(reject), doc.path))
        records = [r for rs in result.values() for r in rs]
        stats.kept = len(records)
        stats.extra.update(qa=len(records), by_task=dict(sorted(Counter(r.task for r in records).items())))
        if usage:
            stats.extra["usage"] = usage
        if pending:
            stats.extra["incomplete_documents"] = len(pending)  # endpoint errors: retried on the next run
    if make_generator(ctx.recipe.generate).makes_model_calls:  # the template generator makes none
        check_generate_budget(ctx, stats)
    return result


def _render_pages(
    ctx: BuildContext, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str, out: StageOutput,
    key: dict[str, str], pending: dict[str, dict[str, Any]],
) -> list[PdfDoc]:  # fmt: skip
    """Render the pages generation reads into the page cache, each document in its own isolated worker (so a MuPDF
    crash, a memory blow-up or a hang is one reject); a document that could not be rendered gets its reject as its
    result (a timeout is retried on the next run). Returns the documents to generate."""
    wanted = [(doc, _pages_read(ctx, doc, segments[doc.sha256], layout_fp)) for doc in docs]
    failed = render_into_cache(ctx, "generate", wanted)
    for sha, reject in failed.items():
        result = {"records": [], "rejects": [reject]}
        if _complete(result):
            out.write(key[sha], result)
        else:
            pending[sha] = json.loads(json.dumps(store_dump(result)))
    return [doc for doc in docs if doc.sha256 not in failed]


def _pages_read(ctx: BuildContext, doc: PdfDoc, segs: list[Segment], layout_fp: str) -> list[int]:
    """The 1-based pages whose images generation reads: the segments' pages (image input) and the scanned pages a
    VLM transcribes (layout.ocr: vlm)."""
    generator = make_generator(ctx.recipe.generate)
    pages = {p for seg in segs for p in seg.pages} if generator.needs_images else set()
    if ctx.recipe.layout.ocr == "vlm" and generator.makes_model_calls:
        layout = load_layout(ctx.run, layout_fp, doc.sha256)
        pages |= {p.index for p in layout.pages if p.image_only} if layout is not None else set()
    return sorted(pages)


def _unit_keys(ctx: BuildContext, docs: list[PdfDoc], tasks: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
    every = ctx.recipe.generate.tasks
    return {d.sha256: unit_key(d.sha256, None if tasks is None else tasks.get(d.sha256), every) for d in docs}


async def _generate_all(
    ctx: BuildContext,
    docs: list[PdfDoc],
    segments: dict[str, list[Segment]],
    layout_fp: str,
    out: StageOutput,
    pending: dict[str, dict[str, Any]],
    tasks: Mapping[str, Sequence[str]] | None = None,
    ledger_path: str | None = None,
) -> dict[str, Any]:
    cfg = ctx.recipe.generate
    client, verifier = open_clients(cfg, ledger_path or str(ctx.run.ledger_path))
    images = PageImages(ctx.run.cache_dir, ctx.recipe)
    servers = max(1, len(cfg.generator.endpoint.resolved_base_urls()))  # max_concurrency is per server
    limit = asyncio.Semaphore(max(4, cfg.generator.endpoint.max_concurrency * servers))
    key = _unit_keys(ctx, docs, tasks)
    try:
        with ctx.progress.stage("generate", len(docs)) as advance:

            async def one(doc: PdfDoc) -> None:
                async with limit:
                    result = await _within_time_limit(ctx, doc, _generate_document(
                        ctx, doc, segments[doc.sha256], layout_fp, client, verifier, images,
                        None if tasks is None else tasks.get(doc.sha256),
                    ))  # fmt: skip
                if result is not None and _complete(result):
                    out.write(key[doc.sha256], result)
                elif result is not None:
                    pending[doc.sha256] = json.loads(json.dumps(store_dump(result)))
                advance(1)

            await asyncio.gather(*(one(doc) for doc in docs))
        if client is None:
            return {}
        return {"generator": client.usage(), **({"verifier": verifier.usage()} if verifier else {})}
    finally:
        for c in (client, verifier):
            if c is not None:
                await c.aclose()
        if ledger_path is not None and client is not None:
            client.ledger.close()  # a writer shard: unlocked now, so the driver can merge it while this worker lives


async def _within_time_limit(
    ctx: BuildContext, doc: PdfDoc, work: Awaitable[dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Await one document's generation for at most isolation.seconds_per_document (0: no limit); past it the
    document is rejected `timeout` and not stored as done, so the next run retries it (finished calls are ledgered)."""
    seconds = ctx.recipe.isolation.seconds_per_document
    if not seconds:
        return await work
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        detail = f"generation took over {seconds:g} s (isolation.seconds_per_document); retried on the next run"
        return {"records": [], "rejects": [Reject(stage="generate", item=doc.path, reason="timeout", detail=detail)]}


def _generate_in_processes(
    ctx: BuildContext, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str,
    generate_fp: str, pending: dict[str, dict[str, Any]], processes: int,
    tasks: Mapping[str, Sequence[str]] | None = None, remote: ClientPool | None = None,
) -> dict[str, Any]:  # fmt: skip
    """_generate_all over `processes` worker processes (or `remote` workers: Ray actors), each with 1/processes of
    the documents and of the endpoint's concurrency; one client process tops out near 300 requests/s of its own
    CPU (2 cores)."""
    Ledger(ctx.run.ledger_path).close()  # create it and switch it to WAL once, before several processes open it
    merge_shards(ctx.run.ledger_path)  # a crashed run's writer shards first; each worker writes its own (llm/ledger)
    recipe = _concurrency_share(ctx.recipe, processes)
    shards = [docs[i::processes] for i in range(processes)]
    jobs = [
        Job(f"shard-{index}", f"{len(shard)} documents", (
            recipe, str(ctx.run.root), shard, {d.sha256: segments[d.sha256] for d in shard}, layout_fp, generate_fp,
            None if tasks is None else {d.sha256: list(tasks.get(d.sha256, [])) for d in shard},
        ))
        for index, shard in enumerate(shards)
    ]  # fmt: skip
    usage: dict[str, Any] = {}
    with ctx.progress.stage("generate", len(docs)) as advance:
        if remote is not None:
            runs = remote.map(_generate_shard_async, jobs, advance)
        else:
            runs = ProcessPool(processes, advance).map(_generate_shard, jobs)
        try:
            with contextlib.closing(runs):
                for _job, (shard_usage, shard_pending) in runs:
                    usage = merge_usage(usage, shard_usage)
                    pending.update(shard_pending)
        finally:
            merge_shards(ctx.run.ledger_path)  # every call paid for, in the one ledger; a live writer's shard waits
    return usage


def _concurrency_share(recipe: Recipe, processes: int) -> Recipe:
    """The recipe as one of `processes` workers sees it: 1/processes of each endpoint's max_concurrency."""
    data = recipe.model_dump(mode="json")
    for endpoint in (data["generate"]["generator"]["endpoint"], data["generate"]["verify"].get("endpoint")):
        if endpoint:
            endpoint["max_concurrency"] = -(-endpoint["max_concurrency"] // processes)
    return Recipe.model_validate(data)


class _QueueProgress(Progress):
    """A worker's progress: document counts go to the parent's bar through the queue."""

    def stage(self, name: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(worker_advance)


def _generate_shard(
    recipe: Recipe, run_root: str, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str,
    generate_fp: str, tasks: dict[str, list[str]] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:  # fmt: skip
    """One worker process's documents: (usage, incomplete documents); finished documents are stored as they finish."""
    return asyncio.run(_generate_shard_async(recipe, run_root, docs, segments, layout_fp, generate_fp, tasks))


async def _generate_shard_async(
    recipe: Recipe, run_root: str, docs: list[PdfDoc], segments: dict[str, list[Segment]], layout_fp: str,
    generate_fp: str, tasks: dict[str, list[str]] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:  # fmt: skip
    """_generate_shard on the caller's event loop (a Ray client actor's)."""
    ctx = BuildContext(recipe=recipe, run=RunDir(run_root), workers=1, progress=_QueueProgress())
    pending: dict[str, dict[str, Any]] = {}
    out = ctx.run.stage("generate", generate_fp)
    ledger = str(shard_path(ctx.run.ledger_path))  # this process's own file: no two writers share one (llm/ledger)
    usage = await _generate_all(ctx, docs, segments, layout_fp, out, pending, tasks, ledger)
    return usage, pending


def _complete(result: dict[str, Any]) -> bool:
    """A document whose calls failed at the endpoint is not stored as done: the next run retries those calls."""
    return not any(r.reason in _RETRY_NEXT_RUN for r in result["rejects"])


_RETRY_NEXT_RUN = {"endpoint_error", "generate_failed", "reply_too_large", "timeout"}  # raise max_reply_mb and rerun


async def _generate_document(
    ctx: BuildContext, doc: PdfDoc, segs: list[Segment], layout_fp: str,
    client: LLMClient | None, verifier: LLMClient | None, images: PageImages, tasks: Sequence[str] | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    cfg = ctx.recipe.generate
    if tasks is not None:  # the plan's tasks for this document only
        cfg = cfg.model_copy(update={"tasks": [t for t in cfg.tasks if t in tasks]})
    layout = load_layout(ctx.run, layout_fp, doc.sha256)
    if layout is None:
        return None
    ocr_rejects: list[Reject] = []
    needs_images = make_generator(cfg).needs_images
    try:
        if ctx.recipe.layout.ocr == "vlm" and client is not None and any(p.image_only for p in layout.pages):
            layout, segs, ocr_rejects = await _ocr_image_pages(ctx, doc, layout, segs, layout_fp, client, images)
    except ExternalServiceError:
        raise
    except OSError as exc:  # a page image missing from the cache (rendered by _render_pages): this document only
        return {"records": [], "rejects": [Reject(stage="generate", item=doc.path, reason="render_failed",
                                                  detail=f"{doc.path}: {one_line(exc)}")]}  # fmt: skip
    page_image = (lambda i: images.get(doc, i)) if needs_images else None
    try:
        records, rejects = await generate_document(
            doc, layout, segs, cfg, ctx.recipe.seed, client, page_image, verifier=verifier
        )
    except (ExternalServiceError, RecipeError):
        raise  # the endpoint is down beyond the retry budget, or the recipe is wrong: stop; finished work is kept
    except Exception as exc:  # a failure on one document is recorded, never fatal to the build
        reject = Reject(stage="generate", item=doc.path, reason="generate_failed", detail=one_line(exc))
        records, rejects = [], [reject]
    return {"records": records, "rejects": ocr_rejects + rejects}


async def _ocr_image_pages(
    ctx: BuildContext, doc: PdfDoc, layout: LayoutDoc, segs: list[Segment], layout_fp: str,
    client: LLMClient, images: PageImages,
) -> tuple[LayoutDoc, list[Segment], list[Reject]]:  # fmt: skip
    """Fill scanned pages' blocks with a VLM transcription (through the ledger) and store the completed layout."""
    rejects = []
    scanned = [p for p in layout.pages if p.image_only]
    pictures = await asyncio.to_thread(images.get_many, doc, [p.index for p in scanned])
    for page in scanned:
        size = (page.width_pt, page.height_pt)
        blocks, reject = await transcribe_page(
            client, pictures[page.index], page.index, size, max_pixels=ctx.recipe.generate.max_pixels
        )
        if reject is not None:
            rejects.append(reject.model_copy(update={"item": f"{doc.path} {reject.item}"}))
        page.blocks = [*blocks, *(b for b in page.blocks if b.label == "figure")]
    ctx.run.stage("layout-ocr", ocr_fingerprint(ctx.recipe, layout_fp)).write(doc.sha256, layout)
    texts = [seg.model_copy(update={"page_texts": [layout.page_text(p) for p in seg.pages]}) for seg in segs]
    return layout, texts, rejects
