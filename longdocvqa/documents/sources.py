"""Where pool documents live and how their bytes are read: local files, tar shard members, fsspec URLs.

A pool document's `path` (in the manifest, the documents config and rejects) is one of:
- a local file, `/data/pool/a.pdf`, read as before;
- a member of an uncompressed tar shard (webdataset style, as public PDF corpora are distributed), recorded as
  `SHARD.tar/MEMBER`, e.g. `/data/shards/0001.tar/0001/a.pdf`;
- an fsspec URL (`s3://`, `gs://`, `hf://datasets/...`, `file://`, `memory://`) of a file or of a shard member,
  `s3://bucket/shards/0001.tar/a.pdf`. fsspec is optional (`datasets` installs it); only URLs need it, and each
  protocol its own package (s3fs, gcsfs; `hf://` comes with huggingface_hub).

A member's identity is the SHA-256 of its bytes, so the same PDF in a folder or in a shard is the same document.
Listing and hashing stream: a shard's headers are read once (tarfile, seeking past the data), a member's bytes are
hashed in 1 MiB chunks, and nothing holds more than one shard's member index at a time. The index (member ->
offset, size) is kept in memory per process and, when `use_index_dir` named a folder (the build's cache), in one
JSON file per shard version there, so the per-document workers of later stages never rescan a shard.
Does not own: which files enter the pool, rejects' bookkeeping (pool.py), opening PDFs (render.py).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tarfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from longdocvqa.core.errors import RecipeError, RejectedInput
from longdocvqa.core.fingerprint import content_hash
from longdocvqa.core.records import Reject
from longdocvqa.core.store import atomic_write_json

INDEX_ENV = "LONGDOCVQA_SHARD_INDEX_DIR"  # set by use_index_dir; inherited by worker processes
_CHUNK_BYTES = 1 << 20
# what fsspec's info() says about an object's version, by file system (s3, gcs, hf, local, memory)
_REMOTE_VERSION_KEYS = (
    "ETag", "etag", "md5Hash", "blob_id", "mtime", "LastModified", "last_modified", "updated", "created",
)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One pool document as listed: its path, size in bytes and version (mtime_ns locally; a shard member has
    its shard's version; a URL its ETag or modification time). Together they key the pool's per-file cache."""

    path: str
    size_bytes: int
    version: int | str


def is_url(path: str) -> bool:
    return "://" in path


def is_shard(path: str) -> bool:
    return path.lower().endswith(".tar")


def use_index_dir(folder: Path) -> None:
    """Keep shard indexes under `folder` (the build's cache); worker processes started later inherit it."""
    os.environ[INDEX_ENV] = str(folder)


# ---------------------------------------------------------------- file systems


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:
        raise RecipeError("pool URLs need fsspec: pip install fsspec (and s3fs, gcsfs per protocol)") from None
    return fsspec


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec file system, path inside it) for `url`; a clear error when its protocol's package is missing."""
    try:
        return _fsspec().core.url_to_fs(url)  # type: ignore[no-any-return]
    except (ImportError, ValueError) as exc:
        raise RecipeError(f"{url}: cannot read this URL: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _remote_is_file(url: str) -> bool:
    fs, inner = url_fs(url)
    try:
        return bool(fs.isfile(inner))
    except OSError:
        return False


def _is_file(path: str) -> bool:
    return _remote_is_file(path) if is_url(path) else os.path.isfile(path)


def split_member(path: str) -> tuple[str, str] | None:
    """(shard, member) when `path` names a member of a tar shard (`SHARD.tar/MEMBER`), None for a plain file."""
    if not is_url(path) and os.path.exists(path):
        return None
    lower, start = path.lower(), 0
    while (i := lower.find(".tar/", start)) >= 0:
        shard, member = path[: i + 4], path[i + 5 :]
        if member and _is_file(shard):
            return shard, member
        start = i + 1
    return None


def is_plain_file(path: str) -> bool:
    """Whether `path` is read as an ordinary local file (neither a URL nor a shard member)."""
    return not is_url(path) and split_member(path) is None


def _open_raw(path: str) -> IO[bytes]:
    if is_url(path):
        fs, inner = url_fs(path)  # 1 MiB blocks: a member is read with a few range requests, not 50 MB of readahead
        return fs.open(inner, "rb", block_size=_CHUNK_BYTES)  # type: ignore[no-any-return]
    return open(path, "rb")


def version_of(path: str) -> tuple[int, int | str]:
    """(size in bytes, version) of a whole file, local or URL."""
    if not is_url(path):
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    fs, inner = url_fs(path)
    return _remote_version(fs.info(inner))


def _remote_version(info: dict[str, Any]) -> tuple[int, int | str]:
    version = next((info[k] for k in _REMOTE_VERSION_KEYS if info.get(k) is not None), "")
    return int(info.get("size") or 0), str(version)


# ---------------------------------------------------------------- shard indexes


def scan_shard(shard: str) -> tuple[dict[str, tuple[int, int]], list[Reject]]:
    """Member name -> (data offset, size) of every `*.pdf` member, and a reject per member or shard skipped.

    Reads the headers only (tarfile seeks past the data), so memory grows with one shard's member count, never
    with the pool. A damaged shard keeps the members listed before the damage."""
    members: dict[str, tuple[int, int]] = {}
    rejects: list[Reject] = []
    try:
        with _open_raw(shard) as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            while (info := tar.next()) is not None:
                _add_member(shard, info, members, rejects)
    except (tarfile.TarError, OSError, EOFError) as exc:
        detail = f"cannot read the tar after {len(members)} PDF members: {type(exc).__name__}: {exc}"
        rejects.append(Reject(stage="pool", item=shard, reason="unreadable_shard", detail=" ".join(detail.split())))
    return members, rejects


def _add_member(shard: str, info: tarfile.TarInfo, members: dict[str, tuple[int, int]], rejects: list[Reject]) -> None:
    if not info.name.lower().endswith(".pdf"):
        return  # webdataset samples carry sidecars (.json, .txt): not documents, as in a folder
    if info.isreg():
        members[info.name] = (info.offset_data, info.size)
        return
    kind = "link" if info.issym() or info.islnk() else "directory" if info.isdir() else "special file"
    detail = f"the tar holds a {kind} under this name, not a file"
    rejects.append(Reject(stage="pool", item=f"{shard}/{info.name}", reason="not_regular_member", detail=detail))


def _index_file(shard: str, version: tuple[int, int | str]) -> Path | None:
    folder = os.environ.get(INDEX_ENV)
    if not folder:
        return None
    return Path(folder) / f"{content_hash({'shard': shard, 'version': list(version)}, length=32)}.json"


def index_shard(shard: str) -> tuple[dict[str, tuple[int, int]], list[Reject]]:
    """Scan `shard` and store its index for the workers (see use_index_dir); also returns the scan's rejects."""
    version = version_of(shard)
    members, rejects = scan_shard(shard)
    path = _index_file(shard, version)
    if path is not None:
        atomic_write_json(path, {"shard": shard, "members": members})
    return members, rejects


@functools.lru_cache(maxsize=8)
def _shard_index(shard: str, version: tuple[int, int | str]) -> dict[str, tuple[int, int]]:
    path = _index_file(shard, version)
    if path is not None and path.is_file():
        return {name: (int(at[0]), int(at[1])) for name, at in json.loads(path.read_text("utf-8"))["members"].items()}
    members = scan_shard(shard)[0]
    if path is not None:  # named member by member (a .txt list of members): the next process reads this
        atomic_write_json(path, {"shard": shard, "members": members})
    return members


def _locate(shard: str, member: str) -> tuple[int, int]:
    index = _shard_index(shard, version_of(shard))
    if member not in index:
        raise FileNotFoundError(f"{shard} holds no regular PDF member named {member}")
    return index[member]


# ---------------------------------------------------------------- listing


def shard_entries(shard: str, rejects: list[Reject]) -> Iterator[Entry]:
    """One Entry per PDF member of `shard` (indexed on the way); skipped members and shards go to `rejects`."""
    version = version_of(shard)[1]
    members, problems = index_shard(shard)
    rejects.extend(problems)
    for name, (_, size) in members.items():
        yield Entry(f"{shard}/{name}", size, version)


def member_entry(path: str) -> Entry | None:
    """The Entry of `path` when it names a shard member (`SHARD.tar/MEMBER`), else None."""
    member = split_member(path)
    if member is None:
        return None
    return Entry(path, _locate(*member)[1], version_of(member[0])[1])


def file_entries(path: str, rejects: list[Reject]) -> Iterator[Entry]:
    """The documents a listed file holds: a shard's members, or the file itself."""
    if is_shard(path):
        yield from shard_entries(path, rejects)
    else:
        yield Entry(path, *version_of(path))


def url_entries(url: str, rejects: list[Reject]) -> Iterator[Entry]:
    """Documents under an fsspec URL: a folder (every `*.pdf` and `*.tar` below it), a glob, a PDF or a shard."""
    fs, inner = url_fs(url)
    for name, info in _url_listing(fs, inner, url):
        full = fs.unstrip_protocol(name)
        if info.get("type") == "directory" or not name.lower().endswith((".pdf", ".tar")):
            continue
        if is_shard(name):
            yield from shard_entries(full, rejects)
        else:
            yield Entry(full, *_remote_version(info))


def _url_listing(fs: Any, inner: str, url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, info) of each file: one folder's listing at a time (fs.walk), not the whole tree at once."""
    if any(c in inner for c in "*?["):
        yield from sorted(fs.glob(inner, detail=True).items())
    elif fs.isdir(inner):
        for _, _, files in fs.walk(inner, detail=True):  # files: base name -> info (whose "name" is the path)
            yield from sorted((info["name"], info) for info in files.values())
    elif fs.isfile(inner):
        yield inner, fs.info(inner)
    else:
        raise RecipeError(f"{url}: pool path does not exist")


# ---------------------------------------------------------------- reading


def size_bytes(path: str) -> int:
    """Size of a pool document in bytes (a shard member's own size)."""
    member = split_member(path)
    if member is not None:
        return _locate(*member)[1]
    return version_of(path)[0]


def iter_chunks(path: str, chunk_bytes: int = _CHUNK_BYTES) -> Generator[bytes, None, None]:
    """The document's bytes in chunks of at most `chunk_bytes`; a member cut short by the shard's end is a
    RejectedInput (corrupt)."""
    member = split_member(path)
    with contextlib.ExitStack() as stack:
        if member is None:
            handle, left = stack.enter_context(_open_raw(path)), -1
        else:
            offset, left = _locate(*member)
            handle = stack.enter_context(_open_raw(member[0]))
            handle.seek(offset)
        while left != 0 and (chunk := handle.read(chunk_bytes if left < 0 else min(chunk_bytes, left))):
            left -= len(chunk) if left > 0 else 0
            yield chunk
        if left > 0:
            raise RejectedInput("corrupt", f"the shard ends {left} bytes before the end of this member")


def sha256(path: str) -> str:
    """SHA-256 of the document's bytes, streamed (constant memory)."""
    digest = hashlib.sha256()
    for chunk in iter_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def read_head(path: str, size: int) -> bytes:
    """The first `size` bytes (fewer when the document is shorter)."""
    with contextlib.closing(iter_chunks(path, size)) as chunks:
        return next(chunks, b"")


def read_bytes(path: str) -> bytes:
    """All of the document's bytes."""
    return b"".join(iter_chunks(path))
