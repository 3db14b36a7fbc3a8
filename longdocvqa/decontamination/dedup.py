"""Benchmark decontamination and within-pool near-duplicate removal: the checks and the report (pure: no PDF).

Owns: the checks on the pool (`bench_sha256`, `bench_near_dup`, `pool_near_dup`), the question check
(`bench_question_overlap`) and the decontamination report. The primitives are minhash.py's (text, and the
per-document `SignatureCache`) and pagehash.py's (images); the benchmark index is benchindex.py's.

Does not own: reading PDFs or datasets (callers pass page texts and page images; `hub/benchmarks.py` loads the
benchmark sources), nor writing rejects.jsonl or the manifest (the decontaminate stage does).

Windows catch a benchmark embedded in a longer pool PDF and a pool PDF that is an excerpt of a benchmark (both
sides are windowed), while a single shared boilerplate page (a licence) stays far below the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import DecontaminateConfig
from longdocvqa.core.records import Reject
from longdocvqa.decontamination.benchindex import BenchmarkIndex, SourceSummary, question_grams, settings_fingerprint
from longdocvqa.decontamination.minhash import (
    PageSignatures,
    SignatureCache,
    SignatureLSH,
    SignatureSettings,
    TextSource,
    estimate_jaccard,
    lsh_params,
    normalised_words,
)
from longdocvqa.decontamination.pagehash import PageHashTable, aligned_matches, image_similarity, informative

STAGE = "decontaminate"


# ---------------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------------


def _reject(item: str, reason: str, detail: str, **extra: object) -> Reject:
    return Reject(stage=STAGE, item=item, reason=reason, detail=detail, extra=extra)


def _sha_match(index: BenchmarkIndex, sha256: str) -> Reject | None:
    if sha256 not in index.files:
        return None
    source, item = index.files[sha256]
    detail = f"same bytes as {source} item {item!r}"
    return _reject(sha256, "bench_sha256", detail, benchmark=source, benchmark_item=item, similarity=1.0)


def _text_match(index: BenchmarkIndex, sha256: str, signatures: PageSignatures) -> Reject | None:
    """The best benchmark span whose estimated Jaccard with the document or a window of it reaches the threshold."""
    best: tuple[float, int, int, int] | None = None  # (similarity, span, first, last)
    for first, last, signature in signatures.spans(index.config.window_pages):
        candidates = index.lsh().query(signature)
        if not candidates:
            continue
        scores = estimate_jaccard(signature, index.signatures[candidates])
        top = int(np.argmax(scores))
        if scores[top] >= index.config.threshold and (best is None or scores[top] > best[0]):
            best = (float(scores[top]), candidates[top], first, last)
    if best is None:
        return None
    similarity, span, first, last = best
    source, item, bench_first, bench_last, _ = index.spans[span]
    detail = (
        f"pages {first}-{last} match {source} item {item!r} pages {bench_first}-{bench_last} "
        f"(estimated Jaccard {similarity:.2f})"
    )
    return _reject(
        sha256, "bench_near_dup", detail, benchmark=source, benchmark_item=item, similarity=round(similarity, 4),
        method="minhash", pages=[first, last], benchmark_pages=[bench_first, bench_last],
    )  # fmt: skip


def _image_match(index: BenchmarkIndex, sha256: str, hashes: list[tuple[int, int]], num_pages: int) -> Reject | None:
    """The benchmark document sharing the largest share of near-identical page images, if it reaches the threshold."""
    best: tuple[float, int] | None = None
    for owner, matched in sorted(aligned_matches(hashes, index.image_index()).items()):
        _, _, bench_pages = index.image_docs[owner]
        score = image_similarity(matched, num_pages, bench_pages, index.config.window_pages)
        if score >= index.config.threshold and (best is None or score > best[0]):
            best = (score, owner)
    if best is None:
        return None
    source, item, _ = index.image_docs[best[1]]
    detail = f"page images match {source} item {item!r} (share of pages {best[0]:.2f})"
    return _reject(
        sha256, "bench_near_dup", detail, benchmark=source, benchmark_item=item, similarity=round(best[0], 4),
        method="dhash",
    )  # fmt: skip


@dataclass
class _PoolDocument:
    """What the within-pool pass needs of a document that passed the benchmark checks."""

    sha256: str
    signature: np.ndarray | None = None
    page_hashes: list[tuple[int, int]] = field(default_factory=list)
    num_pages: int = 0


def _check_one(
    index: BenchmarkIndex,
    sha256: str,
    pages: TextSource,
    cache: SignatureCache,
    page_images: Callable[[str], Sequence[Any]] | None,
) -> Reject | _PoolDocument:
    if (reject := _sha_match(index, sha256)) is not None:
        return reject
    signatures = cache.signatures(sha256, pages)
    if signatures.spans(index.config.window_pages):
        reject = _text_match(index, sha256, signatures)
        return reject or _PoolDocument(sha256, signature=signatures.document(), num_pages=signatures.num_pages)
    if page_images is None:
        return _PoolDocument(sha256, num_pages=signatures.num_pages)
    all_hashes = cache.image_hashes(sha256, lambda: page_images(sha256))
    hashes = informative(all_hashes)
    reject = _image_match(index, sha256, hashes, signatures.num_pages) if hashes else None
    return reject or _PoolDocument(sha256, page_hashes=hashes, num_pages=max(signatures.num_pages, len(all_hashes)))


def check_documents(
    index: BenchmarkIndex,
    docs: Iterable[tuple[str, TextSource]],
    config: DecontaminateConfig,
    cache_dir: str | Path,
    page_images: Callable[[str], Sequence[Any]] | None = None,
) -> tuple[set[str], list[Reject], dict[str, object]]:
    """Check pool documents, in order: `bench_sha256`, `bench_near_dup` (text MinHash over the document and its
    page windows; page-image hashes for documents without text when `page_images(sha256)` is given), then
    `pool_near_dup` among the survivors (the smallest sha256 of a near-duplicate group is kept).

    `docs` holds (sha256, page texts) pairs; the texts may be a function, called only when the document's
    signatures are not cached yet. Returns the kept sha256s, one Reject per dropped document, and the report."""
    _check_settings(index, config)
    cache = SignatureCache(cache_dir, SignatureSettings.from_config(config))
    rejects: list[Reject] = []
    survivors: list[_PoolDocument] = []
    seen: set[str] = set()
    for sha256, pages in docs:
        if sha256 in seen:
            continue
        seen.add(sha256)
        outcome = _check_one(index, sha256, pages, cache, page_images)
        (rejects if isinstance(outcome, Reject) else survivors).append(outcome)  # type: ignore[arg-type]
    if config.within_pool:
        rejects += _within_pool(survivors, config)
    dropped = {r.item for r in rejects}
    return seen - dropped, rejects, decontamination_report(index, rejects)


def _check_settings(index: BenchmarkIndex, config: DecontaminateConfig) -> None:
    if settings_fingerprint(index.config) != settings_fingerprint(config):
        raise StageError(
            "decontaminate: the benchmark index was built with other settings "
            f"({settings_fingerprint(index.config)} vs {settings_fingerprint(config)}); rebuild it"
        )


def _within_pool(survivors: Sequence[_PoolDocument], config: DecontaminateConfig) -> list[Reject]:
    """Near-duplicate documents inside the pool. Documents are visited by ascending sha256 and each is compared
    with the documents kept so far, so of every near-duplicate pair the smaller sha256 stays, whatever the input
    order. Text documents compare whole-document signatures; image-only ones compare page-image hashes."""
    lsh = SignatureLSH(config.threshold, config.num_perm)
    images = PageHashTable()
    kept: list[_PoolDocument] = []
    rejects = []
    for doc in sorted(survivors, key=lambda d: d.sha256):
        match = _pool_match(doc, kept, lsh, images, config)
        if match is not None:
            other, similarity = match
            detail = f"near-duplicate of pool document {other} (estimated similarity {similarity:.2f})"
            rejects.append(_reject(doc.sha256, "pool_near_dup", detail, duplicate_of=other, similarity=similarity))
            continue
        _remember(doc, len(kept), lsh, images)
        kept.append(doc)
    return rejects


def _pool_match(
    doc: _PoolDocument,
    kept: list[_PoolDocument],
    lsh: SignatureLSH,
    images: PageHashTable,
    config: DecontaminateConfig,
) -> tuple[str, float] | None:
    if doc.signature is not None:
        candidates = lsh.query(doc.signature)
        if candidates:
            scores = estimate_jaccard(doc.signature, np.stack([kept[c].signature for c in candidates]))  # type: ignore[misc]
            top = int(np.argmax(scores))
            if scores[top] >= config.threshold:
                return kept[candidates[top]].sha256, round(float(scores[top]), 4)
        return None
    for owner, matched in sorted(aligned_matches(doc.page_hashes, images).items()):
        score = image_similarity(matched, doc.num_pages, kept[owner].num_pages, config.window_pages)
        if score >= config.threshold:
            return kept[owner].sha256, round(score, 4)
    return None


def _remember(doc: _PoolDocument, key: int, lsh: SignatureLSH, images: PageHashTable) -> None:
    if doc.signature is not None:
        lsh.insert(key, doc.signature)
    if doc.page_hashes:
        images.add(doc.page_hashes, key)


def question_overlaps(index: BenchmarkIndex, questions: Iterable[tuple[str, str]]) -> list[Reject]:
    """`bench_question_overlap`: generated questions sharing a normalised n-gram (13 words by default) with a
    benchmark question or answer; `similarity` is the share of the question's n-grams found in the benchmark."""
    n = index.config.question_ngram
    rejects = []
    for qa_id, question in questions:
        grams = question_grams(question, n)
        if grams.size == 0 or index.ngrams.size == 0:
            continue
        positions = np.minimum(np.searchsorted(index.ngrams, grams), index.ngrams.size - 1)
        hits = index.ngrams[positions] == grams
        if hits.any():
            rejects.append(_overlap_reject(index, qa_id, question, positions, hits))
    return rejects


def _overlap_reject(
    index: BenchmarkIndex, qa_id: str, question: str, positions: np.ndarray, hits: np.ndarray
) -> Reject:
    first = int(np.argmax(hits))
    source, item = index.questions[int(index.ngram_owners[positions[first]])]
    words = normalised_words(question)
    shared = " ".join(words[first : first + min(index.config.question_ngram, len(words))])
    similarity = round(float(hits.mean()), 4)
    detail = f"shares {shared!r} with {source} item {item!r} ({int(hits.sum())} of {hits.size} n-grams)"
    return _reject(
        qa_id, "bench_question_overlap", detail, benchmark=source, benchmark_item=item, similarity=similarity,
        shared_ngram=shared,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------

BENCHMARK_REASONS = ("bench_sha256", "bench_near_dup", "bench_question_overlap")


def decontamination_report(index: BenchmarkIndex, rejects: Iterable[Reject]) -> dict[str, object]:
    """For the manifest and the dataset card: per benchmark source, the items dropped by each rule and the matched
    benchmark ids; the within-pool count; the index's size and settings. Pass the rejects of `check_documents`
    and `question_overlaps` together for the final report."""
    rejects = list(rejects)
    settings = settings_fingerprint(index.config)
    return {
        "index_fingerprint": index.fingerprint,
        "settings": settings | {"lsh_bands_rows": list(lsh_params(index.config.threshold, index.config.num_perm))},
        "index": index.summary(),
        "benchmarks": {source.name: _source_report(source, rejects) for source in index.sources},
        "within_pool": {"pool_near_dup": sum(r.reason == "pool_near_dup" for r in rejects)},
    }


def _source_report(source: SourceSummary, rejects: list[Reject]) -> dict[str, object]:
    dropped = {}
    for reason in BENCHMARK_REASONS:
        matched = [r for r in rejects if r.reason == reason and r.extra.get("benchmark") == source.name]
        ids = sorted({str(r.extra.get("benchmark_item")) for r in matched})
        dropped[reason] = {"count": len(matched), "benchmark_ids": ids}
    return {
        "kind": source.kind,
        "documents": source.documents,
        "questions": source.questions,
        "unreadable": source.unreadable,
        "dropped": dropped,
    }
