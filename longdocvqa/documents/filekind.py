"""What kind of thing a local path is, before anything opens it: a regular file, or a FIFO, device or socket (which
would block a reader forever or stream without end), and whether a folder lies on a virtual file system (/proc,
/sys, /dev: walking /proc follows `/proc/*/root` into the whole machine).

Owns the checks; the pool (pool.py) and `longdocvqa layout` (layoutview.py) turn them into one-line errors.
"""

from __future__ import annotations

import os
import stat
from functools import cache
from pathlib import Path

# Kernel and pseudo file systems: their files are not documents, and their links lead anywhere.
VIRTUAL_FS = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
     "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "efivarfs", "selinuxfs", "rpc_pipefs",
     "nsfs", "autofs"}
)  # fmt: skip
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))  # fmt: skip


def special_kind(path: str | Path) -> str | None:
    """'a FIFO', 'a character device', 'a block device' or 'a socket' when `path` (links followed) is one; else
    None (a regular file, a folder, or nothing at all)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((name for test, name in _KINDS if test(mode)), None)


def virtual_fs(path: str | Path) -> str | None:
    """The type of the virtual file system (`proc`, `sysfs`, ...) that holds `path` (links resolved), else None."""
    real = os.path.realpath(path)
    best = ("", "")
    for mount_point, fs_type in _mounts():
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best[0]):
            best = (mount_point, fs_type)
    return best[1] if best[1] in VIRTUAL_FS else None


@cache
def _mounts() -> tuple[tuple[str, str], ...]:
    """(mount point, file system type) of every mount this process sees (/proc/self/mounts); () where absent."""
    try:
        text = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    fields = (line.split() for line in text.splitlines())
    return tuple((_unescape(f[1]), f[2]) for f in fields if len(f) >= 3)


def _unescape(field: str) -> str:
    """Mount points escape space, tab, newline and backslash as octal (`\\040`)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
