"""The card's YAML header: what tools read (the Hub, `datasets`, the trainer, `validate`).

`configs` (data files per config and split, `sft` the default), `dataset_info` (Features and split sizes, in
`datasets`' own YAML form), licence (with `license_name` / `license_link` when it is `other`), task categories,
size category, tags, and the `longdocvqa` block (version, recipe fingerprint, processor `min_pixels` /
`max_pixels`, token window, counts and token totals per task and split, task shares).
Does not own: the body for people (card.py) or its tables (card_tables.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from longdocvqa.core.contract import CARD_KEY, CONFIGS, configs_yaml, ordered_splits
from longdocvqa.core.recipe import Recipe
from longdocvqa.hub.card_tables import task_shares
from longdocvqa.hub.features import features_for
from longdocvqa.hub.stats import PublishStats

LICENCE_FILE = "LICENSE.md"
TASK_CATEGORIES = ["visual-question-answering", "document-question-answering", "image-text-to-text"]
TAGS = ["long-context", "long-document", "document-understanding", "multimodal", "synthetic", "sft", "longdocvqa"]
_SIZE_BOUNDS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]


def size_category(num_rows: int) -> str:
    """The Hub's size category for `num_rows` examples."""
    return next((name for bound, name in _SIZE_BOUNDS if num_rows < bound), "n>1M")


def card_header(folder: Path, recipe: Recipe, stats: PublishStats) -> dict[str, Any]:
    """The YAML header as a dict."""
    num_sft = sum(stats.rows["sft"].values())
    header: dict[str, Any] = {
        "pretty_name": recipe.publish.pretty_name or recipe.name,
        "license": recipe.publish.licence,
        **licence_yaml(recipe, stats),
        "task_categories": TASK_CATEGORIES,
        "size_categories": [size_category(num_sft)],
        "tags": TAGS,
        "configs": configs_yaml(stats.rows),
        "dataset_info": dataset_info_yaml(folder, stats),
        CARD_KEY: longdocvqa_yaml(recipe, stats),
    }
    return header


def licence_yaml(recipe: Recipe, stats: PublishStats) -> dict[str, str]:
    """`license_name` and `license_link` when the licence is `other` (the Hub shows them instead of a known id)."""
    if recipe.publish.licence != "other":
        return {}
    mixed = "-".join(sorted(_slug(name) for name in stats.licences)) or "unknown"
    name = recipe.publish.licence_name or (f"mixed-{mixed}" if len(stats.licences) > 1 else mixed)
    return {"license_name": name, "license_link": recipe.publish.licence_link or LICENCE_FILE}


def _slug(text: str) -> str:
    """`GPL-2 (portions LGPL)` -> `gpl-2-portions-lgpl`: an id the Hub accepts as `license_name`."""
    return re.sub(r"[^a-z0-9.+]+", "-", text.lower()).strip("-") or "unknown"


def dataset_info_yaml(folder: Path, stats: PublishStats) -> list[dict[str, Any]]:
    """`dataset_info:` per config, in the YAML form `datasets` writes itself (features, splits, sizes)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo

    out = []
    for config in CONFIGS:
        sizes = stats.num_bytes.get(config, {})
        splits = SplitDict()
        for split in ordered_splits(stats.rows[config]):
            splits.add(SplitInfo(name=split, num_bytes=sizes.get(split, 0), num_examples=stats.rows[config][split]))
        shards = [p for paths in stats.shards.get(config, {}).values() for p in paths]
        download = sum(p.stat().st_size for p in shards)
        info = DatasetInfo(
            features=features_for(config), splits=splits, download_size=download, dataset_size=sum(sizes.values())
        )
        out.append({"config_name": config, **info._to_yaml_dict()})
    return out


def longdocvqa_yaml(recipe: Recipe, stats: PublishStats) -> dict[str, Any]:
    """The `longdocvqa:` block: what the trainer and `validate` read."""
    a = recipe.assemble
    counts = {c: {s: stats.rows[c][s] for s in ordered_splits(stats.rows[c])} for c in CONFIGS}
    return {
        "name": recipe.name,
        "version": recipe.version,
        "recipe_fingerprint": recipe.fingerprint(),
        "tokenizer": a.tokenizer,
        "min_pixels": a.min_pixels,
        "max_pixels": a.max_pixels,
        "min_tokens": a.min_tokens,
        "max_tokens": a.max_tokens,
        "render": {"dpi": recipe.render.dpi, "format": recipe.render.format, "quality": recipe.render.quality},
        "test_share": recipe.publish.test_share,
        "mixture": dict(a.mixture),
        "mixture_unit": a.mixture_unit,
        "task_shares": task_shares(stats, a.mixture_unit),
        "counts": counts,
        "task_counts": {s: dict(sorted(stats.task_counts[s].items())) for s in ordered_splits(stats.task_counts)},
        "task_tokens": {s: dict(sorted(stats.task_tokens[s].items())) for s in ordered_splits(stats.task_tokens)},
        "num_tokens_total": sum(stats.num_tokens),
    }
