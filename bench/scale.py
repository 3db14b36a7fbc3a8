"""Per-document throughput of the layout stage on the local executor and on Ray, at equal CPUs, on the same PDFs.

Usage: python bench/scale.py [--pool DIR] [--max-pages N] [--workers 1,2] [--repeat R]
- Input: the PDFs under --pool (default ../shared/pdfs when present, else tests/data/pdfs), in sha256 order,
  up to --max-pages pages in all (0: every PDF).
- Each configuration runs the layout stage's own job function (stages/layout.py `_layout_worker`, each document
  in its own process under the per-document limits) over every document into a fresh run directory, through
  `IsolatedProcesses(workers)` (local) and `RayExecutor` on a local Ray started with `workers` CPUs (Ray's start-up
  is timed apart; it is paid once per build). Wall-clock pages/s; best of --repeat runs, local and Ray alternating,
  so a busy machine slows both alike. Ray's overhead = Ray seconds / local seconds - 1 at equal CPUs (target 25%).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pymupdf

from longdocvqa.executors import Executor, Job
from longdocvqa.executors.local import IsolatedProcesses
from longdocvqa.executors.ray import RayExecutor
from longdocvqa.fingerprint import file_sha256
from longdocvqa.isolate import Limits
from longdocvqa.recipe import LayoutConfig
from longdocvqa.stages.layout import _layout_worker
from longdocvqa.store import StageOutput

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
    cfg, fingerprint = LayoutConfig().model_dump(), "bench"
    jobs = [Job(sha, path, (path, sha, cfg, str(root), fingerprint)) for path, sha, _ in pdfs]
    start = time.perf_counter()
    failures = [(job.item, f) for job, f in executor.map(_layout_worker, jobs) if f is not None]
    seconds = time.perf_counter() - start
    out = StageOutput(root, "layout", fingerprint)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=SHARED if SHARED.is_dir() else ROOT / "tests/data/pdfs")
    parser.add_argument("--max-pages", type=int, default=0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
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
