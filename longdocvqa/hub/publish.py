"""The Hub-ready dataset folder: Parquet shards with explicit Features, split by document, written streaming.

The layout of `OUT/dataset/`, the configs, columns and row converters are the contract's (core/contract.py).

Shards are bounded by bytes (`publish.max_shard_mb`) and hold row groups of at most `publish.rows_per_group` rows
and `publish.max_row_group_mb` bytes (the Hub's viewer reads row groups up to 100 MB), so a streaming reader never
holds more than a few documents. The `documents` config embeds each source PDF (`publish.include_pdf`), read back
through sources.py and checked against its sha256. Memory stays bounded however many examples there are: rows
arrive as iterables and page images are fetched one example at a time through the `page_image` callback. The
folder is written under a temporary name and swapped in at the end, so a killed build never leaves half a dataset.
Rows carry no timestamps: the same inputs give byte-identical shards.

This module owns the writing (shards, the `sft` row with its images, the swap-in); the statistics the card reports
are stats.py's, the card text card.py's, the upload push.py's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from longdocvqa.core.contract import (
    CONFIGS,
    SHORT_SPLIT,
    count_image_placeholders,
    document_row,
    normalise_messages,
    qa_row,
    shard_name,
    source_of,
    split_for,
)
from longdocvqa.core.errors import LongDocVQAError, RejectedInput
from longdocvqa.core.recipe import Recipe
from longdocvqa.core.records import PdfDoc, QARecord, Reject
from longdocvqa.documents import sources
from longdocvqa.hub.card import BuildReport, write_card
from longdocvqa.hub.features import features_for
from longdocvqa.hub.stats import PublishStats

if TYPE_CHECKING:
    from datasets import Features

PageImage = Callable[[str, int], bytes]
ShortImages = Callable[[int], Sequence[bytes]]
_MB = 1_000_000
_ROW_OVERHEAD_BYTES = 512


def parquet_options(features: Features) -> dict[str, Any]:
    """The Parquet options `datasets.push_to_hub` uses: images PLAIN and uncompressed (already JPEG/PNG, and the
    Hub's Xet storage deduplicates identical pages across shards and versions), other columns snappy with
    dictionaries, content-defined chunking and a page index. Falls back to zstd on `datasets` without them."""
    try:
        from datasets import config
        from datasets.arrow_writer import get_parquet_column_options
    except ImportError:
        return {"compression": "zstd"}
    options = get_parquet_column_options(features, features.arrow_schema)
    cdc = getattr(config, "DEFAULT_CDC_OPTIONS", None)
    return {**options, "write_page_index": True, **({"use_content_defined_chunking": cdc} if cdc else {})}


@dataclass(frozen=True)
class Bounds:
    """How big a shard and a row group may get (a row group holds at least one row, whatever its size)."""

    shard_bytes: int
    group_rows: int
    group_bytes: int


class ShardWriter:
    """Streams the rows of one config and split into byte-bounded Parquet shards of small row groups."""

    def __init__(self, folder: Path, split: str, features: Features, bounds: Bounds) -> None:
        self.folder, self.split, self.features, self.bounds = folder, split, features, bounds
        self.paths: list[Path] = []
        self.num_rows = 0
        self.num_bytes = 0
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._shard_bytes = 0
        self._writer: Any = None

    def add(self, row: dict[str, Any], size_bytes: int) -> None:
        """Queue one row; `size_bytes` is its estimated Parquet size (image and PDF bytes dominate)."""
        size_bytes += _ROW_OVERHEAD_BYTES
        if self._buffer and self._buffer_bytes + size_bytes > self.bounds.group_bytes:
            self._flush()
        self._buffer.append(row)
        self._buffer_bytes += size_bytes
        self.num_rows += 1
        if len(self._buffer) >= self.bounds.group_rows or self._buffer_bytes >= self.bounds.group_bytes:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._buffer:
            return
        if self._writer is None or self._shard_bytes + self._buffer_bytes > self.bounds.shard_bytes:
            self._open_next()
        table = pa.Table.from_pylist(self._buffer, schema=self.features.arrow_schema)
        self._writer.write_table(table, row_group_size=len(self._buffer))
        self.num_bytes += table.nbytes
        self._shard_bytes += self._buffer_bytes
        self._buffer, self._buffer_bytes = [], 0

    def _open_next(self) -> None:
        import pyarrow.parquet as pq

        if self._writer is not None:
            self._writer.close()
        path = self.folder / f"{self.split}-{len(self.paths):05d}.parquet.partial"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(path, self.features.arrow_schema, **parquet_options(self.features))
        self.paths.append(path)
        self._shard_bytes = 0

    def close(self) -> list[Path]:
        """Flush, close and rename the shards to `<split>-<index:05d>-of-<count:05d>.parquet`; returns their paths."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
        final = [p.with_name(shard_name(self.split, i, len(self.paths))) for i, p in enumerate(self.paths)]
        for partial, path in zip(self.paths, final, strict=True):
            partial.rename(path)
        self.paths = final
        return final


class ConfigWriter:
    """One ShardWriter per split of a config, opened on first use."""

    def __init__(self, root: Path, config: str, bounds: Bounds) -> None:
        self.folder = root / "data" / config
        self.features = features_for(config)
        self.bounds = bounds
        self.splits: dict[str, ShardWriter] = {}

    def add(self, split: str, row: dict[str, Any], size_bytes: int) -> None:
        if split not in self.splits:
            self.splits[split] = ShardWriter(self.folder, split, self.features, self.bounds)
        self.splits[split].add(row, size_bytes)

    def close(self) -> dict[str, list[Path]]:
        """Close every split; returns split -> shard paths."""
        return {split: writer.close() for split, writer in sorted(self.splits.items())}


@dataclass
class ImageSource:
    """Where the images of an example come from: document pages, or a short-data row's own images."""

    page_image: PageImage
    short_images: ShortImages | None = None


@dataclass
class DocInfo:
    split: str
    num_pages: int
    licence: str | None = None
    source: str | None = None


@dataclass
class PublishSummary:
    """What `write_dataset` did: the folder, rows per config and split, and the examples it refused."""

    path: Path
    stats: PublishStats
    rejects: list[Reject]

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {config: dict(self.stats.rows[config]) for config in CONFIGS}


def write_dataset(
    dataset_dir: Path,
    recipe: Recipe,
    documents: Iterable[PdfDoc],
    qa_rows: Iterable[Mapping[str, Any] | BaseModel],
    examples: Iterable[Mapping[str, Any] | BaseModel],
    page_image: PageImage,
    build: BuildReport | None = None,
    short_images: ShortImages | None = None,
) -> PublishSummary:
    """Write OUT/dataset/ (shards, card, plots) from kept documents, qa rows (QARecord + num_tokens) and examples.

    `page_image(doc_sha256, page)` returns the encoded image of a 1-based page; `short_images(short_index)` the
    encoded images of a short-data row (examples with `short_index`, which go to `train`); `build` is a
    card.BuildReport (drops, decontamination, histogram PNGs). Bad examples are skipped and returned as Rejects.
    """
    dataset_dir = Path(dataset_dir)
    staging = dataset_dir.with_name(f".{dataset_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    stats = PublishStats()
    rejects: list[Reject] = []
    cfg = recipe.publish
    bounds = Bounds(cfg.max_shard_mb * _MB, cfg.rows_per_group, cfg.max_row_group_mb * _MB)
    writers = {config: ConfigWriter(staging, config, bounds) for config in CONFIGS}
    docs = _write_documents(writers["documents"], documents, recipe, stats, rejects)
    _write_qa(writers["qa"], qa_rows, docs, stats, rejects)
    _write_sft(writers["sft"], examples, docs, ImageSource(page_image, short_images), stats, rejects)
    stats.shards = {config: writer.close() for config, writer in writers.items()}
    stats.num_bytes = {c: {s: w.num_bytes for s, w in writer.splits.items()} for c, writer in writers.items()}
    write_card(staging, recipe, stats, build, page_image)
    _swap_in(staging, dataset_dir)
    stats.shards = {
        c: {s: [dataset_dir / p.relative_to(staging) for p in ps] for s, ps in by_split.items()}
        for c, by_split in stats.shards.items()
    }
    return PublishSummary(dataset_dir, stats, rejects)


def _write_documents(
    writer: ConfigWriter, documents: Iterable[PdfDoc], recipe: Recipe, stats: PublishStats, rejects: list[Reject]
) -> dict[str, DocInfo]:
    docs: dict[str, DocInfo] = {}
    for doc in documents:
        if doc.sha256 in docs:
            continue
        split = split_for(doc.sha256, recipe.publish.test_share)
        docs[doc.sha256] = DocInfo(split, doc.num_pages, doc.licence, source_of(doc))
        pdf = _pdf_bytes(doc, rejects) if recipe.publish.include_pdf else None
        writer.add(split, document_row(doc, pdf), 64 * doc.num_pages + len(pdf or b""))
        stats.add_document(doc, split)
    return docs


def _pdf_bytes(doc: PdfDoc, rejects: list[Reject]) -> bytes | None:
    """The document's file, read again from the pool; None (with a reject line) when it is gone or has changed since
    it was hashed, so the published row never holds bytes other than the ones its sha256 names."""
    try:
        data = sources.read_bytes(doc.path)
    except OSError as exc:
        rejects.append(_reject(doc.path, "pdf_unreadable", f"the PDF is not embedded: {exc.strerror or exc}"))
        return None
    if hashlib.sha256(data).hexdigest() != doc.sha256:
        rejects.append(_reject(doc.path, "pdf_changed", f"the file no longer has sha256 {doc.sha256}: not embedded"))
        return None
    return data


def _write_qa(
    writer: ConfigWriter,
    rows: Iterable[Mapping[str, Any] | BaseModel],
    docs: dict[str, DocInfo],
    stats: PublishStats,
    rejects: list[Reject],
) -> None:
    for record in rows:
        try:
            row = qa_row(record)
        except ValidationError as exc:
            item = record.id if isinstance(record, QARecord) else str(dict(record).get("id"))
            rejects.append(_reject(item, "schema", f"{exc.error_count()} errors, first: {exc.errors()[0]['msg']}"))
            continue
        doc = docs.get(row["doc_sha256"])
        if doc is None:
            rejects.append(_reject(row["id"], "unknown_document", f"document {row['doc_sha256'][:12]} not published"))
            continue
        row.update(licence=doc.licence, source=doc.source)
        writer.add(doc.split, row, len(json.dumps(row)))
        stats.add_qa(row, doc.split)


def _write_sft(
    writer: ConfigWriter,
    examples: Iterable[Mapping[str, Any] | BaseModel],
    docs: dict[str, DocInfo],
    images: ImageSource,
    stats: PublishStats,
    rejects: list[Reject],
) -> None:
    for example in examples:
        data = example.model_dump(mode="json") if isinstance(example, BaseModel) else dict(example)
        try:
            row = sft_row(data, docs, images)
        except ValueError as exc:
            reason, _, detail = str(exc).partition(": ")
            rejects.append(_reject(str(data.get("id")), reason, detail))
            continue
        size = sum(len(image["bytes"]) for image in row["images"]) + len(json.dumps(row["messages"]))
        split = docs[row["doc_id"]].split if row["doc_id"] else SHORT_SPLIT
        writer.add(split, row, size)
        stats.add_example(row, split)


def sft_row(example: Mapping[str, Any], docs: Mapping[str, DocInfo], images: ImageSource) -> dict[str, Any]:
    """An `sft` Parquet row: the example's fields, typed messages, and its images (every page of its document in
    order; a short-data row's own images).

    Raises ValueError("reason: detail") when the example does not fit its document or its images.
    """
    messages = normalise_messages(example["messages"])
    encoded = _example_images(example, docs, images)
    if example["num_pages"] != len(encoded):
        raise ValueError(f"image_count: example has {example['num_pages']} pages, its document {len(encoded)}")
    if count_image_placeholders(messages) != len(encoded):
        raise ValueError(f"placeholders: {count_image_placeholders(messages)} image blocks for {len(encoded)} images")
    doc = docs.get(example["doc_id"]) if example["doc_id"] else None
    return {
        "id": str(example["id"]),
        "task": example["task"],
        "doc_id": example["doc_id"] or "",
        "qa_id": example.get("qa_id") or None,
        "num_pages": len(encoded),
        "num_tokens": int(example["num_tokens"]),
        "images": [{"bytes": data, "path": None} for data in encoded],
        "messages": messages,
        "licence": doc.licence if doc else example.get("licence"),
        "source": doc.source if doc else example.get("source"),
    }


def _example_images(example: Mapping[str, Any], docs: Mapping[str, DocInfo], images: ImageSource) -> list[bytes]:
    if example.get("short_index") is not None:
        if images.short_images is None:
            raise ValueError("short_images: a short-data example but no short_images callback")
        return list(images.short_images(example["short_index"]))
    doc = docs.get(example["doc_id"])
    if doc is None:
        raise ValueError(f"unknown_document: document {example['doc_id'][:12]} not published")
    return [_page_bytes(images.page_image, example["doc_id"], page) for page in range(1, doc.num_pages + 1)]


def _page_bytes(page_image: PageImage, doc_sha256: str, page: int) -> bytes:
    try:
        return page_image(doc_sha256, page)
    except RejectedInput as exc:  # the caller's own reason, e.g. render_failed naming the file
        raise ValueError(f"{exc.reason}: {exc.detail}") from None
    except (LongDocVQAError, OSError) as exc:
        raise ValueError(f"page_image: page {page} could not be rendered: {exc}") from None


def _reject(item: str, reason: str, detail: str) -> Reject:
    return Reject(stage="publish", item=item, reason=reason, detail=detail)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` (the old folder is removed only after the new one is in place)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
