"""The charts (core/charts.py) and their titles: bins follow the data within the recipe's window, tick labels read
`2.1K`, legends sit outside the data, titles state their own chart, and the same input gives the same PNG bytes.
Checked from the JSON of plotted numbers written beside each PNG, never from pixels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longdocvqa.assembly.stats import AssembleStats, Histogram, length_title
from longdocvqa.core import charts
from longdocvqa.core.recipe import Recipe, parse_recipe
from longdocvqa.hub import charts as card_charts
from longdocvqa.hub.stats import PublishStats

DEMO_TOKENS = [2113, 2150, 2180, 2361, 2372, 2402, 2420, 2433, 2465, 2570, 2585, 2856, 2870, 2890, 3010, 3020, 3051]


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def data_under_legend(data: dict[str, Any]) -> list[str]:
    """Bars (histogram) or points (line chart) that the legend's box covers, in axes fractions (empty: none)."""
    box = data["legend"]["bbox_axes"]
    if box is None:
        return []
    (x_lo, x_hi), (y_lo, y_hi) = data["xlim"], data["ylim"]

    def fx(x: float) -> float:
        return (x - x_lo) / (x_hi - x_lo)

    def fy(y: float) -> float:
        return (y - y_lo) / (y_hi - y_lo)

    covered = []
    if data["kind"] == "histogram":
        edges = data["edges"]
        for i, total in enumerate(data["totals"]):
            bar = (fx(edges[i]), 0.0, fx(edges[i + 1]), fy(total))
            if total and _overlaps(bar, tuple(box)):
                covered.append(f"bar {edges[i]}-{edges[i + 1]}")
    else:
        for name, values in data["series"].items():
            for i, value in enumerate(values):
                if value is not None and _overlaps((fx(i) - 0.01, fy(value) - 0.01, fx(i) + 0.01, fy(value) + 0.01),
                                                   tuple(box)):  # fmt: skip
                    covered.append(f"{name} point {i}")
    return covered


def test_bins_follow_the_data_inside_a_narrow_window() -> None:
    edges = charts.bin_edges(DEMO_TOKENS, (1024, 4096))
    counts = charts.bin_counts(DEMO_TOKENS, edges)
    assert 15 <= len(edges) - 1 <= 40 and sum(counts) == len(DEMO_TOKENS)
    assert 2000 <= edges[0] <= min(DEMO_TOKENS) and max(DEMO_TOKENS) < edges[-1] <= 3200
    assert sum(1 for c in counts if c) >= 8


def test_bins_span_the_paper_window_and_stay_inside_it() -> None:
    values = [8_500, 20_000, 64_000, 100_000, 127_900]
    edges = charts.bin_edges(values, (8_192, 131_072))
    assert 20 <= len(edges) - 1 <= 40 and edges[0] <= 8_500 and edges[-1] > 127_900
    assert charts.bin_edges([], (1024, 4096))[0] <= 1024 and len(charts.bin_edges([7])) == 2
    assert charts.bin_edges([3, 40]) == list(range(3, 42))  # pages: whole-page bins across the observed range
    assert charts.bin_edges([3, 90]) == list(range(3, 94, 3))  # a round width, 20-30 bins
    assert charts.bin_edges([33, 46]) == list(range(33, 48))  # whole pages when the range is short


def test_tick_labels_read_in_thousands() -> None:
    assert charts.thousands(2100, 100) == "2.1K" and charts.thousands(3000, 200) == "3.0K"
    assert charts.thousands(120_000, 20_000) == "120K" and charts.thousands(400, 100) == "400"


def test_histogram_png_is_deterministic_and_its_legend_covers_no_bar(tmp_path: Path) -> None:
    edges = charts.bin_edges(DEMO_TOKENS, (1024, 4096))
    series = {
        "extract": charts.bin_counts(DEMO_TOKENS[::2], edges),
        "reasoning": charts.bin_counts(DEMO_TOKENS[1::2], edges),
    }
    first = charts.stacked_histogram(edges, series, title="Tokens per example", xlabel="tokens").write(
        tmp_path / "a.png"
    )
    second = charts.stacked_histogram(edges, series, title="Tokens per example", xlabel="tokens").write(
        tmp_path / "b.png"
    )
    assert first.read_bytes() == second.read_bytes() and first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"Software" not in first.read_bytes() and b"matplotlib" not in first.read_bytes()
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["edges"] == edges and data["totals"] == charts.bin_counts(DEMO_TOKENS, edges)
    assert data["legend"]["placement"] == "outside right" and data["legend"]["bbox_axes"][0] >= 1.0
    assert data_under_legend(data) == []


def test_line_chart_legend_covers_no_point(tmp_path: Path) -> None:
    series = {"extract": [1.0, 0.9, None, 0.95], "reasoning": [0.98, 1.0, 1.0, 0.97], "all": [0.99, 0.95, 1.0, 0.96]}
    chart = charts.line_chart(["1K", "8K", "32K", "128K"], series, title="Accuracy", xlabel="length", ylabel="acc")
    chart.write(tmp_path / "accuracy.png")
    data = json.loads((tmp_path / "accuracy.json").read_text())
    assert data["series"]["extract"][2] is None and data["legend"]["bbox_axes"][0] >= 1.0
    assert data_under_legend(data) == []


def _stats(max_tokens: int, tokens: list[int]) -> AssembleStats:
    hist = Histogram(edges=[0, 1], counts={})
    return AssembleStats(
        examples=len(tokens), tokens=sum(tokens), mean_tokens=sum(tokens) / len(tokens), min_tokens=min(tokens),
        max_tokens=max(tokens), share_ge_100k=sum(t >= 100_000 for t in tokens) / len(tokens), mean_pages=30.0,
        per_task={}, pool={}, requested={"max_tokens": max_tokens}, rejects={}, length_histogram=hist,
        pages_histogram=hist,
    )  # fmt: skip


def _recipe() -> Recipe:
    return parse_recipe({"name": "charts", "version": "0.1.0", "pool": {"paths": ["unused"]}})


def test_share_at_100k_is_in_the_title_only_when_the_window_reaches_it() -> None:
    assert "100K" not in length_title(_stats(4096, DEMO_TOKENS))
    assert "50.0% >= 100K" in length_title(_stats(131_072, [90_000, 110_000]))
    rows = PublishStats(num_tokens=DEMO_TOKENS, num_pages=[30] * len(DEMO_TOKENS))
    assert "100K" not in card_charts.length_title(rows, 4096)
    assert card_charts.length_title(rows, 131_072).endswith("0.0% >= 100K")
    assert card_charts.pages_title(rows).startswith("Pages per example") and "tokens" not in card_charts.pages_title(
        rows
    )


def test_without_matplotlib_nothing_is_drawn_and_one_line_says_so(monkeypatch, tmp_path: Path) -> None:
    import sys

    from longdocvqa.assembly.stats import write_length_plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without matplotlib gives: ImportError
    line = charts.charts_available()
    assert line is not None and line.startswith("no charts: matplotlib is not installed") and "\n" not in line
    paths = write_length_plots(_stats(4096, DEMO_TOKENS), tmp_path)
    assert set(paths) == {"length", "pages"} and not any(path.exists() for path in paths.values())
    rows = PublishStats(num_tokens=DEMO_TOKENS, num_pages=[30] * len(DEMO_TOKENS))
    assert card_charts.write_card_charts(tmp_path, _recipe(), rows, {"length": None, "pages": None}) == line
