"""The Ray executor (`build --executor ray`): the same stage functions as the local executor, on a Ray cluster.

- Per-document jobs (pool, layout): one Ray task per document, `cpus_per_task` CPUs each, at most two per CPU of
  the cluster in flight (the rest wait here, so a 1.5M-document pool is never submitted at once). Inside its task
  a job runs exactly as locally: in its own forked process under the recipe's per-document limits (isolate.py), so
  a job that overruns, runs out of memory or kills its process is the same Failure (`timeout`, `too_big`,
  `worker_crashed`) with the same detail. A task Ray loses beyond its retries (its node died) is `worker_crashed`.
- Generation: a `ClientPool` of async actors, one per `generate.processes` share of the documents; each runs its
  share on the actor's event loop with its own share of the endpoint's concurrency (the recipe it is given), and
  reports finished documents to the driver's progress bar. An actor serves its progress queries while it works
  (async actors honour `max_concurrency`; sync actors would not). An actor whose node dies restarts elsewhere and
  runs its share again; the calls it had finished are replayed from the ledger, not paid again.
Jobs carry paths and small settings, never page bytes. Every job writes its output into the run directory (on a
cluster, a folder every node mounts at the same path), keyed by document sha256: which node ran a job, and how many
workers there were, never changes what is written, so Ray and local builds give byte-identical Parquet.
`ray` is imported here only, inside functions: the base install works without it (`pip install 'longdocvqa[ray]'`).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

from longdocvqa.core.errors import RecipeError, StageError, one_line
from longdocvqa.core.recipe import Recipe
from longdocvqa.documents import render
from longdocvqa.runner import isolate
from longdocvqa.runner.executor import ClientPool, Failure, Job, Outcomes
from longdocvqa.runner.local import report_progress_to

R = TypeVar("R")
_IN_FLIGHT_PER_CPU = 2
_POLL_S = 0.2
_TASK_RETRIES = 3  # a task whose node dies is run again elsewhere (its output is keyed, so nothing doubles)
_ACTOR_RESTARTS = 2  # a client actor whose node dies restarts elsewhere and runs its share again: its finished
# calls are replayed from the ledger (never paid twice), its stored documents rewritten with the same bytes


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RecipeError("--executor ray needs Ray: pip install 'longdocvqa[ray]'") from exc
    return ray


@contextlib.contextmanager
def ray_executor(
    recipe: Recipe, *, workers: int | None, address: str | None = None, cpus_per_task: float = 1.0
) -> Iterator[RayExecutor]:
    """A RayExecutor under `recipe`'s per-document limits: on the cluster at `address` (or RAY_ADDRESS), else on a
    local Ray started with `workers` CPUs (default: all cores); a Ray this call started is shut down after."""
    executor = RayExecutor(
        isolate.Limits.of(recipe.isolation),
        address=address,
        cpus=workers or os.cpu_count() or 1,
        cpus_per_task=cpus_per_task,
    )
    try:
        yield executor
    finally:
        executor.close()


class RayExecutor:
    """Per-document jobs as Ray tasks (module docstring); connects to, or starts, Ray on construction."""

    def __init__(self, limits: isolate.Limits, *, address: str | None, cpus: int, cpus_per_task: float) -> None:
        ray = _ray()
        self.limits, self.cpus_per_task = limits, cpus_per_task
        self.started = not ray.is_initialized()  # a Ray the caller started (tests, notebooks) stays up
        if self.started:
            address = address or os.environ.get("RAY_ADDRESS") or None
            local = {"num_cpus": cpus} if address is None else {}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING", **local)
        self.cluster_cpus = float(ray.cluster_resources().get("CPU", cpus))

    def map(self, fn: Callable[..., None], jobs: Sequence[Job]) -> Outcomes:
        if not jobs:
            return
        ray = _ray()
        task = ray.remote(_run_isolated).options(num_cpus=self.cpus_per_task, max_retries=_TASK_RETRIES)
        window = max(1, int(self.cluster_cpus / self.cpus_per_task) * _IN_FLIGHT_PER_CPU)
        queue, running = collections.deque(jobs), dict[Any, Job]()
        try:
            while queue or running:
                while queue and len(running) < window:
                    job = queue.popleft()
                    running[task.remote(fn, job.args, self.limits)] = job
                ready, _ = ray.wait(list(running), num_returns=1, fetch_local=False)
                for ref in ready:
                    yield running.pop(ref), _task_outcome(ray, ref)
        finally:  # Ctrl-C or an error in the caller: end what still runs
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def client_pool(self) -> ClientPool:
        return RayClientPool(self.cluster_cpus)

    def close(self) -> None:
        """Shut down the Ray this executor started (a cluster it connected to keeps running)."""
        if self.started:
            _ray().shutdown()
            self.started = False


def _run_isolated(fn: Callable[..., None], args: tuple[Any, ...], limits: isolate.Limits) -> tuple[str, str] | None:
    """In a Ray task: `fn(*args)` in its own forked process under `limits`, as the local executor runs it."""
    render.preload()  # the forked process starts with PyMuPDF loaded
    for _args, failure in isolate.iter_isolated(fn, [args], workers=1, limits=limits):
        return failure
    return None


def _task_outcome(ray: Any, ref: Any) -> Failure | None:
    try:
        failure = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the task's worker or node was lost beyond its retries
        return Failure("worker_crashed", f"the Ray worker running it was lost ({one_line(exc)})")
    return None if failure is None else Failure(*failure)


class RayClientPool:
    """Generation's client workers as async Ray actors, one per job (a share of the documents)."""

    def __init__(self, cluster_cpus: float) -> None:
        self.cluster_cpus = cluster_cpus

    def map(
        self, fn: Callable[..., Awaitable[R]], jobs: Sequence[Job], advance: Callable[[int], None]
    ) -> Generator[tuple[Job, R], None, None]:
        """Each job's return value as its actor finishes; an actor's error (the endpoint is down, the key is wrong)
        is raised here as itself, and every actor ends."""
        ray = _ray()
        cpus = min(1.0, self.cluster_cpus / (2 * len(jobs)))  # at most half the cluster: a restart finds room
        actor_class = ray.remote(ClientActor).options(
            num_cpus=cpus,
            max_concurrency=4,
            max_restarts=_ACTOR_RESTARTS,
            max_task_retries=_ACTOR_RESTARTS,
            scheduling_strategy="SPREAD",  # clients on different nodes: their connections and CPU spread too
        )
        actors = {job.key: actor_class.remote() for job in jobs}
        running = {actors[job.key].run.remote(fn, *job.args): job for job in jobs}
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_S)
                advance(sum(ray.get([actors[job.key].progress.remote() for job in running.values()])))
                for ref in ready:
                    job = running.pop(ref)
                    yield job, _actor_result(ray, ref)
        finally:
            for actor in actors.values():
                ray.kill(actor)


def _actor_result(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the worker's own error, e.g. ExternalServiceError: re-raise it
        raise (exc.cause if isinstance(exc.cause, Exception) else exc) from None
    except ray.exceptions.RayError as exc:  # the actor died beyond its restarts
        raise StageError(
            f"generate: a Ray client actor was lost ({one_line(exc)}); finished documents and calls are kept, "
            "run the same command again to resume"
        ) from None


class ClientActor:
    """An async Ray actor running one share of generation on its event loop (`run`), counting finished documents
    (`worker_advance` -> `put`) for the driver's progress queries (`progress`)."""

    def __init__(self) -> None:
        self.finished = 0
        report_progress_to(self)

    def put(self, n: int) -> None:
        self.finished += n

    async def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        return await fn(*args)

    async def progress(self) -> int:
        """Documents finished since the last query."""
        count, self.finished = self.finished, 0
        return count
