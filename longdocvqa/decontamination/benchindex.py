"""The benchmark index: what a pool is decontaminated against, built once per benchmark set and saved to disk.

Owns: the benchmark's documents and questions as records, the index (file SHA-256, MinHash LSH over whole
documents and page windows, question n-grams, page-image hashes), its settings fingerprint, and saving / loading
it as .npy arrays plus JSON. Does not own: reading the benchmark sources (hub/benchmarks.py) nor checking the pool
against the index (dedup.py).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longdocvqa.core.errors import one_line
from longdocvqa.core.fingerprint import canonical_json
from longdocvqa.core.recipe import DecontaminateConfig
from longdocvqa.core.store import atomic_write_bytes
from longdocvqa.decontamination.minhash import (
    ALGORITHM_VERSION,
    SignatureCache,
    SignatureLSH,
    SignatureSettings,
    TextSource,
    normalised_words,
    shingle_hashes,
    text_ngrams,
    word_hashes,
)
from longdocvqa.decontamination.pagehash import ImageSource, PageHashTable, informative

MIN_SHORT_QUESTION_WORDS = 5  # a benchmark question shorter than the n-gram matches only an identical question


# ---------------------------------------------------------------------------------------------------------------
# The benchmark index
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkDocument:
    """One benchmark document as a loader hands it over: `sha256` of its file when it has one (exact match and
    cache key), its page texts (or a function giving them), and optionally its page images (a function giving them)
    or their difference hashes already computed."""

    source: str
    item: str
    sha256: str | None
    page_texts: TextSource = ()
    page_images: ImageSource | None = None
    image_hashes: Sequence[int] = ()


@dataclass(frozen=True)
class BenchmarkQuestion:
    """One benchmark question and its answer (an empty string when there is none)."""

    source: str
    item: str
    question: str
    answer: str = ""


@dataclass
class SourceSummary:
    """What one benchmark source contributed to the index."""

    name: str
    kind: str
    documents: int = 0
    questions: int = 0
    unreadable: list[str] = field(default_factory=list)


@dataclass
class BenchmarkIndex:
    """Everything the checks compare against. Build with `build_index`, persist with `save`/`load_index`."""

    fingerprint: str
    config: DecontaminateConfig
    sources: list[SourceSummary]
    files: dict[str, tuple[str, str]]  # file sha256 -> (source, item)
    spans: list[tuple[str, str, int, int, int]]  # (source, item, first page, last page, document pages)
    signatures: np.ndarray  # spans x num_perm
    image_docs: list[tuple[str, str, int]]  # (source, item, pages)
    image_hashes: np.ndarray  # uint64 page hashes
    image_owners: np.ndarray  # index into image_docs
    image_positions: np.ndarray  # page position inside its document
    questions: list[tuple[str, str]]  # (source, item)
    ngrams: np.ndarray  # sorted uint64 n-gram hashes
    ngram_owners: np.ndarray  # index into questions
    _lsh: SignatureLSH | None = None
    _images: PageHashTable | None = None

    def lsh(self) -> SignatureLSH:
        if self._lsh is None:
            self._lsh = SignatureLSH(self.config.threshold, self.config.num_perm)
            for key, signature in enumerate(self.signatures):
                self._lsh.insert(key, signature)
        return self._lsh

    def image_index(self) -> PageHashTable:
        if self._images is None:
            self._images = PageHashTable(
                self.image_hashes.tolist(), self.image_owners.tolist(), self.image_positions.tolist()
            )
        return self._images

    def summary(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "text_spans": len(self.spans),
            "image_documents": len(self.image_docs),
            "page_hashes": int(self.image_hashes.size),
            "questions": len(self.questions),
            "question_ngrams": int(self.ngrams.size),
        }


def settings_fingerprint(config: DecontaminateConfig) -> dict[str, object]:
    """The settings an index depends on (its sources are fingerprinted by the loader)."""
    keys = ("num_perm", "shingle_words", "threshold", "window_pages", "question_ngram", "backend")
    return {"algorithm": ALGORITHM_VERSION, **{k: getattr(config, k) for k in keys}}


class _IndexBuilder:
    """Accumulates the index's arrays while documents and questions stream in."""

    def __init__(self, config: DecontaminateConfig, cache: SignatureCache) -> None:
        self.config, self.cache = config, cache
        self.files: dict[str, tuple[str, str]] = {}
        self.spans: list[tuple[str, str, int, int, int]] = []
        self.signatures: list[np.ndarray] = []
        self.image_docs: list[tuple[str, str, int]] = []
        self.image_hashes: list[int] = []
        self.image_owners: list[int] = []
        self.image_positions: list[int] = []
        self.questions: list[tuple[str, str]] = []
        self.ngrams: list[np.ndarray] = []
        self.ngram_owners: list[np.ndarray] = []

    def add_document(self, doc: BenchmarkDocument) -> None:
        if doc.sha256:
            self.files.setdefault(doc.sha256, (doc.source, doc.item))
        signatures = self.cache.signatures(doc.sha256, doc.page_texts)
        for first, last, signature in signatures.spans(self.config.window_pages):
            self.spans.append((doc.source, doc.item, first, last, signatures.num_pages))
            self.signatures.append(signature)
        if doc.page_images is not None or doc.image_hashes:
            self._add_images(doc, signatures.num_pages)

    def _add_images(self, doc: BenchmarkDocument, num_pages: int) -> None:
        all_hashes = list(doc.image_hashes)
        if doc.page_images is not None:
            all_hashes += self.cache.image_hashes(doc.sha256, doc.page_images)
        pages = informative(all_hashes)
        if pages:
            owner = len(self.image_docs)
            self.image_docs.append((doc.source, doc.item, max(num_pages, len(all_hashes))))
            self.image_hashes += [value for _, value in pages]
            self.image_positions += [position for position, _ in pages]
            self.image_owners += [owner] * len(pages)

    def add_question(self, question: BenchmarkQuestion) -> None:
        grams = [question_grams(question.question, self.config.question_ngram)]
        if len(normalised_words(question.answer)) >= self.config.question_ngram:
            grams.append(text_ngrams(question.answer, self.config.question_ngram))
        joined = np.unique(np.concatenate(grams))
        if joined.size:
            self.ngram_owners.append(np.full(joined.size, len(self.questions), dtype=np.int64))
            self.ngrams.append(joined)
            self.questions.append((question.source, question.item))

    def finish(self, fingerprint: str, sources: list[SourceSummary]) -> BenchmarkIndex:
        ngrams = np.concatenate(self.ngrams) if self.ngrams else np.zeros(0, dtype=np.uint64)
        owners = np.concatenate(self.ngram_owners) if self.ngram_owners else np.zeros(0, dtype=np.int64)
        order = np.argsort(ngrams, kind="stable")
        k = self.config.num_perm
        return BenchmarkIndex(
            fingerprint=fingerprint,
            config=self.config,
            sources=sources,
            files=self.files,
            spans=self.spans,
            signatures=np.stack(self.signatures) if self.signatures else np.zeros((0, k), dtype=np.uint32),
            image_docs=self.image_docs,
            image_hashes=np.asarray(self.image_hashes, dtype=np.uint64),
            image_owners=np.asarray(self.image_owners, dtype=np.int64),
            image_positions=np.asarray(self.image_positions, dtype=np.int64),
            questions=self.questions,
            ngrams=ngrams[order],
            ngram_owners=owners[order],
        )


def question_grams(text: str, n: int) -> np.ndarray:
    """The n-grams of a question; a shorter question (of at least MIN_SHORT_QUESTION_WORDS words) is one gram of its
    own length, so it matches only an identical question."""
    words, pages = word_hashes([text])
    if len(words) >= n:
        return shingle_hashes(words, pages, n)[0]
    if len(words) >= MIN_SHORT_QUESTION_WORDS:
        return shingle_hashes(words, pages, len(words))[0]
    return np.zeros(0, dtype=np.uint64)


def build_index(
    documents: Iterable[BenchmarkDocument],
    questions: Iterable[BenchmarkQuestion],
    sources: list[SourceSummary],
    config: DecontaminateConfig,
    cache_dir: str | Path,
    fingerprint: str,
) -> BenchmarkIndex:
    """Hash, sign and index benchmark documents and questions. A document whose text cannot be read (the loader's
    function raises) is still matched by its sha256 and is listed as unreadable in its source's summary."""
    builder = _IndexBuilder(config, SignatureCache(cache_dir, SignatureSettings.from_config(config)))
    by_name = {s.name: s for s in sources}
    for doc in documents:
        try:
            builder.add_document(doc)
        except Exception as exc:  # a broken benchmark file: keep its sha256, report it, go on
            if doc.sha256:
                builder.files.setdefault(doc.sha256, (doc.source, doc.item))
            by_name[doc.source].unreadable.append(f"{doc.item}: {one_line(exc)}")
        by_name[doc.source].documents += 1
    for question in questions:
        builder.add_question(question)
        by_name[question.source].questions += 1
    return builder.finish(fingerprint, sources)


_ARRAYS = ("signatures", "image_hashes", "image_owners", "image_positions", "ngrams", "ngram_owners")


def save_index(index: BenchmarkIndex, folder: str | Path) -> None:
    """Write the index as `index.json` (metadata) and `arrays.npz` (NumPy arrays, no pickles) in `folder`."""

    folder = Path(folder)
    meta = {
        "fingerprint": index.fingerprint,
        "config": index.config.model_dump(mode="json"),
        "sources": [s.__dict__ for s in index.sources],
        "files": index.files,
        "spans": index.spans,
        "image_docs": index.image_docs,
        "questions": index.questions,
    }
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(index, name) for name in _ARRAYS})
    atomic_write_bytes(folder / "arrays.npz", buffer.getvalue())
    atomic_write_bytes(folder / "index.json", canonical_json(meta).encode("utf-8"))  # written last: the marker


def load_index(folder: str | Path, fingerprint: str) -> BenchmarkIndex | None:
    """The index saved in `folder`, or None when there is none with this fingerprint (or it is incomplete)."""
    import json

    folder = Path(folder)
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        if meta["fingerprint"] != fingerprint:
            return None
        with np.load(folder / "arrays.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in _ARRAYS}
    except (OSError, ValueError, KeyError):
        return None
    return BenchmarkIndex(
        fingerprint=fingerprint,
        config=DecontaminateConfig.model_validate(meta["config"]),
        sources=[SourceSummary(**s) for s in meta["sources"]],
        files={sha: (src, item) for sha, (src, item) in meta["files"].items()},
        spans=[tuple(s) for s in meta["spans"]],  # type: ignore[misc]
        image_docs=[tuple(d) for d in meta["image_docs"]],  # type: ignore[misc]
        questions=[tuple(q) for q in meta["questions"]],  # type: ignore[misc]
        **arrays,
    )
