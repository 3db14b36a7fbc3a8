"""Publish stage: OUT/dataset/ (Parquet shards with embedded page images, the card, the length plots).

Keyed by the picks and `publish_key` (the whole resolved recipe and the longdocvqa version): unchanged picks
under an unchanged recipe are not written again. Once published, the assembly's and publish's stats and rejects are
saved under the assembly's inputs hash (`RunDir.assemble_marker`), so a rerun with the same inputs restores them
(`restore_published`) without assembling again. Every page of the picked documents is rendered into the page cache
first, each document in its own isolated worker (runner/loop.py render_into_cache); a document MuPDF cannot render,
or whose render crashes, overruns or runs out of memory, is one reject per example naming the file, never a failed
build. The card's decontamination report and drops are passed in by pipeline.py.
Does not own: the Parquet layout, Features and card (hub/publish.py, hub/card.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from longdocvqa import __version__
from longdocvqa.assembly.assemble import Assembly
from longdocvqa.assembly.stats import write_length_plots
from longdocvqa.audit.report import saved_summary
from longdocvqa.core.errors import RejectedInput, one_line
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.integrity import published_intact, record_published
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import Reject
from longdocvqa.core.store import atomic_write_text
from longdocvqa.generate import make_generator
from longdocvqa.generate.quality import quality_markdown
from longdocvqa.hub.card import BuildReport
from longdocvqa.hub.load import short_row_images
from longdocvqa.hub.publish import write_dataset
from longdocvqa.runner.loop import (
    BuildContext,
    PageImages,
    StageResult,
    StageStats,
    record_reject,
    record_rejects,
    render_into_cache,
    timed,
)

T = TypeVar("T")


def run_publish(
    ctx: BuildContext, assembled: StageResult[Assembly], inputs_hash: str, decontamination: dict[str, Any],
    drops: dict[str, int],
) -> StageResult[int]:  # fmt: skip
    """Write OUT/dataset/ (Parquet shards with embedded page images, card, plots), unless already written; the
    outputs: the number of SFT rows published. `inputs_hash`: the assembly's (`assemble_key`), naming its saved
    marker; `decontamination`, `drops`: the card's report and drops by reason."""
    assembly = assembled.outputs
    picks = [(p.id, p.doc_id, p.short_index) for p in assembly.picks]
    fp = content_hash({"recipe": publish_key(ctx.recipe), "picks": picks, "v": 1}, length=16)
    marker = ctx.run.publish_marker(fp)
    with timed(ctx, "publish") as stats:
        stats.seen = len(picks)
        if published_intact(marker, ctx.run.dataset_dir):  # as published: sizes and sha256 of every file
            stats.reused = stats.kept = len(picks)
            _save_assembly(ctx, inputs_hash, fp, assembled.stats, stats, list(assembly.rejects))
            return StageResult(stats.kept, stats)
        images = PageImages(ctx.run, ctx.recipe)
        pages = ((doc, range(1, doc.num_pages + 1)) for doc in assembly.documents())
        unrendered = render_into_cache(ctx, "publish", pages)
        plots = write_length_plots(assembly.stats, ctx.run.plots_dir)
        report = BuildReport(
            drops_by_reason=drops, decontamination=decontamination,
            generator=_generator_name(ctx.recipe), audit=saved_summary(ctx.run.root),
            length_histogram_png=plots["length"], pages_histogram_png=plots["pages"],
            notes=_quality_notes(ctx), **_what_ran(ctx.recipe),
        )  # fmt: skip
        with ctx.progress.stage("publish", len(picks)) as advance:
            summary = write_dataset(
                ctx.run.dataset_dir, ctx.recipe, assembly.documents(), assembly.qa_rows(),
                _advancing(assembly.examples(), advance), _publish_pages(images, assembly, unrendered),
                build=report, short_images=_short_images(assembly),
            )  # fmt: skip
        record_rejects(ctx, stats, summary.rejects)
        stats.kept = sum(summary.counts["sft"].values())
        stats.extra["rows"] = summary.counts
        stats.extra["files"] = record_published(marker, fp, ctx.run.dataset_dir)
    _save_assembly(ctx, inputs_hash, fp, assembled.stats, stats, [*assembly.rejects, *summary.rejects])
    return StageResult(stats.kept, stats)


def publish_key(recipe: Recipe) -> str:
    """What the published bytes and card depend on besides the picks: the whole resolved recipe (version,
    licence, shard size, names, descriptions...) and the longdocvqa version that writes them."""
    return content_hash({"recipe": recipe.fingerprint(), "longdocvqa": __version__}, length=16)


def restore_published(ctx: BuildContext, inputs_hash: str) -> bool:
    """Whether an assembly of the same inputs (`inputs_hash`, from `assemble_key`) was already published under the
    same settings; if so, the assemble and publish stages' stats and rejects are restored from its saved marker."""
    done = ctx.run.assemble_marker(inputs_hash)
    if not done.is_file():
        return False
    saved = json.loads(done.read_text(encoding="utf-8"))
    if not published_intact(ctx.run.publish_marker(saved["publish_fp"]), ctx.run.dataset_dir):
        return False
    if saved.get("publish_key") != publish_key(ctx.recipe):
        return False  # published under other settings (version, licence, shard size, card text...): publish again
    for name in ("assemble", "publish"):
        stats = ctx.stage_stats(name)
        stats.seen, stats.kept, stats.reused = saved[name]["seen"], saved[name]["kept"], saved[name]["seen"]
        stats.extra.update(saved[name]["extra"])
    for reject in saved["rejects"]:
        stage = "assemble" if reject["stage"] == "assemble" else "publish"
        record_reject(ctx, ctx.stats[stage], Reject.model_validate(reject))
    return True


def _save_assembly(
    ctx: BuildContext, inputs_hash: str, publish_fp: str, assembled: StageStats, published: StageStats,
    rejects: list[Reject],
) -> None:  # fmt: skip
    stages = {name: {"seen": stats.seen, "kept": stats.kept, "extra": stats.extra}
              for name, stats in (("assemble", assembled), ("publish", published))}  # fmt: skip
    payload = {
        "publish_fp": publish_fp,
        "publish_key": publish_key(ctx.recipe),
        "rejects": [r.model_dump(mode="json") for r in rejects],
        **stages,
    }
    atomic_write_text(ctx.run.assemble_marker(inputs_hash), json.dumps(payload, sort_keys=True))


def _advancing(items: Iterable[T], advance: Callable[[int], None]) -> Iterator[T]:
    for item in items:
        yield item
        advance(1)


def _publish_pages(
    images: PageImages, assembly: Assembly, unrendered: dict[str, Reject]
) -> Callable[[str, int], bytes]:
    """publish's page_image, from the page cache (render_into_cache filled it, one isolated worker per document): a
    page of a document that could not be rendered raises RejectedInput naming the file and the cause, so
    write_dataset skips that example with a reject."""

    def page_image(sha: str, page: int) -> bytes:
        if (failed := unrendered.get(sha)) is not None:
            raise RejectedInput(failed.reason, failed.detail)
        doc = assembly.docs[sha]
        try:
            return images.get(doc, page)
        except OSError as exc:
            raise RejectedInput("render_failed", f"{doc.path} page {page}: {one_line(exc)}") from None

    return page_image


def _short_images(assembly: Assembly) -> Callable[[int], list[bytes]] | None:
    rows = assembly.short_rows
    if rows is None:
        return None
    return lambda index: short_row_images(rows[index])


def _what_ran(recipe: Recipe) -> dict[str, Any]:
    """The card's account of generation, verification and decontamination, from the settings this build ran."""
    generator = make_generator(recipe.generate)
    return {
        "generator_kind": recipe.generate.generator.kind,
        "prompt_version": generator.prompt_version,
        "verifier": generator.verifier_model,
        "benchmarks": [b.name for b in recipe.decontaminate.benchmarks],
        "within_pool": recipe.decontaminate.within_pool,
    }


def _quality_notes(ctx: BuildContext) -> str:
    """The card's paragraph on verification agreement, multi-page necessity and the judge (generate/quality.py)."""
    generator = make_generator(ctx.recipe.generate)
    quality = ctx.stats.get("generate", StageStats()).extra.get("quality", {})
    threshold = ctx.recipe.generate.judge.threshold
    return quality_markdown(quality, generator.verifier_model, generator.judge_model, threshold)


def _generator_name(recipe: Recipe) -> str:
    return make_generator(recipe.generate).name
