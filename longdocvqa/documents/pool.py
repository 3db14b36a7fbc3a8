"""Discover PDFs, hash them, read page counts and sizes, and filter the pool.

Inputs are files, folders (searched recursively for *.pdf and *.tar shards), globs, .txt files listing one path
per line, and fsspec URLs of folders, files and shards (sources.py reads them). Identity is the SHA-256 of the
bytes (streamed); the same bytes found twice are kept once. Per-file results are cached by (path, size, mtime)
so a rerun does not re-hash the pool.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from longdocvqa.core.errors import RecipeError, RejectedInput
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.recipe import PoolConfig
from longdocvqa.core.records import PdfDoc, Reject
from longdocvqa.core.safetext import clean
from longdocvqa.documents import filekind, render, sources

POOL_VERSION = 1


def discover(paths: list[str]) -> list[str]:
    """Every pool document named by `paths` (local paths absolute, `SHARD.tar/MEMBER`, URLs), de-duplicated and
    sorted."""
    return [entry.path for entry in discover_with_rejects(paths)[0]]


def discover_with_rejects(paths: list[str], index_dir: Path | None = None) -> tuple[list[sources.Entry], list[Reject]]:
    """(candidate documents, a reject per input skipped on the way: unreadable folder or shard, dangling link, link
    cycle, a shard member that is not a regular file).

    An entry that exists is taken literally (a folder named `data[1]` is a folder); only an entry that does
    not exist is expanded as a glob. A .txt list may name other lists, but never itself (directly or not).
    Folders and globs contribute `*.pdf` files and `*.tar` shards, whose `*.pdf` members are documents; with
    `index_dir` (the build's cache), shard indexes are kept there for this process and the workers it starts.
    """
    if index_dir is not None:
        sources.use_index_dir(index_dir)
    found: dict[str, sources.Entry] = {}
    rejects: list[Reject] = []
    for entry in paths:
        found.update((doc.path, doc) for doc in _expand(entry, rejects, ()))
    ordered = sorted(found.values(), key=lambda doc: doc.path.split("/"))  # the order of sorted Paths
    return ordered, sorted(rejects, key=lambda r: (r.item, r.reason))


def _expand(entry: str, rejects: list[Reject], lists: tuple[Path, ...]) -> Iterator[sources.Entry]:
    path = Path(entry)
    if sources.is_url(entry):
        yield from sources.url_entries(entry, rejects)
    elif kind := filekind.special_kind(path):
        raise RecipeError(f"{entry}: pool path is {kind}, not a PDF, folder, glob or .txt list")
    elif path.is_dir():
        if fs_type := filekind.virtual_fs(path):
            raise RecipeError(f"{entry}: pool folder is on the virtual file system {fs_type!r}, which holds no PDFs")
        yield from _entries(_walk(path, rejects), rejects)
    elif path.is_file() and path.suffix.lower() == ".txt":
        yield from _expand_list(path, rejects, lists)
    elif path.is_file():
        yield from _entries([path.resolve()], rejects)
    elif any(c in entry for c in "*?["):
        matches = (Path(p).resolve() for p in glob.glob(entry, recursive=True) if Path(p).is_file())
        yield from _entries(matches, rejects)
    elif path.is_symlink():
        rejects.append(_skip(path, "dangling_symlink", f"points to {os.readlink(path)}, which does not exist"))
    elif member := _member(entry):
        yield member
    else:
        raise RecipeError(f"{entry}: pool path does not exist")


def _member(entry: str) -> sources.Entry | None:
    """A shard member named by its path (`SHARD.tar/MEMBER`); None when `entry` names none."""
    member = sources.split_member(str(Path(entry).absolute()))
    if member is None:
        return None
    try:  # the shard's real path, as when a folder holding it is listed
        return sources.member_entry(f"{Path(member[0]).resolve()}/{member[1]}")
    except FileNotFoundError:
        return None


def _entries(files: Iterable[Path], rejects: list[Reject]) -> Iterator[sources.Entry]:
    for path in files:
        yield from sources.file_entries(str(path), rejects)


def _expand_list(path: Path, rejects: list[Reject], lists: tuple[Path, ...]) -> Iterator[sources.Entry]:
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
            named = line.strip() if sources.is_url(line.strip()) else str(real.parent / line.strip())
            yield from _expand(named, rejects, (*lists, real))


def _walk(root: Path, rejects: list[Reject]) -> Iterator[Path]:
    """PDF files and tar shards under `root`, following folder links once; every folder or link that is skipped
    is a reject."""
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
        if fs_type := filekind.virtual_fs(folder):  # a link into /proc, /sys or /dev: never walked
            dirs[:] = []
            rejects.append(_skip(Path(folder), "virtual_folder", f"on the virtual file system {fs_type!r}"))
            continue
        yield from _pdfs_in(Path(folder), files, rejects)


def _pdfs_in(folder: Path, names: list[str], rejects: list[Reject]) -> Iterator[Path]:
    for name in names:
        path = folder / name
        if not name.lower().endswith((".pdf", ".tar")):
            continue
        if path.is_symlink() and not path.exists():
            rejects.append(_skip(path, "dangling_symlink", f"points to {os.readlink(path)}, which does not exist"))
        elif path.is_file():
            yield path.resolve()
        elif kind := filekind.special_kind(path):
            rejects.append(_skip(path, "not_a_file", f"is {kind}, not a regular file"))


def _skip(path: Path, reason: str, detail: str) -> Reject:
    return Reject(stage="pool", item=str(path), reason=reason, detail=detail)


def cache_key(entry: sources.Entry) -> str:
    """Key of a document's pool result: its path, size and version (a local file's modification time)."""
    return content_hash({"path": entry.path, "size": entry.size_bytes, "mtime_ns": entry.version}, length=32)


def inspect_file(path: str | Path, config: PoolConfig) -> PdfDoc:
    """Hash and probe one document (a file, a shard member or a URL); raise RejectedInput with the cause when it
    is unusable."""
    path = str(path)
    size = sources.size_bytes(path)
    if size > config.max_file_mb * 1024 * 1024:
        raise RejectedInput("too_large", f"{size / 1e6:.1f} MB is over the {config.max_file_mb:g} MB limit")
    sha = sources.sha256(path)
    info = render.probe(path)
    for i, (width, height) in enumerate(info["page_sizes_pt"], start=1):
        if min(width, height) < config.min_page_side_pt or max(width, height) > config.max_page_side_pt:
            raise RejectedInput("absurd_page_size", f"page {i} is {width:g} x {height:g} pt")
    return PdfDoc(sha256=sha, path=path, size_bytes=size, **info)


def in_page_range(doc: PdfDoc, config: PoolConfig) -> bool:
    return config.min_pages <= doc.num_pages <= config.max_pages


def load_licences(path: str | None) -> dict[str, tuple[str | None, str | None]]:
    """Map file name (or path) -> (licence, source) from a TSV with `file` and `licence` columns."""
    if not path:
        return {}
    if not os.path.isfile(path):
        raise RecipeError(f"{path}: licence file not found")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: licence TSV is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except (OSError, csv.Error) as exc:
        raise RecipeError(f"{path}: cannot read the licence TSV: {exc}") from None
    if rows and not {"file", "licence"} <= set(rows[0]):
        raise RecipeError(f"{path}: licence TSV needs 'file' and 'licence' columns")
    return {r["file"]: (clean(r.get("licence")), clean(r.get("source") or r.get("debian_package"))) for r in rows}


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


def pool_reject(path: str | Path, exc: RejectedInput) -> Reject:
    return Reject(stage="pool", item=str(path), reason=exc.reason, detail=exc.detail)
