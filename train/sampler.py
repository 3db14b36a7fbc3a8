"""Bin-pack examples into rows of at most `max_length` tokens, by their precomputed `num_tokens`.

Owns: best-fit decreasing (BFD) packing, the naive sequential baseline it is benchmarked against (bench/pack.py),
and `PackedBatchSampler`, a batch sampler that yields one bin (a list of dataset indices) per packed row.
Examples longer than `max_length` cannot be packed (image tokens cannot be truncated): they are dropped and counted.
Does not own: tokenization (the collator) or distribution across ranks (accelerate shards the bins round-robin).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack indices of `lengths` into bins of `capacity`: longest first, each into the fullest bin it fits."""
    order = sorted((i for i in range(len(lengths)) if lengths[i] <= capacity), key=lambda i: (-lengths[i], i))
    if not order:
        return []
    smallest = lengths[order[-1]]
    bins: list[list[int]] = []
    open_bins: list[tuple[int, int]] = []  # (free tokens, bin id), sorted; bins with free < smallest are closed
    for index in order:
        size = lengths[index]
        slot = bisect.bisect_left(open_bins, (size, -1))
        if slot == len(open_bins):
            bins.append([index])
            free, bin_id = capacity - size, len(bins) - 1
        else:
            free, bin_id = open_bins.pop(slot)
            bins[bin_id].append(index)
            free -= size
        if free >= smallest:
            bisect.insort(open_bins, (free, bin_id))
    return bins


def sequential_greedy(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Baseline: fill one row in dataset order, start a new row when the next example does not fit."""
    bins: list[list[int]] = []
    used = capacity + 1
    for index, size in enumerate(lengths):
        if size > capacity:
            continue
        if used + size > capacity:
            bins.append([])
            used = 0
        bins[-1].append(index)
        used += size
    return bins


def packing_efficiency(bins: Sequence[Sequence[int]], lengths: Sequence[int], capacity: int) -> float:
    """Real tokens / slot tokens (rows x capacity)."""
    if not bins:
        return 0.0
    return sum(lengths[i] for b in bins for i in b) / (len(bins) * capacity)


class PackedBatchSampler(Sampler[list[int]]):
    """Yield BFD bins of dataset indices, one packed row each, in a new random order every epoch."""

    def __init__(self, lengths: Sequence[int], max_length: int, shuffle: bool = True, seed: int = 0) -> None:
        self.lengths = [int(n) for n in lengths]
        self.max_length = max_length
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.bins = best_fit_decreasing(self.lengths, max_length)
        self.num_dropped = sum(1 for n in self.lengths if n > max_length)
        if self.num_dropped:
            logger.warning("Dropped %d examples longer than max_length=%d.", self.num_dropped, max_length)

    @property
    def efficiency(self) -> float:
        """Real tokens / slot tokens of this epoch's bins."""
        return packing_efficiency(self.bins, self.lengths, self.max_length)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the row order (called by the Trainer at each epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            yield from self.bins
            return
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for position in torch.randperm(len(self.bins), generator=generator).tolist():
            yield self.bins[position]

    def __len__(self) -> int:
        return len(self.bins)
