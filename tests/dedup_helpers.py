"""PDF variants for the decontamination tests, made with PyMuPDF from the bundled real PDFs at test time.

Each helper writes a new PDF and returns its path: an excerpt, a re-rendered copy (new metadata and a new cover page:
different bytes, same text), a copy with one page of another PDF inserted, an image-only (scanned-like) copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pymupdf

from longdocvqa.documents import render


def copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def excerpt(src: Path, first_page: int, last_page: int, dest: Path) -> Path:
    """Pages first_page..last_page (1-based, inclusive) of `src`."""
    doc = pymupdf.open(src)
    doc.select(list(range(first_page - 1, last_page)))
    return _save(doc, dest)


def rerender(src: Path, dest: Path, cover_text: str = "Evaluation benchmark edition") -> Path:
    """Same text, different bytes: new metadata, the cover page replaced by a new one, re-compressed."""
    doc = pymupdf.open(src)
    doc.set_metadata({"title": "Benchmark copy", "author": "benchmark", "producer": "dedup test"})
    width, height = doc[0].rect.width, doc[0].rect.height
    doc.delete_page(0)
    cover = doc.new_page(0, width=width, height=height)
    cover.insert_text((72, 144), cover_text, fontsize=20)
    return _save(doc, dest)


def with_page_of(base: Path, other: Path, other_page: int, dest: Path, at: int = 1) -> Path:
    """`base` with page `other_page` (1-based) of `other` inserted after page `at`."""
    doc = pymupdf.open(base)
    doc.insert_pdf(pymupdf.open(other), from_page=other_page - 1, to_page=other_page - 1, start_at=at)
    return _save(doc, dest)


def resave(src: Path, dest: Path, title: str) -> Path:
    """The same pages with a different title in the metadata (another printing of the same document)."""
    doc = pymupdf.open(src)
    doc.set_metadata({"title": title})
    return _save(doc, dest)


def rasterise(src: Path, dest: Path, dpi: int = 60) -> Path:
    """An image-only copy: every page replaced by a JPEG picture of it (no text layer)."""
    doc, out = pymupdf.open(src), pymupdf.open()
    for page in doc:
        picture = page.get_pixmap(dpi=dpi).tobytes("jpeg", jpg_quality=85)
        new = out.new_page(width=page.rect.width, height=page.rect.height)
        new.insert_image(new.rect, stream=picture)
    return _save(out, dest)


def page_images(path: Path, dpi: int = 72) -> list[bytes]:
    """Every page of `path` rendered as PNG (through render.py, as the pipeline would)."""
    doc = render.open_pdf(path)
    count = doc.page_count
    doc.close()
    return list(render.render_pages(path, list(range(1, count + 1)), dpi, "png", 90).values())


def _save(doc: pymupdf.Document, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    doc.save(dest, garbage=4, deflate=True)
    return dest
