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
    return discover_with_rejects(paths)[0]


def discover_with_rejects(paths: list[str]) -> tuple[list[Path], list[Reject]]:
    """(candidate files, a reject per input skipped on the way: unreadable folder, dangling link, link cycle).

    An entry that exists is taken literally (a folder named `data[1]` is a folder); only an entry that does
    not exist is expanded as a glob. A .txt list may name other lists, but never itself (directly or not).
    """
    found: set[Path] = set()
    rejects: list[Reject] = []
    for entry in paths:
        found.update(_expand(entry, rejects, ()))
    return sorted(found), sorted(rejects, key=lambda r: (r.item, r.reason))


def _expand(entry: str, rejects: list[Reject], lists: tuple[Path, ...]) -> Iterator[Path]:
    path = Path(entry)
    if path.is_dir():
        yield from _walk(path, rejects)
    elif path.is_file() and path.suffix.lower() == ".txt":
        yield from _expand_list(path, rejects, lists)
    elif path.is_file():
        yield path.resolve()
    elif any(c in entry for c in "*?["):
        yield from (Path(p).resolve() for p in glob.glob(entry, recursive=True) if Path(p).is_file())
    elif path.is_symlink():
        rejects.append(_skip(path, "dangling_symlink", f"points to {os.readlink(path)}, which does not exist"))
    else:
        raise RecipeError(f"{entry}: pool path does not exist")


def _expand_list(path: Path, rejects: list[Reject], lists: tuple[Path, ...]) -> Iterator[Path]:
    real = path.resolve()
    if real in lists:
        chain = " -> ".join(str(p) for p in (*lists, real))
        raise RecipeError(f"{path}: pool list includes itself ({chain})")
    try:
        text = real.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read pool list: {exc}") from None
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            yield from _expand(str(real.parent / line.strip()), rejects, (*lists, real))


def _walk(root: Path, rejects: list[Reject]) -> Iterator[Path]:
    """PDF files under `root`, following folder links once; every folder or link that is skipped is a reject."""
    ancestors: dict[tuple[int, int], str] = {}  # (device, inode) of the folders on the current path

    def fail(exc: OSError) -> None:
        rejects.append(_skip(Path(exc.filename or root), "unreadable_folder", exc.strerror or str(exc)))

    seen: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, onerror=fail, followlinks=True):
        try:
            stat = os.stat(folder)
        except OSError as exc:  # removed or made unreadable while we walk
            fail(exc)
            continue
        ident = (stat.st_dev, stat.st_ino)
        ancestors = {k: v for k, v in ancestors.items() if folder.startswith(v.rstrip(os.sep) + os.sep)}
        if ident in seen:
            dirs[:] = []
            if ident in ancestors:
                rejects.append(_skip(Path(folder), "symlink_cycle", f"leads back to {ancestors[ident]}"))
            continue
        seen.add(ident)
        ancestors[ident] = folder
        yield from _pdfs_in(Path(folder), files, rejects)


def _pdfs_in(folder: Path, names: list[str], rejects: list[Reject]) -> Iterator[Path]:
    for name in names:
        path = folder / name
        if not name.lower().endswith(".pdf"):
            continue
        if path.is_symlink() and not path.exists():
            rejects.append(_skip(path, "dangling_symlink", f"points to {os.readlink(path)}, which does not exist"))
        elif path.is_file():
            yield path.resolve()


def _skip(path: Path, reason: str, detail: str) -> Reject:
    return Reject(stage="pool", item=str(path), reason=reason, detail=detail)


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
