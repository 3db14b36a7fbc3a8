"""Sampling of assembled examples: distribution, task mixture, token budget and short-data share.

All deterministic from the seed and independent of input order: every candidate gets u in (0, 1) from
sha256(seed, example id) (`unit_draw`). The distributions (pool-native, long-biased, target), the deficit round
robin over streams and the shortfall policy are described in assemble.py's docstring; planning.py replays the
same streams (`streams`) on estimated candidates. Also the reject line of each QA the sampling left out
(`unpicked_rejects`). Does not own: building or measuring examples (assemble.py).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import AssembleConfig
from longdocvqa.core.records import QARecord, Reject

SHORT_TASK = "short"
_HASH_SPACE = float(1 << 64)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A kept example before sampling: small, no messages, no images."""

    id: str
    task: str
    num_tokens: int
    num_pages: int
    u: float
    doc_id: str = ""
    qa: QARecord | None = None
    short_index: int | None = None


def unit_draw(seed: int, item_id: str) -> float:
    """A uniform draw in (0, 1) fixed by the seed and an id: sha256, first 64 bits."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / _HASH_SPACE


@dataclass
class _Stream:
    name: str
    share: float
    items: list[Candidate]
    pos: int = 0
    used: float = 0.0

    @property
    def progress(self) -> float:
        return self.used / self.share


def sampling_key(candidate: Candidate, config: AssembleConfig) -> float:
    """Smaller first. pool-native and target: u; long-biased: Efraimidis-Spirakis key -ln(u) / weight."""
    if config.distribution != "long-biased":
        return candidate.u
    span = max(1, config.max_tokens - config.min_tokens)
    x = min(1.0, max(0.0, (candidate.num_tokens - config.min_tokens) / span))
    return -math.log(candidate.u) * math.exp(-config.long_bias * x)


def _bin_of(num_tokens: int, bins: Sequence[tuple[int, int, float]]) -> int | None:
    for index, (lo, hi, _) in enumerate(bins):
        if lo <= num_tokens < hi or (index == len(bins) - 1 and num_tokens == hi):
            return index
    return None


def streams(candidates: Sequence[Candidate], config: AssembleConfig) -> list[_Stream]:
    """One stream per task (or per task and target bin), each sorted by its sampling key."""
    bins = config.target_bins() if config.distribution == "target" else [(0, 0, 1.0)]
    groups: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for cand in candidates:
        index = _bin_of(cand.num_tokens, bins) if config.distribution == "target" else 0
        if index is not None and config.mixture.get(cand.task, 0) > 0:  # type: ignore[call-overload]
            groups[(cand.task, index)].append(cand)
    streams = []
    for task, task_share in config.mixture.items():
        for index, (lo, hi, bin_share) in enumerate(bins):
            if task_share * bin_share > 0:
                items = sorted(groups.get((task, index), []), key=lambda c: (sampling_key(c, config), c.id))
                name = task if config.distribution != "target" else f"{task}[{lo}-{hi}]"
                streams.append(_Stream(name, task_share * bin_share, items))
    return streams


def fill_streams(
    streams: list[_Stream], budget: float | None, unit: Literal["tokens", "examples"], on_shortfall: str
) -> tuple[list[Candidate], str | None]:
    """Deficit round robin: the stream furthest below its share takes its next item until the budget is full."""
    picks: list[Candidate] = []
    total, active = 0, [s for s in streams if s.share > 0]
    while active:
        stream = min(active, key=lambda s: s.progress)  # ties: the first in mixture order
        if stream.pos == len(stream.items):
            if budget is None:
                active.remove(stream)
                continue
            message = _shortfall_message(streams, stream, budget, total, unit)
            if on_shortfall == "stop":
                raise StageError(f"assemble: {message}; add documents, lower assemble.budget_tokens, "
                                 "or set assemble.on_shortfall: rescale")  # fmt: skip
            return picks, f"rescaled: {message}"
        item = stream.items[stream.pos]
        if budget is not None and total + item.num_tokens > budget:
            break
        picks.append(item)
        stream.pos += 1
        stream.used += item.num_tokens if unit == "tokens" else 1
        total += item.num_tokens
    return picks, None


def _shortfall_message(streams: list[_Stream], dry: _Stream, budget: float, total: int, unit: str) -> str:
    lines = []
    if unit == "tokens":
        for s in streams:
            have = sum(c.num_tokens for c in s.items)
            need = s.share * budget
            if have < need:
                lines.append(f"{s.name} has {have:,} of the {need:,.0f} tokens its {s.share:.0%} share needs "
                             f"(short by {need - have:,.0f})")  # fmt: skip
    else:
        lines.append(f"{dry.name} ran out after {dry.pos:,} examples")
    return "; ".join(lines) + f"; sampling stopped at {total:,} of {budget:,.0f} tokens"


def sample(
    candidates: Sequence[Candidate], short_pool: Sequence[Candidate], config: AssembleConfig
) -> tuple[list[Candidate], str | None]:
    """Sample long candidates by distribution, mixture and budget, then short data at its token share."""
    share = config.short_data.share if short_pool else 0.0
    budget = config.budget_tokens
    long_budget = None if budget is None else budget * (1 - share)
    picks, shortfall = fill_streams(streams(candidates, config), long_budget, config.mixture_unit, config.on_shortfall)
    if share == 0:
        return _shuffled(picks), shortfall
    long_tokens = sum(c.num_tokens for c in picks)
    short_target = long_tokens * share / (1 - share)
    short_have = sum(c.num_tokens for c in short_pool)
    if short_have < short_target - max((c.num_tokens for c in short_pool), default=0):
        message = f"short data has {short_have:,} of the {short_target:,.0f} tokens its {share:.0%} share needs"
        if config.on_shortfall == "stop":
            raise StageError(f"assemble: {message}; add short data, lower the share or the budget, or rescale")
        smaller = short_have * (1 - share) / share
        picks, _ = fill_streams(streams(candidates, config), smaller, config.mixture_unit, "rescale")
        short_target = sum(c.num_tokens for c in picks) * share / (1 - share)
        shortfall = f"rescaled: {message}"
    short_stream = _Stream(SHORT_TASK, 1.0, sorted(short_pool, key=lambda c: (c.u, c.id)))
    short_picks, _ = fill_streams([short_stream], short_target, "tokens", "rescale")
    return _shuffled(picks + short_picks), shortfall


def _shuffled(picks: list[Candidate]) -> list[Candidate]:
    """Output order: by a second seeded hash, so tasks and short data interleave; independent of input order."""
    return sorted(picks, key=lambda c: (hashlib.sha256(f"order:{c.u!r}:{c.id}".encode()).digest(), c.id))


def unpicked_rejects(
    records: Iterable[QARecord], picked: Iterable[str], rejected: Iterable[str], mixture: Mapping[str, float],
    paths: Mapping[str, str],
) -> list[Reject]:  # fmt: skip
    """A line per generated QA that passed every check but was not sampled: `budget` (its task has a share: the
    budget was full) or `mixture` (its task has no share in the mixture)."""
    skip = set(picked) | set(rejected)
    lines = []
    for qa in records:
        if qa.id in skip:
            continue
        share = mixture.get(qa.task, 0.0)
        reason = "budget" if share > 0 else "mixture"
        detail = "sampled out: the budget was full" if share > 0 else f"task {qa.task} has no share in the mixture"
        item = f"{paths.get(qa.doc_sha256, qa.doc_sha256)} qa {qa.id}"
        lines.append(Reject(stage="assemble", item=item, reason=reason, detail=detail, extra={"task": qa.task}))
    return lines
