"""Pool discovery, hashing and filters; rendering sizes and formats on real PDFs."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe import PoolConfig
from longdocvqa.documents import pool, render


def test_discover_folders_globs_and_list_files(pdf_dir: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# pool\n{pdf_dir / 'R-data.pdf'}\n{pdf_dir / 'brief.pdf'}\n")
    assert len(pool.discover([str(pdf_dir)])) == 10
    assert [Path(p).name for p in pool.discover([str(pdf_dir / "R-*.pdf")])] == ["R-FAQ.pdf", "R-data.pdf"]
    assert [Path(p).name for p in pool.discover([str(listing)])] == ["R-data.pdf", "brief.pdf"]
    with pytest.raises(RecipeError, match="pool path does not exist"):
        pool.discover([str(tmp_path / "missing")])


def test_inspect_hashes_bytes_and_reads_pages(pdf_dir: Path) -> None:
    path = pdf_dir / "R-data.pdf"
    doc = pool.inspect_file(path, PoolConfig(paths=[]))
    assert doc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc.num_pages == 41 and doc.page_sizes_pt[0] == (612.0, 792.0)
    assert doc.producer  # metadata read (this file has a producer, no title)


def test_page_range_filter(pdf_dir: Path) -> None:
    cfg = PoolConfig(paths=[], min_pages=32, max_pages=50)
    pages = {Path(p).name: pool.inspect_file(p, cfg).num_pages for p in pool.discover([str(pdf_dir)])}
    kept = {name for name, n in pages.items() if pool.in_page_range(pool.inspect_file(pdf_dir / name, cfg), cfg)}
    assert kept == {name for name, n in pages.items() if 32 <= n <= 50}
    assert "ulineno.pdf" not in kept and "R-FAQ.pdf" not in kept  # 20 and 52 pages


def test_size_limit_rejects(pdf_dir: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    shutil.copy(pdf_dir / "GS9_Color_Management.pdf", big)
    with pytest.raises(Exception) as err:
        pool.inspect_file(big, PoolConfig(paths=[], max_file_mb=1))
    assert getattr(err.value, "reason", None) == "too_large"


def test_letter_page_renders_at_1224_by_1584(pdf_dir: Path) -> None:
    data = render.render_page(pdf_dir / "R-data.pdf", 1, dpi=144, fmt="jpeg", quality=90)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.mode == "RGB" and image.size == (1224, 1584)
    assert render.pixel_size(612, 792, 144) == (1224, 1584)


@pytest.mark.parametrize("fmt,pil", [("png", "PNG"), ("webp", "WEBP")])
def test_other_formats(pdf_dir: Path, fmt: str, pil: str) -> None:
    data = render.render_page(pdf_dir / "brief.pdf", 2, dpi=72, fmt=fmt, quality=80)
    image = Image.open(io.BytesIO(data))
    assert image.format == pil
    assert image.size == render.pixel_size(595.276, 841.89, 72)
