"""What makes a folder a run directory, and the only ways a build may claim, clear or remove parts of one.

- `claim(out, force)`: before a build touches OUT. A missing or empty OUT becomes a run directory (the marker file
  `OUT/.longdocvqa-run`, holding the tool's name and version, is written). An existing run directory, marked or made
  by an earlier version (no marker, but `recipe.lock.yaml` and `stages/`), is used as is. Any other non-empty
  folder is refused (RecipeError, exit 2) unless `force`; an OUT that is a file, lies under a file, or cannot be
  created is one line too.
- `remove_path(path)`: removes a file, folder or symbolic link without ever following a link (a link planted at
  `OUT/.dataset.partial` is unlinked, its target untouched).
- `start_over(out)`: `--no-resume`. Only `stages/` is cleared; the published `dataset/` stays until the new one is
  complete and swapped in by the publish stage.
Does not own: the lock (store.run_lock), what is written inside (store.RunDir, the stages).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from longdocvqa import __version__
from longdocvqa.core.environment import EnvironmentFailure, describe, is_environment_error
from longdocvqa.core.errors import RecipeError
from longdocvqa.core.readback import checked_record
from longdocvqa.core.store import atomic_write_json, atomic_write_text

MARKER = ".longdocvqa-run"
TOOL = "longdocvqa"


def is_run_dir(out: Path) -> bool:
    """Whether `out` is a run directory of this tool: its marker, or the layout earlier versions left."""
    if (out / MARKER).is_file() and not (out / MARKER).is_symlink():
        return _marker_tool(out / MARKER) == TOOL
    return (out / "recipe.lock.yaml").is_file() and (out / "stages").is_dir()


def _marker_tool(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return TOOL  # a marker cut short is still ours: only this tool writes that name
    return str(data.get("tool")) if isinstance(data, dict) else None


def claim(out: Path, force: bool = False) -> None:
    """Make sure `out` may be used as a run directory (see the module docstring); writes the marker."""
    _check_place(out)
    if out.is_dir() and _foreign_entries(out) and not is_run_dir(out) and not force:
        raise RecipeError(
            f"--out {out}: this folder is not empty and is not a run directory of this tool (no {MARKER} file); "
            "nothing was changed. Choose an empty or new folder, or pass --force to use this one"
        )
    _make(out)
    if not (out / MARKER).is_file() or (out / MARKER).is_symlink():
        remove_path(out / MARKER)
        atomic_write_text(out / MARKER, json.dumps({"tool": TOOL, "version": __version__}) + "\n")


def _foreign_entries(out: Path) -> list[str]:
    """What `out` holds besides this tool's own lock and marker (a stale lock, a marker being written)."""
    own = {"build.lock", MARKER}
    return [p.name for p in out.iterdir() if p.name not in own and not p.name.startswith(f".{MARKER}.")]


def _check_place(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RecipeError(f"--out {out}: is a file, not a folder; choose a folder")
    for parent in out.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise RecipeError(f"--out {out}: {parent} is a file, so no folder can be made under it")


def _make(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        kind = EnvironmentFailure if is_environment_error(exc) else RecipeError
        raise kind(f"--out {out}: cannot create the run directory: {describe(exc)}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        cause = os.strerror(errno.EROFS if _read_only(out) else errno.EACCES)
        raise EnvironmentFailure(f"--out {out}: {cause}; choose a folder you can write")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def remove_path(path: Path) -> None:
    """Remove `path`, whatever it is, never following a symbolic link; nothing there is fine."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path)


def start_over(out: Path) -> None:
    """`--no-resume`: clear the stage outputs; `dataset/` is kept until publish swaps the new one in."""
    remove_path(out / "stages")


LIMIT_REASONS = frozenset({"too_big", "timeout", "worker_crashed"})  # rejects the isolation limits may cause
_LIMITS_FILE = "limits.json"


def forget_limit_rejects(folder: Path, limits: dict[str, Any]) -> int:
    """Before a stage resumes from `folder`: when its stored rejects were made under other isolation `limits`
    (recorded in `folder/limits.json`), those a limit may have caused (LIMIT_REASONS) are removed, so a document
    rejected under a bad setting is tried again once the setting is fixed. Returns how many were removed."""
    marker = folder / _LIMITS_FILE
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None  # a new stage folder, or one from an earlier version: its rejects are taken as they are
    removed = 0
    if recorded is not None and recorded != limits:
        removed = sum(_forget_if_limited(path) for path in sorted(folder.glob("*/*.json")))
    if recorded != limits:
        atomic_write_json(marker, limits)
    return removed


def _forget_if_limited(path: Path) -> bool:
    data = checked_record(path, path.stem)
    if data is None or not isinstance(data.get("reject"), dict) or data["reject"].get("reason") not in LIMIT_REASONS:
        return False
    path.unlink(missing_ok=True)
    return True
