"""Benchmark: packing efficiency of the training sampler's best-fit decreasing vs naive sequential packing.

    .venv/bin/python bench/pack.py [--examples 20000] [--max-length 131072] [--dataset DIR_OR_REPO]

Efficiency = real tokens / slot tokens (rows x max_length). Distributions:
- pool-native (synthetic): the paper's final-recipe lengths, 32.8K-126.8K tokens, mean 85.3K, 23.6% >= 100K
  (docs/research/paper.md §4.3), drawn as a normal(86.2K, 20.8K) truncated to that range (fitted by simulation: the
  truncated mean is 85.3K and 23.6% lie at or above 100K);
- pool-native + 40% short: the recipe's optional short-context share (paper §6.3), short examples of 0.5K-8K;
- demo-like (synthetic): recipes/demo.yaml's shape, 10 documents of 32-50 US-Letter pages at 144 dpi (2,508 image
  tokens per page) with 3 QAs each, so lengths come in near-identical triples;
- dataset (optional): the `num_tokens` column of a built `sft` dataset (a local folder or Hub repo).
The baseline (sequential greedy: fill a row in dataset order, open a new one when the next example does not fit)
runs in the same process. `bound` is the best efficiency any packing without splitting can reach:
sum / (max(ceil(sum / max_length), #examples > max_length / 2) x max_length).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.sampler import best_fit_decreasing, packing_efficiency, sequential_greedy  # noqa: E402

POOL_NATIVE = {"low": 32_800, "high": 126_800, "mean": 86_200, "sd": 20_800}
LETTER_TOKENS_PER_PAGE = 2_508  # 1232 x 1596 px after smart_resize at 144 dpi, / (28 x 28)


def pool_native_lengths(count: int, rng: random.Random) -> list[int]:
    """Truncated-normal lengths matching the paper's pool-native statistics."""
    lengths: list[int] = []
    while len(lengths) < count:
        value = rng.gauss(POOL_NATIVE["mean"], POOL_NATIVE["sd"])
        if POOL_NATIVE["low"] <= value <= POOL_NATIVE["high"]:
            lengths.append(int(value))
    return lengths


def short_mix_lengths(count: int, share: float, rng: random.Random) -> list[int]:
    """Pool-native long examples mixed with a `share` of short ones (0.5K-8K tokens), shuffled."""
    short = int(count * share)
    lengths = pool_native_lengths(count - short, rng) + [rng.randint(512, 8192) for _ in range(short)]
    rng.shuffle(lengths)
    return lengths


def demo_like_lengths(documents: int, rng: random.Random) -> list[int]:
    """Three QAs per document; a document's QAs differ only by the question and answer text."""
    lengths = []
    for _ in range(documents):
        pages = rng.randint(32, 50)
        base = pages * (LETTER_TOKENS_PER_PAGE + 8) + 60  # + "Page N:" and vision start/end per page, template
        lengths += [base + rng.randint(30, 150) for _ in range(3)]
    return [n for n in lengths if n <= 131_072]


def dataset_lengths(path: str, config: str) -> list[int]:
    """`num_tokens` of a built dataset."""
    from datasets import load_dataset

    return list(load_dataset(path, config, split="train")["num_tokens"])


def bound(lengths: Sequence[int], capacity: int) -> float:
    """Upper bound on the efficiency of any packing without splitting examples."""
    fitting = [n for n in lengths if n <= capacity]
    rows = max(math.ceil(sum(fitting) / capacity), sum(1 for n in fitting if n > capacity // 2))
    return sum(fitting) / (rows * capacity) if rows else 0.0


def measure(name: str, packer: Callable, lengths: Sequence[int], capacity: int) -> tuple[float, int, float]:
    """(efficiency, rows, seconds) of one packer."""
    start = time.perf_counter()
    bins = packer(lengths, capacity)
    return packing_efficiency(bins, lengths, capacity), len(bins), time.perf_counter() - start


def report(label: str, lengths: list[int], capacity: int) -> None:
    """Print one distribution's statistics and both packers' efficiency."""
    mean = sum(lengths) / len(lengths)
    share_100k = sum(1 for n in lengths if n >= 100_000) / len(lengths)
    print(f"\n{label}: {len(lengths)} examples, mean {mean / 1000:.1f}K, >=100K {share_100k:.1%}, ", end="")
    print(f"range [{min(lengths) / 1000:.1f}K, {max(lengths) / 1000:.1f}K]; bound {bound(lengths, capacity):.4f}")
    bfd = measure("bfd", best_fit_decreasing, lengths, capacity)
    greedy = measure("greedy", sequential_greedy, lengths, capacity)
    for name, (efficiency, rows, seconds) in (("best-fit decreasing", bfd), ("sequential greedy", greedy)):
        print(f"  {name:20s} efficiency {efficiency:.4f}  rows {rows:6d}  {seconds * 1000:8.1f} ms")
    print(f"  ratio bfd / greedy: {bfd[0] / greedy[0]:.3f}x efficiency, {greedy[1] / bfd[1]:.3f}x fewer rows")


def main(argv: list[str] | None = None) -> None:
    """Run every distribution."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=20_000, help="pool-native sample size")
    parser.add_argument("--max-length", type=int, default=131_072, help="row capacity in tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default=None, help="built dataset folder or repo id (reads num_tokens)")
    parser.add_argument("--config", default="sft", help="dataset config holding num_tokens")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    report("pool-native (synthetic)", pool_native_lengths(args.examples, rng), args.max_length)
    report("pool-native + 40% short (synthetic)", short_mix_lengths(args.examples, 0.4, rng), args.max_length)
    report("pool-native, rows of 2 x max_length", pool_native_lengths(args.examples, rng), 2 * args.max_length)
    report("demo-like (synthetic, 10 docs x 3 QAs)", demo_like_lengths(10, rng), args.max_length)
    report("demo-like x100 (1,000 docs x 3 QAs)", demo_like_lengths(1000, rng), args.max_length)
    if args.dataset:
        report(f"dataset {args.dataset}", dataset_lengths(args.dataset, args.config), args.max_length)


if __name__ == "__main__":
    main()
