"""Worker processes that die with the build, and per-document isolation with a time limit and a memory guard.

Two jobs, both about processes the build starts:

- `die_with_parent(pid)` runs first in every worker (pool/layout documents, generation client processes): on
  Linux the kernel sends SIGKILL to the worker when its parent dies (prctl PR_SET_PDEATHSIG); everywhere, a
  daemon thread checks once every `WATCHDOG_INTERVAL_S` that the build process is still alive and kills its own
  process when it is not. So a build killed by any signal (OOM killer, `kill -9`, a CI timeout) leaves nothing
  running. Workers ignore SIGINT: Ctrl-C is handled once, by the build process, which then ends its workers.
- `run_isolated(...)` runs each document's job in its own child process under `Limits`: a wall-clock deadline
  (the parent kills the child when it passes) and an address-space limit (RLIMIT_AS, set in the child above the
  address space it started with). A job that overruns, or whose process dies, is reported through `on_failure`
  with the reason `timeout`, `too_big` or `worker_crashed`, and the remaining jobs go on.
- `exception_failure(exc, otherwise)`: the one mapping of a job's exception to a reject reason and detail, and
  `Limits.of(recipe.isolation)`: the one place the limits are built from the recipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from longdocvqa.core import environment
from longdocvqa.core.environment import raise_if_environment
from longdocvqa.core.errors import one_line
from longdocvqa.core.recipe import IsolationConfig
from longdocvqa.core.store import pid_alive

WATCHDOG_INTERVAL_S = 0.5
_PR_SET_PDEATHSIG = 1
_POLL_S = 0.1
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-document bounds: wall time in seconds, extra address space in MB (0 disables a bound)."""

    seconds: float = 0.0
    memory_mb: int = 0

    @classmethod
    def of(cls, cfg: IsolationConfig) -> Limits:
        """The recipe's `isolation` settings as limits: the one place they are built."""
        return cls(seconds=cfg.seconds_per_document, memory_mb=cfg.memory_mb_per_document)


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process exit as soon as `parent_pid` dies; ignore Ctrl-C (the parent handles it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_pdeathsig()
    if not pid_alive(parent_pid) or os.getppid() != parent_pid:  # the parent died before the kernel was told
        os._exit(1)
    thread = threading.Thread(target=_watch, args=(parent_pid,), name="parent-watchdog", daemon=True)
    thread.start()


def _set_pdeathsig() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _watch(parent_pid: int) -> None:
    while pid_alive(parent_pid) and os.getppid() == parent_pid:
        time.sleep(WATCHDOG_INTERVAL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def kill_pool(executor: Any) -> None:
    """End a ProcessPoolExecutor's workers now (Ctrl-C or an error in the parent): no waiting for their jobs."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(5)


# ---------------------------------------------------------------- per-document isolation


def run_isolated(
    fn: Callable[..., None],
    jobs: Sequence[tuple[Any, ...]],
    *,
    workers: int,
    limits: Limits,
    on_failure: Callable[[tuple[Any, ...], str, str], None],
    advance: Callable[[int], None],
) -> None:
    """Run `fn(*job)` for every job, each in its own process, at most `workers` at a time, under `limits`."""
    for job, failure in iter_isolated(fn, jobs, workers=workers, limits=limits):
        if failure:
            on_failure(job, *failure)
        advance(1)


def iter_isolated(
    fn: Callable[..., None], jobs: Sequence[tuple[Any, ...]], *, workers: int, limits: Limits
) -> Generator[tuple[tuple[Any, ...], tuple[str, str] | None], None, None]:
    """`run_isolated` as a generator: each (job, None or (reason, detail)) as its process ends."""
    context = _context()
    running: dict[Any, tuple[Any, tuple[Any, ...], float]] = {}
    queue = list(jobs)
    try:
        while queue or running:
            while queue and len(running) < max(1, workers):
                job = queue.pop(0)
                process = context.Process(target=_child, args=(fn, job, os.getpid(), limits.memory_mb), daemon=True)
                with _sigint_blocked():  # the child ignores Ctrl-C from its first instruction on
                    process.start()
                running[process.sentinel] = (process, job, time.monotonic() + (limits.seconds or float("inf")))
            yield from _reap(running, limits)
    finally:
        for process, _job, _deadline in running.values():  # Ctrl-C or an error here: end what still runs
            process.kill()
            process.join()


def _context() -> Any:
    import multiprocessing

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _reap(
    running: dict[Any, tuple[Any, tuple[Any, ...], float]], limits: Limits
) -> Iterator[tuple[tuple[Any, ...], tuple[str, str] | None]]:
    from multiprocessing.connection import wait

    ready = set(wait(list(running), timeout=_POLL_S))
    now = time.monotonic()
    for sentinel in list(running):
        process, job, deadline = running[sentinel]
        if sentinel not in ready and now < deadline:
            continue
        del running[sentinel]
        if sentinel not in ready:
            process.kill()
        process.join()
        yield job, _failure(process.exitcode, sentinel not in ready, limits)


def _failure(exitcode: int | None, overran: bool, limits: Limits) -> tuple[str, str] | None:
    if overran:
        return "timeout", f"over the {limits.seconds:g} s limit per document"
    if exitcode == 0:
        return None
    if (cause := environment.from_exit_code(exitcode)) is not None:
        return environment.ENVIRONMENT, cause
    if exitcode == _EXIT_MEMORY:
        return "too_big", f"over the {limits.memory_mb} MB memory limit per document"
    cause = f"signal {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0 else f"exit code {exitcode}"
    if limits.memory_mb and exitcode in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
        return "too_big", f"worker died ({cause}), probably at the {limits.memory_mb} MB memory limit"
    return "worker_crashed", f"the worker process died ({cause})"


_EXIT_MEMORY = 3


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _child(fn: Callable[..., None], job: tuple[Any, ...], parent_pid: int, memory_mb: int) -> None:
    die_with_parent(parent_pid)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if memory_mb:
        limit_memory(memory_mb)
    try:
        fn(*job)
    except MemoryError:
        os._exit(_EXIT_MEMORY)
    except OSError as exc:  # the machine, not the document (disk full, I/O error...): the parent stops the build
        code = environment.exit_code_for(exc)
        if code is None:
            raise
        os._exit(code)


def limit_memory(memory_mb: int) -> None:
    """Cap this process's address space at what it has now plus `memory_mb` (RLIMIT_AS; no-op where absent)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return
    limit = _address_space_bytes() + memory_mb * _MB
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    with contextlib.suppress(ValueError, OSError, OverflowError):  # a limit past what the kernel takes: unbounded
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def exception_failure(exc: BaseException, otherwise: str, document: str | None = None) -> tuple[str, str]:
    """The one mapping of a job's exception to (reject reason, one-line detail): an error of the environment (a full
    disk, EIO, too many open files: core/environment.py) is re-raised, never stored as `document`'s reject; a failed
    allocation is `too_big`, anything else `otherwise` (`render_failed`, `layout_failed`, `unreadable`); callers that
    keep a RejectedInput's own reason catch it first. A job's exit is mapped by `iter_isolated` (`timeout`,
    `too_big`, `worker_crashed`, or the environment error a worker exited with)."""
    raise_if_environment(exc, document)
    return ("too_big" if is_memory_error(exc) else otherwise), one_line(exc)


def is_memory_error(exc: BaseException) -> bool:
    """A failed allocation: Python's MemoryError or MuPDF's out-of-memory error (raised as a generic type)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(m in text for m in ("malloc", "out of memory", "cannot allocate", "memory allocation"))


@contextlib.contextmanager
def interrupt_kills(executor: Any) -> Iterator[None]:
    """Around a ProcessPoolExecutor block: on Ctrl-C or any error, end its workers instead of waiting for them."""
    try:
        yield
    except BaseException:
        kill_pool(executor)
        raise
