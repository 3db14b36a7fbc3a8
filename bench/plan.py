"""Benchmark: plan a 5B-token build over a synthetic pool of 1,500,000 documents (page counts and sizes only).

    .venv/bin/python bench/plan.py [--docs 1500000] [--budget 5000000000]

The pool follows the paper's statistics (docs/research/paper.md §1.1, §1.4, §9.3): 20-200 pages, mean 23.8 (20 plus
an exponential of mean 4.3 rounded down, capped at 200: about 5% of documents have the 32-50 pages kept);
one page size per document: 45% US Letter, 45% A4 (about 2.5K image tokens per page at 144 DPI), 5% 6x9-inch
books and 5% 4:3 Beamer slides (about 1K tokens per page, as the paper's 32.8K-token minimum implies).
The recipe is recipes/mmprolong-128k.yaml (3 tasks, 40/40/20 by tokens, window 32K-128K, pool-native,
a VLM generator), budget 5B. Timed: the pool's page-range filter, the planner (exact image tokens per document,
one seeded draw each, stream order), the initial plan, its forecast and the reject lines for unused documents.
Peak memory is the process's maximum resident set (the synthetic pool included). It prints the model calls the
plan needs against the calls of the generate-everything path (every task for every document in page range).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longdocvqa.assembly.planning import DocSize, Planner  # noqa: E402
from longdocvqa.core.recipe import load_recipe  # noqa: E402

SIZES = (((612.0, 792.0), 0.45), ((595.28, 841.89), 0.45), ((432.0, 648.0), 0.05), ((362.83, 272.13), 0.05))


def synthetic_pool(count: int, seed: int = 0) -> list[DocSize]:
    """`count` documents: a sha256-like id, a path and one (width, height, pages) run."""
    rng = random.Random(seed)
    shapes = [size for size, _ in SIZES]
    weights = [weight for _, weight in SIZES]
    docs = []
    for index in range(count):
        pages = min(200, 20 + int(rng.expovariate(1 / 4.3)))
        width, height = rng.choices(shapes, weights)[0]
        sha = hashlib.sha256(f"bench-{seed}-{index}".encode()).hexdigest()
        docs.append(DocSize(sha, f"/pool/{index:07d}.pdf", ((width, height, pages),)))
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_500_000)
    parser.add_argument("--budget", type=int, default=5_000_000_000)
    args = parser.parse_args()
    recipe = load_recipe(ROOT / "recipes" / "mmprolong-128k.yaml")
    recipe.assemble.budget_tokens = args.budget
    made = time.perf_counter()
    pool = synthetic_pool(args.docs)
    print(f"synthetic pool: {len(pool):,} documents, {sum(d.num_pages for d in pool):,} pages "
          f"(made in {time.perf_counter() - made:.1f} s, not timed)")  # fmt: skip
    start = time.perf_counter()
    cfg = recipe.pool
    in_range = [d for d in pool if cfg.min_pages <= d.num_pages <= cfg.max_pages]
    planner = Planner(in_range, recipe)
    plan = planner.initial()
    forecast = planner.forecast(plan)
    rejects = planner.rejects(plan)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _report(pool, in_range, plan, forecast, rejects, planner, seconds, peak_mb)


def _report(pool, in_range, plan, forecast, rejects, planner, seconds, peak_mb) -> None:  # type: ignore[no-untyped-def]
    calls = sum(row["calls"] for row in forecast.values())
    everything = planner.generate_everything_calls()
    tokens = sum(row["example_tokens"] for row in forecast.values())
    print(f"in page range {len(in_range):,}; plan uses {len(plan.documents()):,} documents, {len(plan.units):,} "
          f"units, about {tokens / 1e9:.2f}B example tokens (budget x 1.1 overdraw)")  # fmt: skip
    for task, row in forecast.items():
        prompt, images = row["prompt_tokens"] / 1e9, row["image_tokens"] / 1e9
        print(f"  {task:<15} calls {row['calls']:>7,}  documents {row['documents']:>7,}  "
              f"prompt tokens {prompt:.2f}B (images {images:.2f}B)")  # fmt: skip
    print(f"model calls: plan {calls:,} vs generate-everything {everything:,} ({everything / max(1, calls):.1f}x)")
    reasons: dict[str, int] = {}
    for reject in rejects:
        reasons[reject.reason] = reasons.get(reject.reason, 0) + 1
    print(f"reject lines for unused in-range documents: {reasons}")
    print(f"plan time {seconds:.1f} s (limit 30 s); peak RSS {peak_mb:,.0f} MB (limit 2,048 MB)")


if __name__ == "__main__":
    main()
