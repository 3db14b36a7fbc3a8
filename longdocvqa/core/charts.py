"""Charts as PNG files drawn by matplotlib (Agg canvas, headless, no pyplot state), each with a JSON of what it plots.

Owns: bins that follow the data and a window (`bin_edges`), stacked histograms and line charts, tick labels in
thousands (`2.1K`), the legend's place (outside the axes, right of them, so it never covers data), deterministic
bytes (no `Software` or time metadata: a rebuild gives the same PNG) and the `<name>.json` beside each `<name>.png`
(edges, counts or points, title, axis limits, legend box in axes fractions) that tests read instead of pixels.
Does not own: what is plotted and its titles (assembly/stats.py, eval/report.py, hub/charts.py) or the examples'
pictures (hub/card_examples.py).
"""

from __future__ import annotations

import bisect
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longdocvqa.core.store import atomic_write_bytes, atomic_write_text

TARGET_BINS = 30  # the histograms aim at 20-40 bins over the observed range (within the window)
WIDTH_IN, HEIGHT_IN, DPI = 9.0, 4.2, 100
COLOURS = ("#3b6ea5", "#e1812c", "#3a923a", "#c03d3e", "#9372b2", "#845b53", "#d684bd", "#7f7f7f")
_NICE_FACTORS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)  # steps of at most 1.5x: 20-30 bins


@dataclass
class Chart:
    """An encoded PNG and the numbers it shows (written as JSON next to it)."""

    png: bytes
    data: dict[str, Any]

    def write(self, path: Path) -> Path:
        """Write `path` (.png) and `path.with_suffix('.json')`; returns `path`."""
        atomic_write_bytes(path, self.png)
        atomic_write_text(path.with_suffix(".json"), json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        return path


def nice_width(span: float, bins: int = TARGET_BINS) -> int:
    """A round integer bin width (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k, at least 1) that cuts `span` into `bins`
    bins or a few less (never under 2/3 of them)."""
    raw = max(span, 1.0) / bins
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return max(1, int(next(f * magnitude for f in _NICE_FACTORS if f * magnitude >= raw)))


def bin_edges(values: Sequence[int], window: tuple[int, int] | None = None) -> list[int]:
    """Integer edges of about TARGET_BINS equal bins across the observed range of `values`, clipped to `window`
    (min, max) when given: the data's own span when it is narrower than the window, never wider than it."""
    if not values:
        lo, hi = window or (0, 1)
    else:
        lo, hi = min(values), max(values)
        if window is not None and max(lo, window[0]) <= min(hi, window[1]):
            lo, hi = max(lo, window[0]), min(hi, window[1])
    width = nice_width(hi - lo)
    start = lo // width * width
    count = max(1, -(-(hi + 1 - start) // width))
    return [start + i * width for i in range(count + 1)]


def bin_counts(values: Sequence[int], edges: Sequence[int]) -> list[int]:
    """Counts of `values` in bins [edges[i], edges[i+1]); values outside go to the first or last bin."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        counts[min(max(bisect.bisect_right(edges, value) - 1, 0), len(counts) - 1)] += 1
    return counts


def thousands(value: float, step: float) -> str:
    """Tick label: `2.1K` (decimal K) when ticks are under 10,000 apart and the value reaches 1,000, else `400`."""
    if abs(value) < 1000:
        return f"{value:,.0f}"
    digits = 0 if step >= 1000 else 1 if step >= 100 else 2
    return f"{value / 1000:.{digits}f}K"


def _figure(width_in: float = WIDTH_IN, height_in: float = HEIGHT_IN) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Any) -> bytes:
    """PNG bytes without metadata (no Software, no time): the same figure always gives the same bytes."""
    import io

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a glyph the font lacks is drawn as a box; the build's output stays quiet
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(
            buffer, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.15
        )
    return buffer.getvalue()


def _legend_outside(figure: Any, axes: Any, title: str | None = None) -> dict[str, Any]:
    """A legend right of the axes (never over data); returns its placement and box in axes fractions."""
    handles, _ = axes.get_legend_handles_labels()
    if len(handles) < 2:
        return {"placement": "none", "bbox_axes": None}
    legend = axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, title=title)
    renderer = figure.canvas.get_renderer()
    box = legend.get_window_extent(renderer).transformed(axes.transAxes.inverted())
    return {"placement": "outside right", "bbox_axes": [round(float(v), 4) for v in (box.x0, box.y0, box.x1, box.y1)]}


def _format_ticks(axes: Any, xlim: tuple[float, float]) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10], integer=True))
    ticks = [t for t in axes.xaxis.get_major_locator().tick_values(*xlim)]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: thousands(value, step)))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def stacked_histogram(
    edges: Sequence[int], series: Mapping[str, Sequence[int]], *, title: str, xlabel: str, ylabel: str = "examples"
) -> Chart:
    """Bars over bins [edges[i], edges[i+1]), one stacked colour per series (legend outside when several)."""
    figure, axes = _figure()
    lefts, widths = list(edges[:-1]), [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    base = [0] * len(widths)
    for colour, (name, counts) in zip(COLOURS * 4, series.items(), strict=False):
        axes.bar(lefts, counts, widths, bottom=base, align="edge", color=colour, edgecolor="white", linewidth=0.5,
                 label=name)  # fmt: skip
        base = [b + c for b, c in zip(base, counts, strict=True)]
    xlim = (float(edges[0]), float(edges[-1]))
    axes.set_xlim(*xlim)
    axes.set_ylim(0, max([*base, 1]) * 1.05)
    _format_ticks(axes, xlim)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.spines[["top", "right"]].set_visible(False)
    legend = _legend_outside(figure, axes)
    data = {"kind": "histogram", "title": title, "xlabel": xlabel, "ylabel": ylabel, "edges": list(edges),
            "counts": {name: list(c) for name, c in series.items()}, "totals": base, "xlim": list(xlim),
            "ylim": [float(v) for v in axes.get_ylim()], "legend": legend}  # fmt: skip
    return Chart(_png(figure), data)


def line_chart(
    labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str, xlabel: str, ylabel: str
) -> Chart:
    """One line per series over evenly spaced categories `labels`, y from 0 to 1 (a None value leaves a gap); the
    last series is drawn dashed in black (the overall line). Legend outside the axes."""
    figure, axes = _figure()
    names = list(series)
    for index, name in enumerate(names):
        last = index == len(names) - 1
        style = {"color": "black", "linestyle": "--"} if last else {"color": COLOURS[index % len(COLOURS)]}
        ys = [math.nan if v is None else v for v in series[name]]
        axes.plot(range(len(labels)), ys, marker="o", label=name, **style)
    axes.set_xticks(range(len(labels)), list(labels))
    axes.set_xlim(-0.5, max(len(labels), 1) - 0.5)
    axes.set_ylim(0.0, 1.02)
    axes.grid(axis="y", color="#e6e6e6")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.spines[["top", "right"]].set_visible(False)
    legend = _legend_outside(figure, axes)
    data = {"kind": "line", "title": title, "xlabel": xlabel, "ylabel": ylabel, "labels": list(labels),
            "series": {name: list(values) for name, values in series.items()},
            "xlim": [float(v) for v in axes.get_xlim()], "ylim": [float(v) for v in axes.get_ylim()],
            "legend": legend}  # fmt: skip
    return Chart(_png(figure), data)


def charts_available() -> str | None:
    """None when matplotlib imports, else the one line that says why the charts are missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"no charts: matplotlib is not installed ({exc})"
    return None


@dataclass
class Thumbnail:
    """One page of an example picture: its pixels (an RGB array), caption, and boxes to outline in pixels."""

    pixels: Any
    caption: str
    boxes_px: list[tuple[float, float, float, float]]


def pages_figure(header: str, pages: Sequence[Thumbnail]) -> Chart:
    """A picture of pages side by side (one pixel per pixel) under a pre-wrapped header, each with its caption and
    its boxes outlined in red: the card's look at one example."""
    from matplotlib.patches import Rectangle

    width_in = sum(p.pixels.shape[1] for p in pages) / DPI + 0.1 * len(pages)
    page_in = max(p.pixels.shape[0] for p in pages) / DPI
    header_in, caption_in = 0.19 * (header.count("\n") + 1) + 0.1, 0.3
    figure, _ = _figure(width_in, header_in + caption_in + page_in)
    figure.clear()
    height_in = figure.get_figheight()
    figure.text(0.005, 1 - 0.05 / height_in, header, ha="left", va="top", fontsize=10)
    left = 0.0
    for page in pages:
        share = (page.pixels.shape[1] / DPI + 0.1) / width_in
        axes = figure.add_axes((left + 0.05 / width_in, 0.0, share - 0.1 / width_in, page_in / height_in))
        axes.imshow(page.pixels, interpolation="none")
        for x0, y0, x1, y1 in page.boxes_px:
            axes.add_patch(Rectangle((x0 - 1, y0 - 1), x1 - x0 + 2, y1 - y0 + 2, fill=False, edgecolor="red",
                                     linewidth=0.9))  # fmt: skip
        axes.set_title(page.caption, fontsize=9, pad=3)
        axes.set_xticks([]), axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_edgecolor("#9a9a9a")
        left += share
    data = {"kind": "pages", "header": header, "pages": [{"caption": p.caption, "boxes_px": p.boxes_px,
            "size_px": [int(p.pixels.shape[1]), int(p.pixels.shape[0])]} for p in pages]}  # fmt: skip
    return Chart(_png(figure), data)
