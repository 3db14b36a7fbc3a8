"""The card's charts: assets/length_histogram.png and assets/pages_histogram.png, each with its plotted numbers in a
`.json` beside it.

The assembly stage's charts (stacked by task, binned across the recipe's window) are copied when the build hands
them over; otherwise (a dataset written without a build) they are drawn from the published rows. When matplotlib
cannot be imported the card says so in one line instead of showing charts. Does not own: binning and drawing
(core/charts.py), the example pictures (card_examples.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from longdocvqa.assembly.stats import LONG_EXAMPLE_TOKENS
from longdocvqa.core import charts
from longdocvqa.core.recipe import Recipe
from longdocvqa.hub.stats import PublishStats

ASSETS = "assets"
LENGTH_PNG = f"{ASSETS}/length_histogram.png"
PAGES_PNG = f"{ASSETS}/pages_histogram.png"


def write_card_charts(folder: Path, recipe: Recipe, stats: PublishStats, given: dict[str, Path | None]) -> str | None:
    """Write both charts into `folder`/assets (copies of `given['length']` / `given['pages']` with their JSON when
    those files exist, else drawn from the rows); returns None, or the one line saying why there are no charts."""
    missing = charts.charts_available()
    if missing:
        return missing
    (folder / ASSETS).mkdir(parents=True, exist_ok=True)
    window = (recipe.assemble.min_tokens, recipe.assemble.max_tokens)
    for key, name in (("length", LENGTH_PNG), ("pages", PAGES_PNG)):
        source = given.get(key)
        if source is not None and Path(source).is_file():
            _copy_chart(Path(source), folder / name)
        elif key == "length":
            _row_histogram(stats.num_tokens, window, length_title(stats, window[1]), "tokens per example").write(
                folder / name
            )
        else:
            _row_histogram(stats.num_pages, None, pages_title(stats), "pages per example").write(folder / name)
    return None


def _copy_chart(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    if source.with_suffix(".json").is_file():
        shutil.copyfile(source.with_suffix(".json"), target.with_suffix(".json"))


def _row_histogram(values: list[int], window: tuple[int, int] | None, title: str, xlabel: str) -> charts.Chart:
    edges = charts.bin_edges(values, window)
    return charts.stacked_histogram(edges, {"examples": charts.bin_counts(values, edges)}, title=title, xlabel=xlabel)


def length_title(stats: PublishStats, max_tokens: int) -> str:
    """The length chart's own summary; the share >= 100K only when the window reaches 100K."""
    tokens = stats.num_tokens
    if not tokens:
        return "Tokens per example: no examples"
    title = (f"Tokens per example: {len(tokens):,} examples, mean {sum(tokens) / len(tokens):,.0f} "
             f"(min {min(tokens):,}, max {max(tokens):,})")  # fmt: skip
    if max_tokens >= LONG_EXAMPLE_TOKENS:
        share = sum(t >= LONG_EXAMPLE_TOKENS for t in tokens) / len(tokens)
        title += f", {share:.1%} >= {LONG_EXAMPLE_TOKENS // 1000}K"
    return title


def pages_title(stats: PublishStats) -> str:
    """The pages chart's own summary."""
    pages = stats.num_pages
    if not pages:
        return "Pages per example: no examples"
    return f"Pages per example: {len(pages):,} examples, mean {sum(pages) / len(pages):.1f}"
