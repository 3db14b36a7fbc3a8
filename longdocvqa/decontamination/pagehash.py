"""Difference hashes of page images and the table that finds a pool document's pages among a benchmark's.

Owns: the 64-bit dHash of a page image (Pillow), `PageHashTable` (pages within `DHASH_MAX_DISTANCE` bits), the
aligned-run match and the image similarity of two documents. Does not own: rendering pages (callers pass images).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

# Measured on 306 real pages of 8 PDFs: the same page as a 72-DPI PNG and as a 60-DPI JPEG scan rendered at 50 DPI
# is within 8 bits 96% of the time; pages of different documents 0.2% (0.6% for two pages of one document). One page
# means little, so a document match needs an aligned run of pages (`aligned_matches`).
DHASH_MAX_DISTANCE = 8
DHASH_MIN_BITS = 4  # a page hash with fewer bits set is a near-uniform (blank) page and identifies nothing
ImageSource = Callable[[], Sequence[Any]]


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
