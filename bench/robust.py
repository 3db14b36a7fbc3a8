"""The hostile-corpus build: wall time, peak RSS and rejects by reason, against the bundled demo PDFs as baseline.

Runs `longdocvqa build` (the CLI, 2 workers) on (a) the ten bundled demo PDFs and (b) the hostile corpus of
tests/test_robust.py: 100+ odd real PDFs (scripts/fetch_hostile_corpus.py) plus the synthetic hostile files made
there (decompression bomb, 10,000 text objects, lone surrogates, huge pages, symlink loop, odd names). Both use the
scripted loopback OpenAI-compatible server with page images, so pages are rendered. Printed per run: input files,
wall seconds, peak RSS of the largest process (main or a document's worker), exit code, rejects by stage/reason.

Usage: .venv/bin/python bench/robust.py [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_robust import HOSTILE, make_hostile_files, run_measured  # noqa: E402


def start_server() -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].strip()


def write_recipe(path: Path, pool: Path, url: str) -> None:
    data = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    endpoint = {"base_url": url, "model": "scripted", "api_key_env": None, "timeout_s": 30.0, "max_retries": 1,
                "max_concurrency": 8}  # fmt: skip
    data["pool"].update({"paths": [str(pool)], "min_pages": 1, "max_pages": 5000, "max_reject_rate": 1.0,
                         "licences": None})  # fmt: skip
    data["segment"] = {"min_pages": 1, "max_pages": 3, "per_document": 1}
    data["layout"] = {"backend": "heuristic", "find_tables": False}
    data["decontaminate"] = {"within_pool": False}
    data["generate"] = {"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "images+text",
                        "tasks": ["extract-single"], "max_pixels": 200_000}  # fmt: skip
    data["assemble"].update({"min_tokens": 1, "budget_tokens": None, "mixture": {"extract-single": 1.0}})
    data["isolation"] = {"seconds_per_document": 300, "memory_mb_per_document": 2048}
    path.write_text(yaml.safe_dump(data))


def run(name: str, pool: Path, url: str, tmp: Path, workers: int) -> None:
    slug = name.split()[0]
    recipe = tmp / f"{slug}.yaml"
    write_recipe(recipe, pool, url)
    out = tmp / f"{slug}-out"
    files = sum(1 for p in pool.rglob("*.pdf") if p.is_file() and "loop" not in p.relative_to(pool).parts)
    cmd = [sys.executable, "-m", "longdocvqa", "build", str(recipe), "--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    proc, peak_mb = run_measured(cmd, timeout_s=7200)
    seconds = time.perf_counter() - start
    lines = (out / "rejects.jsonl").read_text().splitlines() if (out / "rejects.jsonl").is_file() else []
    reasons = Counter(f"{r['stage']}/{r['reason']}" for r in map(json.loads, filter(None, lines)))
    print(f"\n{name}: {files} input files, {seconds:.1f} s wall, peak RSS {peak_mb:.0f} MB, exit {proc.returncode}")
    for reason, count in sorted(reasons.items()):
        print(f"  {count:4d}  {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not (HOSTILE / ".complete").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_hostile_corpus.py")], check=True)
    server, url = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-robust-") as name:
            tmp = Path(name)
            run("baseline (10 demo PDFs)", ROOT / "tests" / "data" / "pdfs", url, tmp, args.workers)
            pool = tmp / "pool"
            shutil.copytree(HOSTILE, pool / "corpus", ignore=shutil.ignore_patterns("*.tsv", ".complete"))
            make_hostile_files(pool / "made", ROOT / "tests" / "data" / "pdfs")
            run("hostile corpus", pool, url, tmp, args.workers)
    finally:
        server.kill()


if __name__ == "__main__":
    main()
