"""MinHash signatures of page texts and the LSH index over them: the near-duplicate text primitives (pure numpy).

Owns: text normalisation, word / shingle / n-gram hashes, page signatures (three backends: numpy, datasketch,
rensa), the Jaccard estimate, banded LSH (`SignatureLSH`), and `SignatureCache`: page signatures and page-image
hashes (pagehash.py) on disk per document sha256, so adding benchmarks or re-running does not recompute the pool.
Does not own: what is compared with what (the
benchmark index is benchindex.py's, the checks dedup.py's), nor reading PDFs.

Signatures are computed per page and combined by element-wise minimum: the MinHash of a union of pages is the
minimum of the pages' MinHashes, so the whole document and every window of N consecutive pages come from one
hashing pass.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from longdocvqa.core.errors import StageError
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.readback import warn
from longdocvqa.core.recipe import DecontaminateConfig
from longdocvqa.core.store import atomic_write_bytes
from longdocvqa.decontamination.pagehash import ImageSource, dhash

ALGORITHM_VERSION = 1
EMPTY = np.uint32(0xFFFFFFFF)  # MinHash value of a bin (or permutation) that saw no shingle
MIN_SHINGLES = 20  # fewer shingles give a meaningless Jaccard estimate: such text is not compared
LSH_RECALL_AT_THRESHOLD = 0.9

TextSource = Sequence[str] | Callable[[], Sequence[str]]

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
        stored = _load_cached(path, columns=self.settings.num_perm + 1)
        if stored is not None:
            return PageSignatures(values=stored[:, 1:].astype(np.uint32), shingles=stored[:, 0].astype(np.int64))
        result = page_signatures(_texts(pages), self.settings)
        if path is not None:
            stored = np.column_stack([result.shingles.astype(np.uint32), result.values])
            _save_array(path, stored)
        return result

    def has_signatures(self, sha256: str) -> bool:
        return (self.root / sha256[:2] / f"{sha256}.npy").is_file()

    def has_image_hashes(self, sha256: str) -> bool:
        return (self.image_root / sha256[:2] / f"{sha256}.npy").is_file()

    def forget(self, sha256: str) -> None:
        """Drop a document's cached signatures and image hashes (say its texts could not be read this time)."""
        (self.root / sha256[:2] / f"{sha256}.npy").unlink(missing_ok=True)
        (self.image_root / sha256[:2] / f"{sha256}.npy").unlink(missing_ok=True)

    def image_hashes(self, sha256: str | None, images: ImageSource) -> list[int]:
        """Cached difference hashes of the document's page images; `images` is called on a miss."""
        path = self.image_root / sha256[:2] / f"{sha256}.npy" if sha256 else None
        stored = _load_cached(path, columns=None)
        if stored is not None:
            return [int(v) for v in stored]
        hashes = [dhash(image) for image in images()]
        if path is not None:
            _save_array(path, np.asarray(hashes, dtype=np.uint64))
        return hashes


def _load_cached(path: Path | None, columns: int | None) -> np.ndarray | None:
    """A cached array of the expected shape (`columns` per row; None: one dimension), or None when absent; one that
    does not load or has another shape is removed with a warning and computed again."""
    if path is None or not path.is_file():
        return None
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        problem = f"does not load ({type(exc).__name__})"
    else:
        shape_ok = stored.ndim == 1 if columns is None else stored.ndim == 2 and stored.shape[1] == columns
        if shape_ok and stored.dtype.kind in "ui":
            return stored
        problem = f"has shape {stored.shape} of {stored.dtype}"
    warn(f"{path}: cached MinHash data {problem}; discarded, it is computed again")
    path.unlink(missing_ok=True)
    return None


def _save_array(path: Path, array: np.ndarray) -> None:

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
