"""Transient versus permanent: which failures are about the machine, not the document.

A full disk (ENOSPC, EDQUOT, EFBIG), an I/O error (EIO), too many open files (EMFILE, ENFILE), a read-only or
unwritable run directory (EROFS, EACCES, EPERM on a path that is not the document), or MemoryError in the build
process say nothing about the document being processed. Such a failure stops the build (EnvironmentFailure, exit
1, one line) and is never stored as the document's reject, so the next run retries the document. Only failures
caused by the document are stored.

In a per-document worker (runner/isolate.py) an environment error ends the process with
`exit_code_for(exc)`; the parent reads it back with `from_exit_code` as the Failure reason ENVIRONMENT.
Does not own: where the failure is raised or reported (runner/loop.py, the stages, the CLI).
"""

from __future__ import annotations

import errno
import os

from longdocvqa.core.errors import StageError

ENVIRONMENT = "environment"  # the Failure reason of a worker stopped by an environment error
_ALWAYS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EROFS,
           errno.ENOMEM}  # fmt: skip
_UNLESS_THE_DOCUMENT = {errno.EACCES, errno.EPERM}
_EXIT_BASE = 100  # a worker stopped by errno E exits 100 + E (errno values on Linux stay below 134)


class EnvironmentFailure(StageError):
    """The machine failed, not the document (exit 1): nothing is stored for the document; fix it and run again."""


def is_environment_error(exc: BaseException, document: str | os.PathLike[str] | None = None) -> bool:
    """Whether `exc` is about the machine rather than `document` (a permission error on the document itself is the
    document's)."""
    if isinstance(exc, OSError) and exc.errno in _ALWAYS:
        return True
    if isinstance(exc, OSError) and exc.errno in _UNLESS_THE_DOCUMENT:
        return document is None or exc.filename is None or str(exc.filename) != str(document)
    return False


def raise_if_environment(exc: BaseException, document: str | os.PathLike[str] | None = None) -> None:
    """In a worker's catch-all: re-raise an environment error instead of storing it as the document's reject."""
    if is_environment_error(exc, document):
        raise exc


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code a per-document worker ends with for an environment error (None: not one)."""
    if isinstance(exc, OSError) and is_environment_error(exc) and exc.errno is not None:
        return _EXIT_BASE + exc.errno if _EXIT_BASE + exc.errno < 256 else _EXIT_BASE + errno.EIO
    return None


def from_exit_code(exitcode: int | None) -> str | None:
    """The one-line cause behind a worker's exit code from `exit_code_for` (None: not an environment exit)."""
    if exitcode is None or not _EXIT_BASE < exitcode < 256:
        return None
    code = exitcode - _EXIT_BASE
    return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"


def describe(exc: BaseException) -> str:
    """One line for an environment error: the cause and the path it happened on."""
    if isinstance(exc, MemoryError):
        return "out of memory in the build process"
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, "")
        where = f" on {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{f' ({name})' if name else ''}{where}"
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def stopped(stage: str, item: str, cause: str) -> EnvironmentFailure:
    """The build's one line when a worker met an environment error: nothing was stored for `item`."""
    return EnvironmentFailure(
        f"{stage}: stopped by the environment, not the document: {cause} (while processing {item}); nothing was "
        "stored for it and finished work is kept: fix the cause and run the same command again"
    )


def stop_if_environment(stage: str, item: str, reason: str, detail: str) -> None:
    """A worker's Failure with the reason ENVIRONMENT stops the build (`stopped`); any other is the document's."""
    if reason == ENVIRONMENT:
        raise stopped(stage, item, detail)


def failure_message(exc: BaseException) -> str:
    """The CLI's one line for an environment error or MemoryError raised in the build process."""
    return (
        f"the build stopped: {describe(exc)}; finished work is kept and nothing was stored as a reject: fix the "
        "cause and run the same command again"
    )
