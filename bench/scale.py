"""Per-document throughput of the layout stage on the local executor and on Ray, at equal CPUs, on the same PDFs.

Usage: python bench/scale.py [--pool DIR] [--max-pages N] [--workers 1,2] [--repeat R] [--calls C]
- Input: the PDFs under --pool (default ../shared/pdfs when present, else tests/data/pdfs), in sha256 order,
  up to --max-pages pages in all (0: every PDF).
- Each configuration runs the layout stage's own job function (stages/layout.py `layout_worker`, each document
  in its own process under the per-document limits) over every document into a fresh run directory, through
  `IsolatedProcesses(workers)` (local) and `RayExecutor` on a local Ray started with `workers` CPUs (Ray's start-up
  is timed apart; it is paid once per build). Wall-clock pages/s; best of --repeat runs, local and Ray alternating,
  so a busy machine slows both alike. Ray's overhead = Ray seconds / local seconds - 1 at equal CPUs (target 25%).
- --calls C (0: skip): model calls/s of one generation client at concurrency C against the scripted loopback
  server (tests/openai_server.py, 200 ms per request, in its own process): `llm.LLMClient.ask` in this process vs
  the same coroutine in one Ray client actor (executors/ray.py `RayClientPool`, as generation runs under Ray).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymupdf

from longdocvqa.core.fingerprint import file_sha256
from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.core.recipe_generate import EndpointConfig
from longdocvqa.core.records import QA
from longdocvqa.core.store import StageOutput
from longdocvqa.llm import LLMClient
from longdocvqa.runner.executor import Executor, Job
from longdocvqa.runner.isolate import Limits
from longdocvqa.runner.local import IsolatedProcesses
from longdocvqa.runner.ray import RayClientPool, RayExecutor
from longdocvqa.stages.layout import LayoutJob, layout_worker

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "pdfs"
LIMITS = Limits(seconds=300, memory_mb=4096)  # the recipe defaults' order of magnitude; no document reaches them


def pick_pdfs(pool: Path, max_pages: int) -> list[tuple[str, str, int]]:
    """(path, sha256, pages) in sha256 order until `max_pages` pages (0: all)."""
    found = sorted((file_sha256(p), str(p)) for p in pool.rglob("*.pdf"))
    picked, pages = [], 0
    for sha, path in found:
        count = pymupdf.open(path).page_count
        if max_pages and pages + count > max_pages:
            continue
        picked.append((path, sha, count))
        pages += count
    return picked


def run_layout(executor: Executor, pdfs: list[tuple[str, str, int]]) -> float:
    """Seconds to lay out every document through `executor` into a fresh run directory; every job must succeed."""
    root = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    cfg, fingerprint = LayoutConfig(), "bench"
    out = StageOutput(root, "layout", fingerprint)
    jobs = [Job(sha, path, (LayoutJob(path, sha, cfg, out),)) for path, sha, _ in pdfs]
    start = time.perf_counter()
    failures = [(job.item, f) for job, f in executor.map(layout_worker, jobs) if f is not None]
    seconds = time.perf_counter() - start
    assert not failures and all("ok" in out.read(sha) for _, sha, _ in pdfs), failures
    shutil.rmtree(root)
    return seconds


def best_of(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


def measure(pdfs: list[tuple[str, str, int]], workers: int, repeat: int) -> tuple[float, float, float]:
    """(local seconds, Ray seconds, Ray start-up seconds) with `workers` CPUs, best of `repeat` runs each."""
    import ray

    start = time.perf_counter()
    on_ray = RayExecutor(LIMITS, address=None, cpus=workers, cpus_per_task=1)
    startup = time.perf_counter() - start
    local = IsolatedProcesses(workers, LIMITS)
    run_layout(on_ray, pdfs[:workers])  # warm the Ray workers' imports, as a build's pool stage would
    local_s, ray_s = float("inf"), float("inf")
    for _ in range(repeat):
        local_s = min(local_s, run_layout(local, pdfs))
        ray_s = min(ray_s, run_layout(on_ray, pdfs))
    on_ray.close()
    assert not ray.is_initialized()
    return local_s, ray_s, startup


async def client_calls_per_s(url: str, concurrency: int, count: int, ledger: str) -> float:
    """Calls/s of `count` fresh LLMClient.ask calls at `concurrency` (connections opened first)."""
    ep = EndpointConfig(base_url=url, model="scripted", api_key_env=None, max_concurrency=concurrency, max_retries=0)
    client = LLMClient(ep, Path(ledger))
    offset = time.time_ns()  # fresh prompts: nothing is replayed from the ledger

    def ask(i: int) -> Any:
        text = f"Request {i}.\n[Current Case]\nPage 4:\nThe quick brown fox jumps over the lazy dog\n"
        return client.ask([{"role": "user", "content": text}], QA, template_id="bench@v1", task="bench")

    await asyncio.gather(*(ask(-offset - i) for i in range(concurrency)))
    start = time.perf_counter()
    answers = await asyncio.gather(*(ask(offset + i) for i in range(count)))
    seconds = time.perf_counter() - start
    await client.aclose()
    assert all(a.ok for a in answers), {a.reason for a in answers}
    return count / seconds


def measure_calls(
    concurrency: int, repeat: int, rounds: int = 30, latency_s: float = 0.2
) -> tuple[float, float, float]:
    """(in-process calls/s, one Ray client actor's calls/s, ceiling concurrency/latency)."""
    command = [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--port", "0", "--latency-s", str(latency_s)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    url = (server.stdout.readline() if server.stdout else "").split("listening on ", 1)[-1].strip()
    count = concurrency * rounds
    try:
        with tempfile.TemporaryDirectory() as tmp:
            on_ray, local, actor = RayExecutor(LIMITS, address=None, cpus=1, cpus_per_task=1), 0.0, 0.0
            for run in range(repeat):  # alternating, best of `repeat` each: a busy machine slows both alike
                local = max(local, asyncio.run(client_calls_per_s(url, concurrency, count, f"{tmp}/{run}.sqlite")))
                job = Job("actor-0", "calls", (url, concurrency, count, f"{tmp}/ray-{run}.sqlite"))
                [(_, rate)] = list(RayClientPool(on_ray.cluster_cpus).map(client_calls_per_s, [job], lambda n: None))
                actor = max(actor, rate)
            on_ray.close()
    finally:
        server.terminate()
        server.wait()
    return local, actor, concurrency / latency_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=SHARED if SHARED.is_dir() else ROOT / "tests/data/pdfs")
    parser.add_argument("--max-pages", type=int, default=0)
    parser.add_argument("--workers", default="1,2", help='CPU counts to compare, e.g. 1,2; "": skip the layout')
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--calls", type=int, default=16, help="client concurrency for the calls/s figure; 0: skip")
    args = parser.parse_args()
    if args.calls:
        local, actor, ceiling = measure_calls(args.calls, args.repeat)
        print(
            f"generation client at concurrency {args.calls} (ceiling {ceiling:.0f} calls/s), best of {args.repeat}: "
            f"in-process {local:.1f} calls/s, one Ray client actor {actor:.1f} ({actor / local - 1:+.1%})"
        )
    if not args.workers:
        return
    pdfs = pick_pdfs(args.pool, args.max_pages)
    pages = sum(count for _, _, count in pdfs)
    print(f"layout stage, {len(pdfs)} PDFs, {pages} pages from {args.pool}; best of {args.repeat}")
    print(f"{'CPUs':>4} {'local pages/s':>14} {'Ray pages/s':>12} {'Ray overhead':>13} {'Ray start-up s':>15}")
    for workers in (int(w) for w in args.workers.split(",")):
        local_s, ray_s, startup = measure(pdfs, workers, args.repeat)
        print(f"{workers:>4} {pages / local_s:>14.1f} {pages / ray_s:>12.1f} {ray_s / local_s - 1:>12.1%} "
              f"{startup:>15.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
