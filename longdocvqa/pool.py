"""Discover PDFs, hash them, read page counts and sizes, and filter the pool.

Inputs are files, folders (searched recursively for *.pdf), globs, or .txt files listing one path
per line. Identity is the SHA-256 of the bytes (streamed); the same bytes found twice are kept
once. Per-file results are cached by (path, size, mtime) so a rerun does not re-hash the pool.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterator
from pathlib import Path

from longdocvqa import render
from longdocvqa.errors import RecipeError, RejectedInput
from longdocvqa.fingerprint import content_hash, file_sha256
from longdocvqa.recipe import PoolConfig
from longdocvqa.records import PdfDoc, Reject

POOL_VERSION = 1


def discover(paths: list[str]) -> list[Path]:
    """Every candidate file named by `paths`, absolute, de-duplicated and sorted."""
    found: set[Path] = set()
    for entry in paths:
        found.update(_expand(entry))
    return sorted(found)


def _expand(entry: str) -> Iterator[Path]:
    path = Path(entry)
    if any(c in entry for c in "*?["):
        yield from (Path(p).resolve() for p in glob.glob(entry, recursive=True) if Path(p).is_file())
    elif path.is_dir():
        yield from (p.resolve() for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")
    elif path.is_file() and path.suffix.lower() == ".txt":
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                yield from _expand(str((path.parent / line.strip()).resolve()))
    elif path.is_file():
        yield path.resolve()
    else:
        raise RecipeError(f"{entry}: pool path does not exist")


def cache_key(path: Path) -> str:
    """Key of a file's pool result: its path, size and modification time."""
    stat = path.stat()
    return content_hash({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}, length=32)


def inspect_file(path: Path, config: PoolConfig) -> PdfDoc:
    """Hash and probe one file; raise RejectedInput with the cause when it is unusable."""
    size = path.stat().st_size
    if size > config.max_file_mb * 1024 * 1024:
        raise RejectedInput("too_large", f"{size / 1e6:.1f} MB is over the {config.max_file_mb:g} MB limit")
    sha = file_sha256(path)
    info = render.probe(path)
    for i, (width, height) in enumerate(info["page_sizes_pt"], start=1):
        if min(width, height) < config.min_page_side_pt or max(width, height) > config.max_page_side_pt:
            raise RejectedInput("absurd_page_size", f"page {i} is {width:g} x {height:g} pt")
    return PdfDoc(sha256=sha, path=str(path), size_bytes=size, **info)


def in_page_range(doc: PdfDoc, config: PoolConfig) -> bool:
    return config.min_pages <= doc.num_pages <= config.max_pages


def load_licences(path: str | None) -> dict[str, tuple[str | None, str | None]]:
    """Map file name (or path) -> (licence, source) from a TSV with `file` and `licence` columns."""
    if not path:
        return {}
    if not os.path.isfile(path):
        raise RecipeError(f"{path}: licence file not found")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if rows and not {"file", "licence"} <= set(rows[0]):
        raise RecipeError(f"{path}: licence TSV needs 'file' and 'licence' columns")
    return {r["file"]: (r.get("licence"), r.get("source") or r.get("debian_package")) for r in rows}


def attach_licence(doc: PdfDoc, licences: dict[str, tuple[str | None, str | None]]) -> PdfDoc:
    hit = licences.get(doc.path) or licences.get(Path(doc.path).name)
    if not hit:
        return doc
    return doc.model_copy(update={"licence": hit[0], "source": hit[1]})


def licence_allowed(doc: PdfDoc, allowed: list[str] | None) -> bool:
    """Whether `doc`'s licence is in `allowed` (case-insensitive; 'unknown' stands for none); None allows all."""
    if allowed is None:
        return True
    return (doc.licence or "unknown").strip().lower() in {a.strip().lower() for a in allowed}


def pool_reject(path: Path, exc: RejectedInput) -> Reject:
    return Reject(stage="pool", item=str(path), reason=exc.reason, detail=exc.detail)
