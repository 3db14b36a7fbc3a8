"""Render speed: the project's path vs a bare PyMuPDF + Pillow loop vs `pdftoppm -r 144 -jpeg`, same pages.

Usage: python bench/render.py [PDF ...] [--pages N] [--dpi 144] [--quality 90]
Prints pages/s for each path (one process, one core) and the ratio project / bare loop (target >= 0.8).
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pymupdf
from PIL import Image

from longdocvqa.documents import render

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PDFS = [ROOT / "tests/data/pdfs/R-data.pdf", ROOT / "tests/data/pdfs/GS9_Color_Management.pdf",
                ROOT / "tests/data/pdfs/mathtools.pdf"]  # fmt: skip


def bare_loop(path: Path, pages: int, dpi: int, quality: int) -> int:
    """The baseline: open, rasterise, Pillow JPEG from raw samples; no project code."""
    doc = pymupdf.open(path)
    total = 0
    for page in list(doc)[:pages]:
        pix = page.get_pixmap(dpi=dpi)
        out = io.BytesIO()
        Image.frombytes("RGB", (pix.width, pix.height), pix.samples).save(out, "JPEG", quality=quality)
        total += len(out.getvalue())
    return total


def project_path(path: Path, pages: int, dpi: int, quality: int) -> int:
    """What the pipeline calls when a stage asks for page images."""
    images = render.render_pages(path, list(range(1, pages + 1)), dpi, "jpeg", quality)
    return sum(len(b) for b in images.values())


def pdftoppm(path: Path, pages: int, dpi: int, quality: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["pdftoppm", "-r", str(dpi), "-jpeg", "-jpegopt", f"quality={quality}", "-l", str(pages), str(path)]
        subprocess.run([*cmd, f"{tmp}/p"], check=True, capture_output=True)
        return sum(p.stat().st_size for p in Path(tmp).iterdir())


def timed(fn, pdfs: list[Path], pages: int, dpi: int, quality: int, repeats: int) -> float:
    """Best pages/s over `repeats` runs."""
    best = 0.0
    for _ in range(repeats):
        start, count = time.perf_counter(), 0
        for pdf in pdfs:
            n = min(pages, pymupdf.open(pdf).page_count)
            fn(pdf, n, dpi, quality)
            count += n
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdfs", nargs="*", type=Path, default=DEFAULT_PDFS)
    parser.add_argument("--pages", type=int, default=30)
    parser.add_argument("--dpi", type=int, default=144)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates = {"bare PyMuPDF+Pillow": timed(bare_loop, args.pdfs, args.pages, args.dpi, args.quality, args.repeats)}
    rates["longdocvqa render"] = timed(project_path, args.pdfs, args.pages, args.dpi, args.quality, args.repeats)
    if shutil.which("pdftoppm"):
        rates["pdftoppm -jpeg"] = timed(pdftoppm, args.pdfs, args.pages, args.dpi, args.quality, args.repeats)
    base = rates["bare PyMuPDF+Pillow"]
    print(f"{'path':<22} {'pages/s':>8} {'vs bare':>8}   ({args.dpi} DPI, JPEG q{args.quality}, 1 process)")
    for name, rate in rates.items():
        print(f"{name:<22} {rate:8.1f} {rate / base:8.2f}x")


if __name__ == "__main__":
    main()
