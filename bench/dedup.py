"""Benchmark: MinHash signatures per second, shingling included, against datasketch's `update_batch` path.

Corpus (as in docs/research/infra.md §6): documents of 5,000 words, each made of 50 random 100-word chunks of real PDF
text; 5% are copies of an earlier document with 1% of the words replaced (estimated Jaccard about 0.9). Every path
starts from the same page texts and ends with 128-value signatures; the near-duplicate pairs each path finds with an
LSH index at Jaccard 0.7 are counted (planted pairs, other pairs within a family of copies, unrelated pairs), so a
faster path that changed decisions would show.

    taskset -c 0 .venv/bin/python bench/dedup.py            # one core, 2,000 documents: about a minute
    .venv/bin/python bench/dedup.py --docs 500 --pdfs tests/data/pdfs
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from longdocvqa.decontamination import minhash

Signer = Callable[[list[str]], np.ndarray]


def corpus_words(folder: Path) -> list[str]:
    """All words of the text layer of every PDF under `folder`."""
    import pymupdf

    words: list[str] = []
    for path in sorted(folder.rglob("*.pdf")):
        with pymupdf.open(path) as doc:
            for page in doc:
                words += page.get_text().split()
    return words


def make_documents(
    words: list[str], count: int, length: int, seed: int
) -> tuple[list[list[str]], list[tuple[int, int]]]:
    """`count` documents of `length` words as 10 pages each, and the planted (original, copy) pairs."""
    rng = random.Random(seed)
    docs: list[list[str]] = []
    planted: list[tuple[int, int]] = []
    for number in range(count):
        if number > 20 and rng.random() < 0.05:
            original = rng.randrange(number)
            text = [w if rng.random() > 0.01 else rng.choice(words) for w in " ".join(docs[original]).split()]
            planted.append((original, number))
        else:
            text = []
            for _ in range(length // 100):
                start = rng.randrange(len(words) - 100)
                text += words[start : start + 100]
        page = len(text) // 10
        docs.append([" ".join(text[i * page : (i + 1) * page]) for i in range(10)])
    return docs, planted


def datasketch_baseline(pages: list[str]) -> np.ndarray:
    """The usual datasketch path: Python word 5-gram set, then MinHash(num_perm=128).update_batch."""
    from datasketch import MinHash

    words = minhash.normalised_words(" ".join(pages))
    shingles = {" ".join(words[i : i + 5]) for i in range(len(words) - 4)}
    sketch = MinHash(num_perm=128)
    sketch.update_batch([s.encode("utf-8") for s in shingles])
    return np.asarray(sketch.hashvalues, dtype=np.uint32)


def backend_signer(backend: str) -> Signer:
    settings = minhash.SignatureSettings(backend=backend)
    return lambda pages: minhash.page_signatures(pages, settings).document()


def timed(signer: Signer, docs: list[list[str]]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    signatures = np.stack([signer(pages) for pages in docs])
    return time.perf_counter() - start, signatures


def families(planted: list[tuple[int, int]]) -> dict[int, int]:
    """Document -> its original: copies of copies belong to the same family."""
    root: dict[int, int] = {}
    for original, copy in planted:
        root[copy] = root.get(original, original)
    return root


def near_pairs(signatures: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Pairs (earlier, later) whose estimated Jaccard reaches `threshold`, found through the LSH index."""
    lsh = minhash.SignatureLSH(threshold, signatures.shape[1])
    pairs = set()
    for key, signature in enumerate(signatures):
        candidates = lsh.query(signature)
        if candidates:
            scores = minhash.estimate_jaccard(signature, signatures[candidates])
            pairs |= {(c, key) for c, s in zip(candidates, scores, strict=True) if s >= threshold}
        lsh.insert(key, signature)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--words", type=int, default=5000)
    shared = Path(__file__).resolve().parents[2] / "shared" / "pdfs"  # the shared PDF set beside the checkout
    parser.add_argument("--pdfs", type=Path, default=shared, help="folder of real PDFs (default: ../shared/pdfs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = args.pdfs if args.pdfs.is_dir() else Path(__file__).resolve().parents[1] / "tests" / "data" / "pdfs"
    words = corpus_words(folder)
    docs, planted = make_documents(words, args.docs, args.words, args.seed)
    print(f"{len(docs)} documents x {args.words} words from {len(words):,} words of {folder}; {len(planted)} planted")
    minhash.word_hashes(["warm up"])  # builds the code-point table once, outside the timings
    paths: list[tuple[str, Signer]] = [
        ("datasketch update_batch (baseline)", datasketch_baseline),
        ("numpy one-permutation (default)", backend_signer("numpy")),
    ]
    try:
        import rensa  # noqa: F401

        paths.append(("rensa over numpy shingles", backend_signer("rensa")))
    except ImportError:
        pass
    baseline_rate = 0.0
    family = families(planted)
    print(f"{'path':38} {'docs/s':>7} {'ratio':>6} {'planted found':>14} {'same family':>12} {'unrelated':>10}")
    for name, signer in paths:
        seconds, signatures = timed(signer, docs)
        rate = len(docs) / seconds
        baseline_rate = baseline_rate or rate
        found = near_pairs(signatures, 0.7)
        hits = len(found & set(planted))
        related = sum(family.get(a, a) == family.get(b, b) for a, b in found) - hits
        unrelated = len(found) - hits - related
        found_text = f"{hits}/{len(planted)}"
        print(f"{name:38} {rate:7.0f} {rate / baseline_rate:5.1f}x {found_text:>14} {related:>12} {unrelated:>10}")


if __name__ == "__main__":
    main()
