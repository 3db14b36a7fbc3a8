"""Benchmark decontamination and within-pool near-duplicate removal (pure: no PDF, no `datasets`).

Owns: text normalisation, MinHash signatures of pages (three backends, cached per document sha256), the benchmark
index (file SHA-256, MinHash LSH over whole documents and page windows, question n-grams, 64-bit difference hashes
of page images), the checks on the pool (`bench_sha256`, `bench_near_dup`, `pool_near_dup`), the question check
(`bench_question_overlap`) and the decontamination report.

Does not own: reading PDFs or datasets (callers pass page texts and page images; `hub/benchmarks.py` loads the
benchmark sources), nor writing rejects.jsonl or the manifest (the pipeline does).

Signatures are computed per page and combined by element-wise minimum: the MinHash of a union of pages is the
minimum of the pages' MinHashes, so the whole document and every window of N consecutive pages come from one
hashing pass. Windows catch a benchmark embedded in a longer pool PDF and a pool PDF that is an excerpt of a
benchmark (both sides are windowed), while a single shared boilerplate page (a licence) stays far below the
threshold.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from longdocvqa.errors import StageError
from longdocvqa.fingerprint import canonical_json, content_hash
from longdocvqa.recipe import DecontaminateConfig
from longdocvqa.records import Reject

STAGE = "decontaminate"
ALGORITHM_VERSION = 1
EMPTY = np.uint32(0xFFFFFFFF)  # MinHash value of a bin (or permutation) that saw no shingle
MIN_SHINGLES = 20  # fewer shingles give a meaningless Jaccard estimate: such text is not compared
MIN_SHORT_QUESTION_WORDS = 5  # a benchmark question shorter than the n-gram matches only an identical question
# Measured on 306 real pages of 8 PDFs: the same page as a 72-DPI PNG and as a 60-DPI JPEG scan rendered at 50 DPI
# is within 8 bits 96% of the time; pages of different documents 0.2% (0.6% for two pages of one document). One page
# means little, so a document match needs an aligned run of pages (`aligned_matches`).
DHASH_MAX_DISTANCE = 8
DHASH_MIN_BITS = 4  # a page hash with fewer bits set is a near-uniform (blank) page and identifies nothing
LSH_RECALL_AT_THRESHOLD = 0.9

TextSource = Sequence[str] | Callable[[], Sequence[str]]
ImageSource = Callable[[], Sequence[Any]]

_NON_WORD = re.compile(r"[\W_]+")
_POLY = 0x100000001B3  # FNV-1 64-bit prime: odd, so invertible modulo 2^64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# ---------------------------------------------------------------------------------------------------------------
# Normalisation and hashing of words, shingles and n-grams
# ---------------------------------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    """NFKC (ligatures, full-width forms) and case folding; ASCII text takes the identical fast path."""
    if text.isascii():
        return text.lower()
    if not unicodedata.is_normalized("NFKC", text):  # the quick check is ~10x cheaper than normalising
        text = unicodedata.normalize("NFKC", text)
    return text.casefold()


def normalised_words(text: str) -> list[str]:
    """Lower-cased words, punctuation, symbols, underscores and whitespace folded away (the reference tokeniser)."""
    return [w for w in _NON_WORD.split(_fold(text)) if w]


@cache
def _word_table() -> np.ndarray:
    """Per code point: is it a word character? (`str.isalnum`, exactly what `[\\W_]` excludes)."""
    return np.fromiter((chr(c).isalnum() for c in range(0x110000)), dtype=bool, count=0x110000)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection that spreads every input bit over the 64 output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_powers_cache: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """POLY^i and POLY^-i modulo 2^64 for i < n (grown by doubling, kept for the process)."""
    if not _powers_cache or len(_powers_cache[0]) < n:
        size = max(n, 2 * len(_powers_cache[0]) if _powers_cache else 1 << 16)
        inverse = pow(_POLY, -1, 1 << 64)
        up = np.cumprod(np.full(size, _POLY, dtype=np.uint64))
        down = np.cumprod(np.full(size, inverse, dtype=np.uint64))
        one = np.ones(1, dtype=np.uint64)
        _powers_cache[:] = [np.concatenate((one, up[:-1])), np.concatenate((one, down[:-1]))]
    return _powers_cache[0], _powers_cache[1]


def word_hashes(pages: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Stable 64-bit hashes of the normalised words of all pages (one vectorised pass) and each word's page index.

    A word's hash is a polynomial over its code points, made position-independent by multiplying with the inverse
    power of its start offset, so the same word hashes alike wherever it occurs (and across runs and machines).
    """
    folded = [_fold(text) for text in pages]
    code_points = np.frombuffer(" ".join(folded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    edges = np.diff(_word_table()[code_points].view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    up, down = _powers(len(code_points) + 1)
    prefix = np.zeros(len(code_points) + 1, dtype=np.uint64)
    np.cumsum(code_points.astype(np.uint64) * up[: len(code_points)], out=prefix[1:])
    raw = (prefix[ends] - prefix[starts]) * down[starts] + (ends - starts).astype(np.uint64) * _GOLDEN
    page_starts = np.cumsum([0] + [len(text) + 1 for text in folded[:-1]])
    return _mix64(raw), np.searchsorted(page_starts, starts, side="right") - 1


@cache
def _combine_constants(n: int) -> np.ndarray:
    """Distinct odd multipliers, one per position in an n-word shingle (order matters)."""
    return _mix64(np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN) | np.uint64(1)


def shingle_hashes(words: np.ndarray, pages: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of `n` consecutive words that lies within one page, and the page of each."""
    count = len(words) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.intp)
    constants = _combine_constants(n)
    acc = words[:count] * constants[0] + np.uint64((n * int(_GOLDEN)) & 0xFFFFFFFFFFFFFFFF)
    for j in range(1, n):
        acc += words[j : j + count] * constants[j]
    same_page = pages[:count] == pages[n - 1 :]
    return _mix64(acc)[same_page], pages[:count][same_page]


def text_ngrams(text: str, n: int) -> np.ndarray:
    """Hashes of the n-grams of a normalised text (the same words and combination as the shingles)."""
    words, pages = word_hashes([text])
    return shingle_hashes(words, pages, n)[0]


# ---------------------------------------------------------------------------------------------------------------
# MinHash signatures of pages
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureSettings:
    """What a page signature depends on (the signature-cache key)."""

    backend: str = "numpy"
    num_perm: int = 128
    shingle_words: int = 5

    @classmethod
    def from_config(cls, config: DecontaminateConfig) -> SignatureSettings:
        return cls(backend=config.backend, num_perm=config.num_perm, shingle_words=config.shingle_words)

    def key(self) -> str:
        return content_hash({"version": ALGORITHM_VERSION, **self.__dict__}, length=16)


@dataclass(frozen=True)
class PageSignatures:
    """Per-page MinHash signatures of one document: `values` (pages x num_perm, uint32; EMPTY where a page has no
    shingle) and `shingles` (shingles per page, for the minimum-text rule)."""

    values: np.ndarray
    shingles: np.ndarray

    @property
    def num_pages(self) -> int:
        return int(self.values.shape[0])

    def document(self) -> np.ndarray:
        """Signature of the whole document: the element-wise minimum over its pages."""
        if self.num_pages == 0:
            return np.full(self.values.shape[1], EMPTY, dtype=np.uint32)
        return self.values.min(axis=0)

    def spans(self, window_pages: int) -> list[tuple[int, int, np.ndarray]]:
        """(first page, last page, signature) of the whole document and of every window of `window_pages`
        consecutive pages (1-based, inclusive), keeping only spans with at least MIN_SHINGLES shingles."""
        spans = [(1, self.num_pages, self.document(), int(self.shingles.sum()))]
        if self.num_pages > window_pages:
            windows = np.lib.stride_tricks.sliding_window_view(self.values, window_pages, axis=0).min(axis=-1)
            counts = np.convolve(self.shingles, np.ones(window_pages, dtype=np.int64), mode="valid")
            spans += [(i + 1, i + window_pages, windows[i], int(counts[i])) for i in range(len(windows))]
        return [(first, last, sig) for first, last, sig, count in spans if count >= MIN_SHINGLES]


def page_signatures(pages: Sequence[str], settings: SignatureSettings) -> PageSignatures:
    """MinHash signature of every page's set of word shingles, with the configured backend."""
    backend = {"numpy": _numpy_signatures, "datasketch": _datasketch_signatures, "rensa": _rensa_signatures}
    if settings.backend not in backend:
        raise ValueError(f"unknown MinHash backend {settings.backend!r}")
    values, shingles = backend[settings.backend](pages, settings)
    return PageSignatures(values=values, shingles=shingles)


def _page_shingles(pages: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    words, word_pages = word_hashes(pages)
    return shingle_hashes(words, word_pages, n)


def _numpy_signatures(pages: Sequence[str], settings: SignatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """One-permutation MinHash (Li, Owen & Zhang 2012), vectorised with NumPy.

    Each shingle is hashed once to 64 bits; the high 32 bits pick one of `num_perm` bins and the low 32 bits are its
    value; a page's signature is the minimum value per bin. This costs O(shingles) instead of the O(shingles x
    num_perm) of k independent permutations, estimates Jaccard alike on sets of hundreds of shingles or more, and
    keeps the union property (bin-wise minimum) that windows rely on. Bins empty on both sides are left out of
    the estimate (`estimate_jaccard`).
    """
    k = settings.num_perm
    hashes, owner = _page_shingles(pages, settings.shingle_words)
    bins = ((hashes >> np.uint64(32)) * np.uint64(k)) >> np.uint64(32)
    values = np.minimum(hashes & np.uint64(0xFFFFFFFF), np.uint64(EMPTY) - np.uint64(1)).astype(np.uint32)
    signatures = np.full(len(pages) * k, EMPTY, dtype=np.uint32)
    np.minimum.at(signatures, owner * k + bins.astype(np.intp), values)
    return signatures.reshape(len(pages), k), np.bincount(owner, minlength=len(pages)).astype(np.int64)


def _datasketch_signatures(pages: Sequence[str], settings: SignatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's MinHash (k permutations, SHA-1 of each shingle string): the reference, and the slowest."""
    try:
        from datasketch import MinHash
    except ImportError:
        fix = "pip install 'longdocvqa[datasketch]'"
        raise StageError(f"decontaminate.backend 'datasketch' needs the datasketch package: {fix}") from None

    rows, counts = [], []
    for text in pages:
        words = normalised_words(text)
        n = settings.shingle_words
        shingles = {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}
        sketch = MinHash(num_perm=settings.num_perm, seed=1)
        sketch.update_batch(sorted(shingles))
        rows.append(np.asarray(sketch.hashvalues, dtype=np.uint32))
        counts.append(max(len(words) - n + 1, 0))
    values = np.stack(rows) if rows else np.zeros((0, settings.num_perm), dtype=np.uint32)
    return values, np.asarray(counts, dtype=np.int64)


def _rensa_signatures(pages: Sequence[str], settings: SignatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """rensa's Rust MinHash (k permutations) over the NumPy shingle hashes, one matrix row per page."""
    from rensa import RMinHash

    hashes, owner = _page_shingles(pages, settings.shingle_words)
    offsets = np.searchsorted(owner, np.arange(len(pages) + 1)).astype(np.uint64)
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, settings.num_perm, 1)
    values = np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(pages), settings.num_perm)
    return values, np.bincount(owner, minlength=len(pages)).astype(np.int64)


def estimate_jaccard(query: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of `query` (num_perm) with each row of `others` (rows x num_perm): the share of
    equal values among positions not empty on both sides."""
    others = np.atleast_2d(others)
    both_empty = (others == EMPTY) & (query == EMPTY)
    usable = others.shape[1] - both_empty.sum(axis=1)
    equal = ((others == query) & ~both_empty).sum(axis=1)
    return np.where(usable > 0, equal / np.maximum(usable, 1), 0.0)


# ---------------------------------------------------------------------------------------------------------------
# LSH and page-image hashes
# ---------------------------------------------------------------------------------------------------------------


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) of the LSH index for a Jaccard `threshold`.

    A pair with Jaccard J shares at least one of b bands of r rows with probability P(J) = 1 - (1 - J^r)^b, an
    S-curve rising around (1/b)^(1/r). Candidates are then verified with the estimated Jaccard, so a false positive
    costs one comparison while a false negative is a missed duplicate: take the largest r (fewest candidates), with
    b = num_perm // r, such that P(threshold) >= 0.9. For 128 permutations and 0.7 that is r = 6, b = 21:
    P(0.7) = 0.93, P(0.8) = 0.998, P(0.5) = 0.28 (then rejected by the check), S-curve midpoint (1/21)^(1/6) = 0.60.
    """
    best = (num_perm // 2, 2) if num_perm >= 4 else (num_perm, 1)
    for rows in range(1, num_perm // 2 + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= LSH_RECALL_AT_THRESHOLD:
            best = (bands, rows)
    return best


class SignatureLSH:
    """Banded LSH over integer keys, with the bands/rows of `lsh_params`: a stored key is a candidate for a query when
    one band (r consecutive MinHash values) of their signatures is equal. The candidates of datasketch's MinHashLSH
    with the same bands, without its scipy dependency (tests compare the two)."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        self.params = lsh_params(threshold, num_perm)
        bands, rows = self.params
        self._spans = [(band * rows, (band + 1) * rows) for band in range(bands)]
        self._tables: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]

    def _keys(self, signature: np.ndarray) -> list[bytes]:
        values = np.ascontiguousarray(signature, dtype=np.uint64)
        return [values[lo:hi].tobytes() for lo, hi in self._spans]

    def insert(self, key: int, signature: np.ndarray) -> None:
        for table, band in zip(self._tables, self._keys(signature), strict=True):
            table.setdefault(band, []).append(key)

    def query(self, signature: np.ndarray) -> list[int]:
        found: set[int] = set()
        for table, band in zip(self._tables, self._keys(signature), strict=True):
            found.update(table.get(band, ()))
        return sorted(found)


_INK = [255 if value < 200 else 0 for value in range(256)]  # grey levels counted as ink when finding the content box


def dhash(image: Any) -> int:
    """64-bit difference hash of a page image (encoded bytes or a PIL image): the page's content box (margins cut
    away) shrunk to 9x8 grey pixels, one bit per horizontally adjacent pair, set when the left one is brighter.

    Cutting the margins matters for document pages: on whole pages the 9x8 thumbnail mostly shows the margins, and
    pages of different documents land within 5 bits of each other 3.7% of the time; on the content box, 0.04%."""
    from PIL import Image

    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes | bytearray) else image
    picture.draft("L", (256, 256))  # JPEG: decode at a reduced scale, much faster, same thumbnail
    grey = picture.convert("L")
    grey.thumbnail((256, 256))
    box = grey.point(_INK).getbbox()
    if box:
        grey = grey.crop(box)
    pixels = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (pixels[:, :-1] > pixels[:, 1:]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


_BYTE_BITS = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (NumPy >= 2 has it built in)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _BYTE_BITS[values.view(np.uint8).reshape(*values.shape, 8)].sum(axis=-1)


class PageHashTable:
    """Page-image hashes of many documents, each with its owner (document) and page position; a query compares its
    pages with all of them at once (XOR and popcount in NumPy, in chunks to bound memory)."""

    _CHUNK = 1 << 18

    def __init__(self, hashes: Sequence[int] | np.ndarray = (), owners: Sequence[int] | np.ndarray = (),
                 positions: Sequence[int] | np.ndarray = ()) -> None:  # fmt: skip
        self._hashes, self._owners, self._positions = [list(hashes)], [list(owners)], [list(positions)]
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, pages: Sequence[tuple[int, int]], owner: int) -> None:
        self._hashes.append([h for _, h in pages])
        self._positions.append([p for p, _ in pages])
        self._owners.append([owner] * len(pages))
        self._arrays = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hashes, owners, positions) as NumPy arrays, built once after each batch of additions."""
        if self._arrays is None:
            self._hashes = [[v for chunk in self._hashes for v in chunk]]
            self._owners = [[v for chunk in self._owners for v in chunk]]
            self._positions = [[v for chunk in self._positions for v in chunk]]
            self._arrays = (
                np.asarray(self._hashes[0], dtype=np.uint64),
                np.asarray(self._owners[0], dtype=np.int64),
                np.asarray(self._positions[0], dtype=np.int64),
            )
        return self._arrays

    def near(self, values: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
        """(query index, table row) of every pair within `max_distance` bits."""
        hashes = self.arrays()[0]
        found_queries, found_rows = [np.zeros(0, dtype=np.intp)], [np.zeros(0, dtype=np.intp)]
        for start in range(0, hashes.size, self._CHUNK):
            chunk = hashes[start : start + self._CHUNK]
            queries, rows = np.nonzero(_popcount(values[:, None] ^ chunk[None, :]) <= max_distance)
            found_queries.append(queries)
            found_rows.append(rows + start)
        return np.concatenate(found_queries), np.concatenate(found_rows)


def informative(hashes: Iterable[int]) -> list[tuple[int, int]]:
    """(page position, hash) of the pages whose hash identifies something (blank pages hash to nearly all zeros)."""
    return [(position, h) for position, h in enumerate(hashes) if h.bit_count() >= DHASH_MIN_BITS]


def aligned_matches(pages: Sequence[tuple[int, int]], table: PageHashTable) -> dict[int, int]:
    """For each document in `table`: the largest number of `pages` that match its pages at one constant page offset.

    A scan or an excerpt keeps the page order, so its matches line up on one offset, while chance matches between
    look-alike pages scatter over many offsets."""
    _, owners, positions = table.arrays()
    if not pages or owners.size == 0:
        return {}
    queries, rows = table.near(np.array([h for _, h in pages], dtype=np.uint64), DHASH_MAX_DISTANCE)
    offsets = positions[rows] - np.array([p for p, _ in pages], dtype=np.int64)[queries]
    triples = np.unique(np.stack([owners[rows], offsets, queries]), axis=1)  # one vote per page and offset
    runs, counts = np.unique(triples[:2], axis=1, return_counts=True)
    best: dict[int, int] = {}
    for owner, count in zip(runs[0].tolist(), counts.tolist(), strict=True):
        best[owner] = max(best.get(owner, 0), count)
    return best


def image_similarity(matched_pages: int, pages_a: int, pages_b: int, window_pages: int) -> float:
    """Share of the comparable pages that match: at most a window, at most either document's length, so a 10-page
    excerpt of a scanned benchmark scores 1.0 and one shared licence page in 40 scores 0.1."""
    comparable = max(1, min(pages_a, pages_b, window_pages))
    return min(1.0, matched_pages / comparable)


# ---------------------------------------------------------------------------------------------------------------
# Signature cache
# ---------------------------------------------------------------------------------------------------------------


def _texts(pages: TextSource) -> Sequence[str]:
    return pages() if callable(pages) else pages


class SignatureCache:
    """Page signatures and page-image hashes on disk, keyed by document sha256 (and the signature settings), so adding
    benchmarks or re-running does not recompute the pool. One small .npy file per document, sharded by sha256."""

    def __init__(self, cache_dir: str | Path, settings: SignatureSettings) -> None:
        self.settings = settings
        self.root = Path(cache_dir) / "signatures" / settings.key()
        self.image_root = Path(cache_dir) / "page-dhash"

    def signatures(self, sha256: str | None, pages: TextSource) -> PageSignatures:
        """Cached signatures of document `sha256`; `pages` (texts, or a function giving them) is read on a miss."""
        path = self.root / sha256[:2] / f"{sha256}.npy" if sha256 else None
        if path is not None and path.is_file():
            stored = np.load(path)
            return PageSignatures(values=stored[:, 1:].astype(np.uint32), shingles=stored[:, 0].astype(np.int64))
        result = page_signatures(_texts(pages), self.settings)
        if path is not None:
            stored = np.column_stack([result.shingles.astype(np.uint32), result.values])
            _save_array(path, stored)
        return result

    def forget(self, sha256: str) -> None:
        """Drop a document's cached signatures and image hashes (say its texts could not be read this time)."""
        (self.root / sha256[:2] / f"{sha256}.npy").unlink(missing_ok=True)
        (self.image_root / sha256[:2] / f"{sha256}.npy").unlink(missing_ok=True)

    def image_hashes(self, sha256: str | None, images: ImageSource) -> list[int]:
        """Cached difference hashes of the document's page images; `images` is called on a miss."""
        path = self.image_root / sha256[:2] / f"{sha256}.npy" if sha256 else None
        if path is not None and path.is_file():
            return [int(v) for v in np.load(path)]
        hashes = [dhash(image) for image in images()]
        if path is not None:
            _save_array(path, np.asarray(hashes, dtype=np.uint64))
        return hashes


def _save_array(path: Path, array: np.ndarray) -> None:
    from longdocvqa.store import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


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
            by_name[doc.source].unreadable.append(f"{doc.item}: {type(exc).__name__}: {_one_line(exc)}")
        by_name[doc.source].documents += 1
    for question in questions:
        builder.add_question(question)
        by_name[question.source].questions += 1
    return builder.finish(fingerprint, sources)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


_ARRAYS = ("signatures", "image_hashes", "image_owners", "image_positions", "ngrams", "ngram_owners")


def save_index(index: BenchmarkIndex, folder: str | Path) -> None:
    """Write the index as `index.json` (metadata) and `arrays.npz` (NumPy arrays, no pickles) in `folder`."""
    from longdocvqa.store import atomic_write_bytes

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
