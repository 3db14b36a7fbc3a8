"""What was published, recorded at publish and checked on every rebuild: the size and sha256 of each file of
`OUT/dataset/`, kept in the publish stage's marker (`OUT/stages/publish/<fp>.done`, JSON) and in the manifest.

A rebuild whose `dataset/` differs from that record (a shard changed, cut short, added or removed) publishes it
again, with one warning line. A marker written by an earlier version holds no record: its dataset is trusted when
its card is there, as before.
Does not own: writing the dataset (hub/publish.py) or deciding when to publish (stages/publish.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from longdocvqa.core.readback import warn
from longdocvqa.core.store import atomic_write_text

_CHUNK_BYTES = 1 << 20


def file_digests(folder: Path) -> dict[str, list[Any]]:
    """Relative path -> [size in bytes, sha256] of every file under `folder` (links are not followed)."""
    found: dict[str, list[Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or path.is_file():
            found[path.relative_to(folder).as_posix()] = _digest(path)
    return found


def _digest(path: Path) -> list[Any]:
    if path.is_symlink():
        return [-1, "symlink"]
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            sha.update(chunk)
    return [path.stat().st_size, sha.hexdigest()]


def record_published(marker: Path, fingerprint: str, dataset_dir: Path) -> dict[str, list[Any]]:
    """Write the publish marker with the digests of what `dataset_dir` holds now; returns them."""
    files = file_digests(dataset_dir)
    atomic_write_text(marker, json.dumps({"fingerprint": fingerprint, "files": files}, sort_keys=True) + "\n")
    return files


def published_intact(marker: Path, dataset_dir: Path) -> bool:
    """Whether the dataset published under `marker` is still there as it was written (see the module docstring)."""
    if not marker.is_file() or dataset_dir.is_symlink() or not (dataset_dir / "README.md").is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return True  # an earlier version's marker: the fingerprint as plain text, no record of the files
    if not isinstance(recorded, dict) or not isinstance(recorded.get("files"), dict):
        return True
    changed = _differences(recorded["files"], file_digests(dataset_dir))
    if changed:
        warn(f"{dataset_dir}: differs from what was published ({changed}); publishing it again")
    return not changed


def _differences(recorded: dict[str, Any], found: dict[str, list[Any]]) -> str:
    names = sorted(set(recorded) ^ set(found)) + sorted(
        n for n in set(recorded) & set(found) if recorded[n] != found[n]
    )
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
