"""`build --executor ray` on a local Ray with 2 CPUs: the same stage functions as the local executor give
byte-identical Parquet (the demo build; a loopback-server build whose generation runs in Ray actors; the same
build from two tar shards on Ray and from a folder locally), a rerun makes no model call, and a per-document job
that overruns, runs out of memory or dies is the same reject as locally."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)
from openai_server import ScriptedOpenAI
from test_pool_shards import _shard

from longdocvqa.core.recipe import Recipe, load_recipe
from longdocvqa.llm.ledger import SHARD_DIR
from longdocvqa.pipeline import build
from longdocvqa.runner.executor import Failure, Job
from longdocvqa.runner.isolate import Limits

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'longdocvqa[ray]' (part of the test extra)")
from longdocvqa.runner.ray import RayExecutor, ray_executor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def local_ray(ray_turn: None) -> Iterator[None]:
    """One local Ray (2 CPUs, no dashboard) for the module; executors join it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _parquet(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "dataset").rglob("*.parquet"))}


def _ray_build(recipe: Recipe, out: Path) -> dict:
    with ray_executor(recipe, workers=2) as executor:
        assert ray.is_initialized() and not executor.started  # joined the module's Ray
        return build(recipe, out, workers=2, executor=executor)


@pytest.mark.slow
def test_demo_build_under_executor_ray_is_byte_identical_to_local(demo_build: Path, tmp_path: Path) -> None:
    """The command line, as CI runs it: its own local Ray with --workers 2 CPUs, shut down when the build ends."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "longdocvqa", "build", str(ROOT / "recipes" / "demo.yaml"), "--out",
               str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    local = _parquet(demo_build)
    assert set(local) == {f"dataset/data/{c}/train-00000-of-00001.parquet" for c in ("documents", "qa", "sft")}
    assert _parquet(tmp_path / "ray") == local
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["stages"]["layout"]["kept"] == manifest["documents"] > 0


_LOOPBACK_PDFS = ["R-data.pdf", "etoolbox.pdf", "mathtools.pdf", "latexbug.pdf"]


def _loopback_recipe(
    server: ScriptedOpenAI, write_recipe, pdf_dir: Path, processes: int, paths: list[str] | None = None
) -> Recipe:
    """The four-PDF loopback-server recipe (text input); `paths` replaces its pool (a folder, tar shards)."""
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 5.0,
                "max_retries": 1, "max_concurrency": 8}  # fmt: skip
    return load_recipe(write_recipe(
        paths or [str(pdf_dir / n) for n in _LOOPBACK_PDFS], decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text",
                  "processes": processes},
    ))  # fmt: skip


@pytest.mark.slow
def test_loopback_build_on_ray_actors_equals_local_and_a_rerun_calls_nothing(
    server: ScriptedOpenAI, write_recipe, pdf_dir: Path, tmp_path: Path
) -> None:
    local = build(_loopback_recipe(server, write_recipe, pdf_dir, 1), tmp_path / "local", workers=2)
    local_calls = server.requests
    assert local_calls > 0 and local["examples"] > 0
    on_ray = _ray_build(_loopback_recipe(server, write_recipe, pdf_dir, 2), tmp_path / "ray")  # two client actors
    assert server.requests == 2 * local_calls  # a separate run directory, its own ledger: the same calls again
    assert on_ray["stages"]["generate"]["usage"]["generator"]["sent"] == local_calls
    assert not (tmp_path / "ray" / SHARD_DIR).exists()  # each actor's ledger shard merged into llm_calls.sqlite

    def generated(run: Path) -> dict[str, str]:
        return {p.name: p.read_text() for p in (run / "stages" / "generate").glob("*/*/*.json")}

    assert generated(tmp_path / "ray") == generated(tmp_path / "local") and generated(tmp_path / "local")
    assert _parquet(tmp_path / "ray") == _parquet(tmp_path / "local")
    rerun = _ray_build(_loopback_recipe(server, write_recipe, pdf_dir, 2), tmp_path / "ray")
    assert server.requests == 2 * local_calls  # resumed: no model call is made again
    assert rerun["stages"]["generate"]["reused"] == rerun["stages"]["generate"]["seen"] > 0
    assert _parquet(tmp_path / "ray") == _parquet(tmp_path / "local")


@pytest.mark.slow
def test_a_two_shard_pool_on_ray_gives_the_local_folder_builds_sft_parquet(
    server: ScriptedOpenAI, write_recipe, pdf_dir: Path, tmp_path: Path
) -> None:
    """Issue 16's acceptance: the pool as two tar shards (webdataset keys, one under a sub-folder), generation in two
    Ray client actors, gives the same sft Parquet, byte for byte, as the local build of the same PDFs as a folder."""
    folder, tars = tmp_path / "pool", tmp_path / "tars"
    folder.mkdir(), tars.mkdir()
    for name in _LOOPBACK_PDFS:
        shutil.copyfile(pdf_dir / name, folder / name)
    shards = [
        _shard(tars / "pool-000.tar", {n: pdf_dir / n for n in _LOOPBACK_PDFS[::2]}),
        _shard(tars / "pool-001.tar", {f"docs/{n}": pdf_dir / n for n in _LOOPBACK_PDFS[1::2]}),
    ]
    local = build(_loopback_recipe(server, write_recipe, pdf_dir, 1, [str(folder)]), tmp_path / "local", workers=2)
    local_calls = server.requests
    assert local_calls > 0 and local["examples"] > 0 and local["documents"] == len(_LOOPBACK_PDFS)
    recipe = _loopback_recipe(server, write_recipe, pdf_dir, 2, [str(s) for s in shards])
    on_ray = _ray_build(recipe, tmp_path / "ray")
    assert on_ray["documents"] == local["documents"] and server.requests == 2 * local_calls
    sft = "dataset/data/sft/train-00000-of-00001.parquet"
    assert _parquet(tmp_path / "ray")[sft] == _parquet(tmp_path / "local")[sft]


@pytest.mark.slow  # the module's autouse fixture starts a Ray cluster
def test_a_ray_task_that_overruns_runs_out_of_memory_or_dies_is_a_failure() -> None:
    executor = RayExecutor(Limits(seconds=3, memory_mb=200), address=None, cpus=2, cpus_per_task=1)
    cases = {
        "slow": (time.sleep, 60),
        "huge": (bytearray, 8 * 1024**3),
        "dies": (os._exit, 7),
        "fine": (time.sleep, 0),
    }
    outcomes = {}
    for key, (fn, arg) in cases.items():  # each document's job forked inside its Ray task, under the limits
        outcomes.update((job.key, failure) for job, failure in executor.map(fn, [Job(key, f"{key}.pdf", (arg,))]))
    executor.close()
    assert ray.is_initialized()  # the module's Ray: not this executor's to shut down
    assert outcomes == {
        "slow": Failure("timeout", "over the 3 s limit per document"),
        "huge": Failure("too_big", "over the 200 MB memory limit per document"),
        "dies": Failure("worker_crashed", "the worker process died (exit code 7)"),
        "fine": None,
    }
