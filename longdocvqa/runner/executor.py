"""How a stage's per-document jobs run: the Executor interface and what flows through it.

Owns: `Job` (one document's work: a picklable call keyed by the document's hash), `Failure` (why a job gave no
output: `timeout`, `too_big`, `worker_crashed`) and the `Executor` protocol. A stage function writes its result
into the run directory itself, so which worker ran a job, and how many workers there were, never changes what is
written. `local.py` runs jobs on this machine's processes; `ray.py` runs the same jobs as Ray tasks, and
generation's client processes as Ray actors (`ClientPool`).
Does not own: which jobs are still to do, collecting results, rejects or progress (runner/loop.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True)
class Job:
    """One document's work: `fn(*args)`; `key` is where its output is stored (the document hash), `item` the file
    a reject names."""

    key: str
    item: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Failure:
    """A job that ended without output: the reject reason and a one-line detail."""

    reason: str
    detail: str


Outcomes = Generator[tuple[Job, Failure | None], None, None]
R = TypeVar("R")


class ClientPool(Protocol):
    """Long-lived model-client workers elsewhere than this machine's processes (generation on Ray): each job is one
    worker's share of the documents, run by an async `fn` on that worker's event loop; `advance` receives the
    documents workers report finished. Yields each job's return value; a worker's error is raised here."""

    def map(
        self, fn: Callable[..., Awaitable[R]], jobs: Sequence[Job], advance: Callable[[int], None]
    ) -> Generator[tuple[Job, R], None, None]: ...


class Executor(Protocol):
    """Runs per-document jobs whose function stores its own output; yields each (job, None or its Failure) in
    completion order. Closing the generator early (Ctrl-C, an error) ends the jobs still running."""

    def map(self, fn: Callable[..., None], jobs: Sequence[Job]) -> Outcomes: ...

    def close(self) -> None: ...

    def client_pool(self) -> ClientPool | None:
        """Where generation's client workers run: None on this machine (local processes), else a ClientPool."""
        ...
