"""The run directory: atomic writes, per-document stage outputs sharded by sha256, rejects, manifest.

Layout (docs/design.md §3):

    OUT/manifest.json          counts, drops by reason, token totals, timings, versions, recipe fingerprint
    OUT/recipe.lock.yaml       the resolved recipe
    OUT/plan.json              the plan stage's units
    OUT/rejects.jsonl          every dropped item (rewritten from the stage outputs at the end of a build)
    OUT/llm_calls.sqlite       the model-call ledger
    OUT/stages/<stage>/<fingerprint>/<sha[:2]>/<key>.json   one output per document, or its rejection
    OUT/stages/assemble/<inputs hash>.json    an assembly's stats and rejects, saved once it is published
    OUT/stages/publish/<picks hash>.done      the publish marker: the dataset holds these picks
    OUT/cache/pages/<sha[:2]>/<sha>/<dpi>-<format>-q<quality>-px<max_pixels>/<page>.<ext>
    OUT/cache/decontaminate/   signatures and page hashes; OUT/cache/shards/: the index of archive members
    OUT/plots/                 the length histograms
    OUT/dataset/               the Hub-ready folder

`RunDir` owns every one of these paths: no other module builds a path inside the run directory.

Every file is written to a temporary name in the same folder and renamed into place, so a run
killed at any moment (kill -9) leaves finished outputs whole and unfinished ones absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from longdocvqa.core.errors import RunDirBusy, StageError
from longdocvqa.core.readback import checked_record
from longdocvqa.core.records import Reject

M = TypeVar("M", bound=BaseModel)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~process_umask())  # mkstemp makes 0600; a file written in place would follow the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_UMASK: list[int] = []


def process_umask() -> int:
    """The process umask (read once; /proc when it has it, so no thread sees a changed umask)."""
    if not _UMASK:
        _UMASK.append(_read_umask())
    return _UMASK[0]


def _read_umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


class StageOutput:
    """Per-document outputs of one stage, keyed by the stage fingerprint and the document sha256."""

    def __init__(self, root: Path, stage: str, fingerprint: str) -> None:
        self.stage = stage
        self.fingerprint = fingerprint
        self.dir = root / "stages" / stage / fingerprint

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def done(self, key: str) -> bool:
        """Whether a sound output is stored for `key`; one that does not parse or does not match its key is removed
        with one warning line (records.check_record), so the work is done again."""
        path = self.path(key)
        return path.is_file() and checked_record(path, key) is not None

    def write(self, key: str, payload: Any) -> None:
        """Store a JSON-able payload (lists of records are dumped in JSON mode), with its key."""
        atomic_write_json(self.path(key), {"key": key, "ok": dump(payload)})

    def write_reject(self, key: str, reject: Reject) -> None:
        atomic_write_json(self.path(key), {"key": key, "reject": reject.model_dump(mode="json")})

    def read(self, key: str) -> dict[str, Any]:
        """Return {"ok": payload} or {"reject": Reject-dict} (a record found unsound now is removed: StageError)."""
        data = checked_record(self.path(key), key)
        if data is None:
            raise StageError(f"{self.path(key)}: the stored output was unsound and is removed; run again to redo it")
        return data

    def rejects(self) -> Iterator[Reject]:
        """Every rejection stored by this stage, in key order (unsound records are removed and skipped)."""
        for path in sorted(self.dir.glob("*/*.json")):
            data = checked_record(path, path.stem)
            if data is not None and "reject" in data:
                yield Reject.model_validate(data["reject"])


class RunDir:
    """A build's output folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def lock_path(self) -> Path:
        return self.root / "build.lock"

    def lock(self) -> Any:
        """Hold the run directory for one build (a context manager); see `run_lock`."""
        return run_lock(self.lock_path)

    def stage(self, stage: str, fingerprint: str) -> StageOutput:
        return StageOutput(self.root, stage, fingerprint)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def rejects_path(self) -> Path:
        return self.root / "rejects.jsonl"

    @property
    def ledger_path(self) -> Path:
        return self.root / "llm_calls.sqlite"

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def recipe_lock_path(self) -> Path:
        return self.root / "recipe.lock.yaml"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def decontaminate_cache(self) -> Path:
        return self.cache_dir / "decontaminate"

    @property
    def benchmark_reads_dir(self) -> Path:
        """Where a benchmark PDF's worker leaves what it read, for the build process to load (then deleted)."""
        return self.decontaminate_cache / "benchmark-reads"

    @property
    def dataset_card_path(self) -> Path:
        return self.dataset_dir / "README.md"

    @property
    def shard_index_dir(self) -> Path:
        return self.cache_dir / "shards"

    def page_image_path(self, sha256: str, page: int, variant: str, ext: str) -> Path:
        """Where page `page` (1-based) of document `sha256` is cached, rendered under `variant` (dpi, format...)."""
        return self.cache_dir / "pages" / sha256[:2] / sha256 / variant / f"{page}.{ext}"

    def assemble_marker(self, inputs_hash: str) -> Path:
        """The saved stats and rejects of the assembly of these inputs, written once its dataset is published."""
        return self.root / "stages" / "assemble" / f"{inputs_hash}.json"

    def publish_marker(self, picks_hash: str) -> Path:
        """Present once OUT/dataset/ holds the examples these picks name."""
        return self.root / "stages" / "publish" / f"{picks_hash}.done"

    def read_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def write_rejects(self, rejects: Iterable[Reject]) -> int:
        """Rewrite rejects.jsonl (sorted, one JSON object per line); return how many."""
        lines = sorted({r.model_dump_json() for r in rejects})
        atomic_write_text(self.rejects_path, "".join(line + "\n" for line in lines))
        return len(lines)


_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth
STALE_LOCK_WAIT_S = 10.0
_HELD_FDS: dict[str, int] = {}  # ... -> the descriptor that holds the flock


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a run directory for the life of a build (re-entrant within one process).

    `flock` on `path`, which holds the holder's pid, host and start time: the kernel drops the lock when its
    holder dies (even by kill -9), so a stale lock file left by a dead build is simply taken over. A second
    build on the same folder gets RunDirBusy at once, naming the holder.
    """
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = _acquire(path)
    _HELD[key] = 1
    _HELD_FDS[key] = fd
    try:
        yield
    finally:
        del _HELD[key], _HELD_FDS[key]
        os.ftruncate(fd, 0)
        os.close(fd)  # the file stays: unlinking it would let a third build lock a fresh file beside a waiter


def _forget_locks_in_child() -> None:
    """A forked worker closes its copies of the build's lock descriptors: the lock belongs to the build process, and
    is released the moment that process dies, not when its last worker has finished dying."""
    for fd in _HELD_FDS.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()
    _HELD_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _acquire(path: Path) -> int:

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunDirBusy(f"{path}: cannot create the run directory's lock: {exc.strerror or exc}") from None
    try:
        _flock_unless_held_by_a_live_build(fd)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        os.close(fd)
        raise RunDirBusy(
            f"{path.parent}: another build is running in this run directory ({_holder(holder)}); "
            "wait for it to finish or choose another --out"
        ) from None
    except OSError as exc:  # a file system without locks (some network mounts)
        os.close(fd)
        raise RunDirBusy(f"{path}: cannot lock the run directory: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    started = datetime.now(UTC).isoformat(timespec="seconds")
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (info + "\n").encode("utf-8"), 0)
    return fd


def _flock_unless_held_by_a_live_build(fd: int) -> None:
    """Take the flock; when the build named in the file has died (this host, pid gone), wait up to
    `STALE_LOCK_WAIT_S` for its dying workers to let go (a worker killed in the instant after it was forked has not
    yet closed its copy of the descriptor). A live holder raises BlockingIOError at once."""
    import fcntl

    deadline = time.monotonic() + STALE_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if _holder_alive(os.pread(fd, 4096, 0).decode("utf-8", "replace")) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _holder_alive(text: str) -> bool:
    """Whether the build named in a lock file may still run: True unless it is on this host and its pid is gone."""
    try:
        info = json.loads(text)
        pid, host = int(info["pid"]), str(info["host"])
    except (ValueError, KeyError, TypeError):
        return True  # still being written
    return host != socket.gethostname() or pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder still starting"


def read_jsonl(path: Path, model: type[M]) -> list[M]:
    """Load a JSONL file of records."""
    with open(path, encoding="utf-8") as handle:
        return [model.model_validate_json(line) for line in handle if line.strip()]


def dump(payload: Any) -> Any:
    """Pydantic records (also inside lists and dicts) as JSON-able data."""
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    if isinstance(payload, list | tuple):
        return [dump(p) for p in payload]
    if isinstance(payload, dict):
        return {k: dump(v) for k, v in payload.items()}
    return payload
