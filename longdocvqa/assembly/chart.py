"""Histogram PNGs drawn with Pillow alone (stacked bars per series, axes, ticks, title, legend).

The card's two plots need nothing more, and matplotlib with its font and solver packages was about 60 MB of the
base install. Output is deterministic (no timestamp or version in the PNG), so a rebuild gives the same bytes.
Does not own: the binning (assemble.length_histogram / pages_histogram) or where the files go (assemble, card).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WIDTH_PX, HEIGHT_PX = 840, 480
MARGIN_PX = {"left": 70, "right": 20, "top": 40, "bottom": 60}
COLOURS = ("#3b6ea5", "#e1812c", "#3a923a", "#c03d3e", "#9372b2", "#845b53", "#d684bd", "#7f7f7f")
_TICKS = 5


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)  # Pillow >= 10.1 with FreeType: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _nice_step(span: float, ticks: int = _TICKS) -> float:
    """A 1-2-5 step that cuts `span` into about `ticks` intervals."""
    raw = max(span, 1e-9) / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(factor * magnitude for factor in (1, 2, 5, 10) if factor * magnitude >= raw)


def _label(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def stacked_histogram(
    edges: Sequence[float], series: Mapping[str, Sequence[int]], path: Path, *, xlabel: str, title: str = ""
) -> Path:
    """Write a PNG of bars over bins [edges[i], edges[i+1]), one stacked colour per series; returns `path`."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "white")
    draw = ImageDraw.Draw(image)
    left, top = MARGIN_PX["left"], MARGIN_PX["top"]
    right, bottom = WIDTH_PX - MARGIN_PX["right"], HEIGHT_PX - MARGIN_PX["bottom"]
    totals = [sum(counts[i] for counts in series.values()) for i in range(len(edges) - 1)]
    y_max = max([*totals, 1])
    x_lo, x_hi = float(edges[0]), float(edges[-1]) if edges[-1] > edges[0] else float(edges[0]) + 1

    def x_px(value: float) -> float:
        return left + (value - x_lo) / (x_hi - x_lo) * (right - left)

    def y_px(value: float) -> float:
        return bottom - value / y_max * (bottom - top)

    base = [0] * len(totals)
    for colour, counts in zip(COLOURS * 4, series.values(), strict=False):
        for i, count in enumerate(counts):
            if count:
                box = (x_px(edges[i]), y_px(base[i] + count), x_px(edges[i + 1]) - 1, y_px(base[i]))
                draw.rectangle(box, fill=colour, outline="white")
                base[i] += count
    _axes(draw, (left, top, right, bottom), (x_lo, x_hi, y_max), xlabel, title)
    _legend(draw, list(series), right)
    image.save(path, format="PNG", optimize=False)
    return path


Box = tuple[int, int, int, int]


def _axes(draw: Any, box: Box, ranges: tuple[float, float, int], xlabel: str, title: str) -> None:
    left, top, right, bottom = box
    x_lo, x_hi, y_max = ranges
    small, large = _font(13), _font(15)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=1)
    step = _nice_step(x_hi - x_lo)
    tick = (x_lo // step + (x_lo % step > 0)) * step
    while tick <= x_hi + 1e-9:
        x = left + (tick - x_lo) / (x_hi - x_lo) * (right - left)
        draw.line([(x, bottom), (x, bottom + 5)], fill="black")
        draw.text((x, bottom + 8), _label(tick), fill="black", font=small, anchor="mt")
        tick += step
    y_step = max(1.0, _nice_step(y_max))
    tick = 0.0
    while tick <= y_max + 1e-9:
        y = bottom - tick / y_max * (bottom - top)
        draw.line([(left - 5, y), (left, y)], fill="black")
        draw.text((left - 8, y), _label(tick), fill="black", font=small, anchor="rm")
        tick += y_step
    draw.text(((left + right) / 2, bottom + 32), xlabel, fill="black", font=large, anchor="mt")
    draw.text((left, top - 8), "Count", fill="black", font=small, anchor="mb")
    draw.text(((left + right) / 2, 8), title, fill="black", font=large, anchor="mt")


def _legend(draw: Any, names: list[str], right: int, colours: Sequence[str] = COLOURS * 4) -> None:
    font = _font(13)
    for i, (name, colour) in enumerate(zip(names, colours, strict=False)):
        y = MARGIN_PX["top"] + 8 + 20 * i
        draw.rectangle((right - 150, y, right - 138, y + 12), fill=colour)
        draw.text((right - 132, y + 6), name, fill="black", font=font, anchor="lm")


def line_chart(
    labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, xlabel: str, ylabel: str, title: str = ""
) -> bytes:
    """PNG bytes of one line per series over evenly spaced categories `labels`, y from 0 to 1 (e.g. accuracy per
    context length); a None value leaves a gap. The last series is drawn dashed in black (the overall line)."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH_PX, HEIGHT_PX), "white")
    draw = ImageDraw.Draw(image)
    left, top = MARGIN_PX["left"], MARGIN_PX["top"]
    right, bottom = WIDTH_PX - MARGIN_PX["right"] - 160, HEIGHT_PX - MARGIN_PX["bottom"]
    count = max(len(labels), 1)

    def at(i: int, value: float) -> tuple[float, float]:
        x = left + (i + 0.5) / count * (right - left)
        return x, bottom - max(0.0, min(1.0, value)) * (bottom - top)

    small, large = _font(13), _font(15)
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=1)
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = at(0, tick)[1]
        draw.line([(left, y), (right, y)], fill="#e6e6e6")
        draw.text((left - 8, y), f"{tick:.1f}", fill="black", font=small, anchor="rm")
    for i, label in enumerate(labels):
        x = at(i, 0.0)[0]
        draw.line([(x, bottom), (x, bottom + 5)], fill="black")
        draw.text((x, bottom + 8), label, fill="black", font=small, anchor="mt")
    names = list(series)
    colours = [*COLOURS[: max(len(names) - 1, 0)], "black"] if names else []
    for name, colour in zip(names, colours, strict=False):
        points = [at(i, v) for i, v in enumerate(series[name]) if v is not None]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2 if colour != "black" else 1)
        for x, y in points:
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour)
    draw.text(((left + right) / 2, bottom + 32), xlabel, fill="black", font=large, anchor="mt")
    draw.text((left, top - 8), ylabel, fill="black", font=small, anchor="mb")
    draw.text(((left + right) / 2, 8), title, fill="black", font=large, anchor="mt")
    _legend(draw, names, WIDTH_PX - MARGIN_PX["right"], colours)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def histogram(values: Sequence[float], bins: int) -> tuple[list[float], list[int]]:
    """(edges, counts) of `values` over `bins` equal bins spanning their range (one bin of width 1 when flat)."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1
    width = (hi - lo) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - lo) / width), bins - 1)] += 1
    return [lo + i * width for i in range(bins + 1)], counts
