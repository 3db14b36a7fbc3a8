"""Publish stage: OUT/dataset/ (Parquet shards with embedded page images, the card, the length plots).

Keyed by the picks and `publish_key` (the whole resolved recipe and the longdocvqa version): unchanged picks
under an unchanged recipe are not written again, and the assembly's stats and rejects are restored from its
marker (`reuse_published`). Every page of the picked documents is rendered into the page cache first, each
document in its own isolated worker (runner.render_into_cache); a document MuPDF cannot render, or whose render
crashes, overruns or runs out of memory, is one reject per example naming the file, never a failed build.
Does not own: the Parquet layout, Features and card (hub/publish.py, hub/card.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from longdocvqa import __version__
from longdocvqa.assembly.assemble import Assembly
from longdocvqa.assembly.stats import write_length_plots
from longdocvqa.audit.report import saved_summary
from longdocvqa.core.errors import RejectedInput
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import Reject
from longdocvqa.core.store import atomic_write_text
from longdocvqa.generate import make_generator
from longdocvqa.hub.card import BuildReport
from longdocvqa.hub.load import short_row_images
from longdocvqa.hub.publish import write_dataset
from longdocvqa.runner.loop import (
    BuildContext,
    PageImages,
    StageStats,
    one_line,
    record_reject,
    record_rejects,
    render_into_cache,
    timed,
)

T = TypeVar("T")


def run_publish(ctx: BuildContext, assembly: Assembly, done: Path) -> None:
    """Write OUT/dataset/ (Parquet shards with embedded page images, card, plots), unless already written."""
    picks = [(p.id, p.doc_id, p.short_index) for p in assembly.picks]
    fp = content_hash({"recipe": publish_key(ctx.recipe), "picks": picks, "v": 1}, length=16)
    marker = ctx.run.root / "stages" / "publish" / f"{fp}.done"
    with timed(ctx, "publish") as stats:
        stats.seen = len(picks)
        if marker.is_file() and (ctx.run.dataset_dir / "README.md").is_file():
            stats.reused = stats.kept = len(picks)
            _save_assembly(ctx, done, fp, list(assembly.rejects))
            return
        images = PageImages(ctx.run.cache_dir, ctx.recipe)
        pages = ((doc, range(1, doc.num_pages + 1)) for doc in assembly.documents())
        unrendered = render_into_cache(ctx, "publish", pages)
        plots = write_length_plots(assembly.stats, ctx.run.root / "plots")
        decontamination = ctx.stats.get("decontaminate", StageStats()).extra.get("report", {})
        report = BuildReport(
            drops_by_reason=drops_by_reason(ctx.rejects), decontamination=decontamination,
            generator=_generator_name(ctx.recipe), audit=saved_summary(ctx.run.root),
            length_histogram_png=plots["length"], pages_histogram_png=plots["pages"],
            **_what_ran(ctx.recipe),
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
        atomic_write_text(marker, fp + "\n")
    _save_assembly(ctx, done, fp, [*assembly.rejects, *summary.rejects])


def publish_key(recipe: Recipe) -> str:
    """What the published bytes and card depend on besides the picks: the whole resolved recipe (version,
    licence, shard size, names, descriptions...) and the longdocvqa version that writes them."""
    return content_hash({"recipe": recipe.fingerprint(), "longdocvqa": __version__}, length=16)


def reuse_published(ctx: BuildContext, done: Path) -> bool:
    """Restore the stats of an assembly whose dataset was already published from the same inputs."""
    if not done.is_file():
        return False
    saved = json.loads(done.read_text(encoding="utf-8"))
    publish_marker = ctx.run.root / "stages" / "publish" / f"{saved['publish_fp']}.done"
    if not publish_marker.is_file() or not (ctx.run.dataset_dir / "README.md").is_file():
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


def _save_assembly(ctx: BuildContext, done: Path, publish_fp: str, rejects: list[Reject]) -> None:
    stages = {name: {"seen": ctx.stats[name].seen, "kept": ctx.stats[name].kept, "extra": ctx.stats[name].extra}
              for name in ("assemble", "publish")}  # fmt: skip
    payload = {
        "publish_fp": publish_fp,
        "publish_key": publish_key(ctx.recipe),
        "rejects": [r.model_dump(mode="json") for r in rejects],
        **stages,
    }
    atomic_write_text(done, json.dumps(payload, sort_keys=True))


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


def _generator_name(recipe: Recipe) -> str:
    return make_generator(recipe.generate).name


def drops_by_reason(rejects: Iterable[Reject]) -> dict[str, int]:
    """Reject counts by `stage/reason`, sorted."""
    return dict(sorted(Counter(f"{r.stage}/{r.reason}" for r in rejects).items()))
