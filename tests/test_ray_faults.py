"""A Ray node dies mid-build (issue 16's fault test): on a 2-node Ray cluster on this machine
(`ray.cluster_utils.Cluster`), the worker node is killed while generation's client actors are calling a loopback
server, or while layout tasks run. The build completes (tasks run again and actors restart on the surviving node),
only calls in flight on the dead node are sent again (finished calls replay from the ledger), a rerun makes no
model call at all, and the demo's Parquet is still the local executor's, byte for byte. Also: RAY_ADDRESS joins a
running cluster, which the build leaves running."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)
from openai_server import ScriptedOpenAI

from longdocvqa.core.recipe import Recipe, load_recipe
from longdocvqa.pipeline import build
from longdocvqa.runner.executor import Job
from longdocvqa.runner.isolate import Limits

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'longdocvqa[ray]' (part of the test extra)")
from ray.cluster_utils import Cluster  # noqa: E402

from longdocvqa.runner.ray import RayExecutor, ray_executor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KILL_AT_REQUEST = 6
CONCURRENCY = 8  # the endpoint's; each of the 2 client actors gets half


def _recipe(server: ScriptedOpenAI, write_recipe, pdf_dir: Path) -> Recipe:
    names = ["R-data.pdf", "etoolbox.pdf", "mathtools.pdf", "latexbug.pdf"]
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 10.0,
                "max_retries": 2, "max_concurrency": CONCURRENCY}  # fmt: skip
    return load_recipe(write_recipe(
        [str(pdf_dir / n) for n in names], decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text", "processes": 2},
    ))  # fmt: skip


def suspend_jobs_on(node: object) -> int:
    """Suspend the per-document jobs in flight on a Ray node (the processes its Ray workers forked: isolate.py forks
    one per job), found in one scan of the process table (a walk per worker process took as long as a layout job);
    returns how many. A job that ends before it is reached is not counted."""
    import psutil

    raylet = node.all_processes["raylet"][0].process.pid  # type: ignore[attr-defined]
    parents = {p.info["pid"]: p.info["ppid"] for p in psutil.process_iter(["pid", "ppid"])}
    workers = {pid for pid, ppid in parents.items() if ppid == raylet}
    suspended = 0
    for pid in [pid for pid, ppid in parents.items() if ppid in workers]:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).suspend()
            suspended += 1
    return suspended


@pytest.fixture(scope="module", autouse=True)
def one_cluster_at_a_time(ray_turn: None) -> None:
    """Waits while another worker's module has a Ray cluster up (tests/conftest.py)."""


@pytest.fixture(name="cluster")
def two_node_cluster() -> Iterator[Cluster]:
    """A head node and one worker node, 1 CPU each, with the driver connected to the head."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_a_node_killed_mid_layout_still_gives_the_local_parquet(
    cluster: Cluster, demo_build: Path, tmp_path: Path
) -> None:
    out, worker = tmp_path / "out", next(iter(cluster.worker_nodes))
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml")

    at_kill: dict[str, int] = {}

    def kill_at_first_layout() -> None:  # once a layout job is in flight on the worker: that job is lost with it
        # plan.json is written just before layout starts, and pool and decontamination's jobs have all ended by
        # then, so a job on the worker is a layout job. It is suspended before anything is counted, so it cannot
        # finish between this check and the node's death.
        while not (out / "plan.json").is_file() or not (suspended := suspend_jobs_on(worker)):
            time.sleep(0.01)
        at_kill["in_flight"] = suspended
        at_kill["done"] = len(list((out / "stages" / "layout").glob("*/*/*.json")))
        cluster.remove_node(worker)

    killer = threading.Thread(target=kill_at_first_layout, daemon=True)
    killer.start()
    with ray_executor(recipe, workers=2) as executor:
        manifest = build(recipe, out, workers=2, executor=executor)
    killer.join(timeout=60)
    assert not killer.is_alive() and sum(n["Alive"] for n in ray.nodes()) == 1
    assert manifest["stages"]["layout"]["kept"] == manifest["documents"] > 0  # no document lost with the node
    # a job was running on the worker when it died, and documents were left: the lost job ran again on the head
    assert at_kill["in_flight"] >= 1 and at_kill["done"] < manifest["documents"], at_kill

    def parquet(run: Path) -> dict[str, bytes]:
        return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "dataset").rglob("*.parquet"))}

    assert parquet(out) == parquet(demo_build) and parquet(out)


@pytest.mark.slow
def test_a_node_killed_mid_generation_costs_only_the_calls_in_flight(
    cluster: Cluster, server: ScriptedOpenAI, write_recipe, pdf_dir: Path, tmp_path: Path
) -> None:
    worker = next(iter(cluster.worker_nodes))
    killed = threading.Event()

    def kill_the_worker_node(index: int, _body: dict) -> str:
        if index == KILL_AT_REQUEST and not killed.is_set():
            killed.set()
            threading.Thread(target=cluster.remove_node, args=(worker,), daemon=True).start()
        return "ok"

    server.latency_s, server.policy = 0.2, kill_the_worker_node  # calls are still in flight when the node dies
    recipe, out = _recipe(server, write_recipe, pdf_dir), tmp_path / "out"
    with ray_executor(recipe, workers=2) as executor:
        first = build(recipe, out, workers=2, executor=executor)
        assert killed.is_set() and len(ray.nodes()) == 2 and sum(n["Alive"] for n in ray.nodes()) == 1
        # Each request that gave no new answer was in flight on the dead node: lost with it, or answered but not
        # yet in the ledger and so sent again. At most the dead actor's share of the concurrency.
        assert server.requests > KILL_AT_REQUEST
        assert server.requests - len(server.answered_ok) <= CONCURRENCY // 2  # measured here: 4 of 16
        assert first["examples"] > 0 and first["stages"]["generate"].get("incomplete_documents", 0) == 0
        calls = server.requests
        rerun = build(recipe, out, workers=2, executor=executor)
    assert server.requests == calls  # resumed: no model call is made again
    assert rerun["examples"] == first["examples"]


@pytest.mark.slow
def test_the_executor_joins_the_cluster_named_by_ray_address_and_leaves_it_running(monkeypatch) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "include_dashboard": False})
    try:
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        executor = RayExecutor(Limits(seconds=30), address=None, cpus=1, cpus_per_task=1)
        assert executor.started and ray.cluster_resources()["CPU"] == 3  # the cluster's CPUs, not a new local Ray
        assert list(executor.map(time.sleep, [Job("a", "a.pdf", (0,))])) == [(Job("a", "a.pdf", (0,)), None)]
        executor.close()
        assert not ray.is_initialized() and cluster.head_node.any_processes_alive()  # disconnected, still up
    finally:
        cluster.shutdown()
