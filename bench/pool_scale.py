"""Benchmark: peak memory and wall time of pool listing and hashing at 1,000 and 10,000 documents.

Makes N tiny one-page PDFs (each with its own text, so N distinct hashes) with PyMuPDF, stored twice: as a folder
(sub-folders of 1,000) and as tar shards of 1,000 members (webdataset style). Each measurement runs in a fresh
process and reports its peak RSS (ru_maxrss), the RSS it started from (imports done) and wall time:
- `list+hash`: pool.discover_with_rejects (shards indexed on the way), then each document's cache key and streamed
  SHA-256 (sources.sha256): what must stay flat in the pool size;
- `pool stage`: the real pool stage (stages/pool.run_pool) run in-process (InProcess executor), which also probes
  every document with MuPDF, stores one JSON result each and returns the kept documents (a list that grows with
  the pool by design).
The baseline is the same measurement at 1,000 documents in the same run; the ratio is 10,000 / 1,000.

    .venv/bin/python bench/pool_scale.py                      # 1,000 and 10,000: a few minutes on 1 core
    .venv/bin/python bench/pool_scale.py --sizes 200 2000     # quicker
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_FOLDER = 1000
MODES = ("list+hash", "pool stage")


def tiny_pdf(index: int) -> bytes:
    """A one-page US-Letter PDF whose text names `index`."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_text((72, 72), f"Synthetic pool document number {index}", fontsize=12)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def make_pool(root: Path, count: int) -> tuple[Path, Path]:
    """(folder, shard folder) holding the same `count` PDFs."""
    folder, shards = root / "folder", root / "shards"
    for start in range(0, count, PER_FOLDER):
        group = f"{start // PER_FOLDER:04d}"
        (folder / group).mkdir(parents=True)
        shards.mkdir(exist_ok=True)
        with tarfile.open(shards / f"pool-{group}.tar", "w") as tar:
            for index in range(start, min(start + PER_FOLDER, count)):
                data = tiny_pdf(index)
                (folder / group / f"{index:06d}.pdf").write_bytes(data)
                info = tarfile.TarInfo(f"{index:06d}.pdf")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return folder, shards


def child(mode: str, pool_path: str, run_dir: str) -> dict[str, float]:
    """One measurement in this (fresh) process."""
    from longdocvqa.documents import pool, render, sources

    render.preload()
    start_rss_mb = _peak_rss_mb()
    start = time.perf_counter()
    if mode == "list+hash":
        entries, _ = pool.discover_with_rejects([pool_path], index_dir=Path(run_dir) / "cache" / "shards")
        digests = sum(len(pool.cache_key(e)) + len(sources.sha256(e.path)) for e in entries)
        count = len(entries) if digests else 0
    else:
        count = len(_run_pool_stage(pool_path, run_dir))
    return {"documents": count, "seconds": time.perf_counter() - start, "rss_start_mb": start_rss_mb,
            "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def _run_pool_stage(pool_path: str, run_dir: str) -> list[object]:
    from longdocvqa.core.recipe import load_recipe
    from longdocvqa.core.store import RunDir
    from longdocvqa.runner.local import InProcess
    from longdocvqa.runner.loop import BuildContext, Progress
    from longdocvqa.stages.pool import run_pool

    recipe = load_recipe(ROOT / "recipes" / "demo.yaml")
    recipe.pool.paths, recipe.pool.min_pages, recipe.pool.licences = [pool_path], 1, None
    ctx = BuildContext(recipe, RunDir(run_dir), workers=1, progress=Progress(), executor=InProcess())
    return list(run_pool(ctx))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(mode: str, pool_path: Path, work: Path) -> dict[str, float]:
    run_dir = tempfile.mkdtemp(dir=work)
    cmd = [sys.executable, __file__, "--child", mode, str(pool_path), run_dir]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000], help="baseline and scaled pool sizes")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "POOL", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    with tempfile.TemporaryDirectory(prefix="pool-scale-") as tmp:
        work = Path(tmp)
        pools = {n: make_pool(work / f"pool-{n}", n) for n in args.sizes}
        rows = [(mode, kind, n, measure(mode, pools[n][i], work))
                for mode in MODES for i, kind in enumerate(("folder", "shards")) for n in args.sizes]  # fmt: skip
    report(rows, args.sizes)


def report(rows: list[tuple[str, str, int, dict[str, float]]], sizes: list[int]) -> None:
    header = f"{'what':12} {'pool':7} {'docs':>7} {'seconds':>8} {'docs/s':>7}"
    print(f"{header} {'peak RSS MB':>11} {'start MB':>8} grew MB")
    for mode, kind, n, r in rows:
        rate, peak, start = r["documents"] / r["seconds"], r["peak_rss_mb"], r["rss_start_mb"]
        row = f"{mode:12} {kind:7} {n:7} {r['seconds']:8.1f} {rate:7.0f}"
        print(f"{row} {peak:11.1f} {start:8.1f} {peak - start:7.1f}")
    small, large = sizes
    for mode in MODES:
        for kind in ("folder", "shards"):
            a, b = (next(r for m, k, n, r in rows if (m, k, n) == (mode, kind, size)) for size in (small, large))
            ratio = b["peak_rss_mb"] / a["peak_rss_mb"]
            per_doc_kb = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024 / (large - small)
            print(f"{mode} {kind}: peak RSS {large} / {small} = {ratio:.3f} ({per_doc_kb:.2f} KiB per extra document)")


if __name__ == "__main__":
    main()
