"""Executors on this machine's processes: the default for every build.

- `IsolatedProcesses`: each job in its own forked process under the recipe's per-document limits (isolation:
  seconds and memory per document, isolate.py), at most `workers` at a time; a job that overruns or whose process
  dies yields a Failure and the other jobs go on. Pool and layout run on it.
- `ProcessPool`: a few long-lived worker processes (generation: each runs its share of the documents on its own
  event loop and endpoint connections); workers report finished documents to the parent's progress bar through
  `worker_advance`. Ctrl-C or an error in the parent ends its workers at once.
- `InProcess`: jobs in the calling process, one after the other (cheap stages such as segment).
Does not own: which jobs to run or what they write (the stages, through runner/loop.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from longdocvqa.documents import render
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import ClientPool, Failure, Job, Outcomes

R = TypeVar("R")
_POLL_S = 0.2


class IsolatedProcesses:
    """One process per job under per-document `limits`, at most `workers` at a time."""

    def __init__(self, workers: int, limits: isolate.Limits) -> None:
        self.workers, self.limits = workers, limits

    def map(self, fn: Callable[..., None], jobs: Sequence[Job]) -> Outcomes:
        if not jobs:
            return
        render.preload()  # forked workers inherit the import
        by_args = {id(job.args): job for job in jobs}
        runs = isolate.iter_isolated(fn, [job.args for job in jobs], workers=self.workers, limits=self.limits)
        with contextlib.closing(runs):  # Ctrl-C or an error in the caller: end what still runs, now
            for args, failure in runs:
                yield by_args[id(args)], None if failure is None else Failure(*failure)

    def close(self) -> None:
        """Nothing outlives `map`."""

    def client_pool(self) -> ClientPool | None:
        """Generation's clients run on this machine (ProcessPool or in the build process)."""
        return None


class InProcess:
    """Jobs in this process, in order."""

    def map(self, fn: Callable[..., None], jobs: Sequence[Job]) -> Outcomes:
        for job in jobs:
            fn(*job.args)
            yield job, None

    def close(self) -> None:
        """Nothing to end."""

    def client_pool(self) -> ClientPool | None:
        """Generation's clients run on this machine (ProcessPool or in the build process)."""
        return None


_WORKER_DONE: Any = None  # in a ProcessPool worker: the parent's queue of finished-document counts


class ProcessPool:
    """`processes` long-lived workers; `advance` receives the counts workers report through `worker_advance`."""

    def __init__(self, processes: int, advance: Callable[[int], None]) -> None:
        self.processes, self.advance = processes, advance

    def map(self, fn: Callable[..., R], jobs: Sequence[Job]) -> Generator[tuple[Job, R], None, None]:
        """Each job's return value in completion order; a worker's error is raised here (the build stops)."""
        done: Any = multiprocessing.get_context().Queue()
        executor = ProcessPoolExecutor(self.processes, initializer=_worker_init, initargs=(done, os.getpid()))
        with executor, isolate.interrupt_kills(executor):
            futures = {executor.submit(fn, *job.args): job for job in jobs}
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                while not done.empty():
                    self.advance(done.get())
                for future in finished:
                    yield futures[future], future.result()  # re-raises the worker's error (e.g. the endpoint is down)

    def close(self) -> None:
        """Workers end with `map`."""


def _worker_init(done: Any, parent_pid: int) -> None:
    global _WORKER_DONE
    isolate.die_with_parent(parent_pid)
    _WORKER_DONE = done


def report_progress_to(sink: Any) -> None:
    """In a worker this module did not start (a Ray actor): `worker_advance` calls `sink.put(n)`."""
    global _WORKER_DONE
    _WORKER_DONE = sink


def worker_advance(n: int = 1) -> None:
    """In a ProcessPool worker: `n` more documents finished (the parent's progress bar moves)."""
    _WORKER_DONE.put(n)
