"""Pages for the audit page: page images (the run's page cache, else rendered on demand) and answer highlights.

Highlights are the boxes where the answer (or an item of the answer list) occurs in the text layer: MuPDF's search on
the source PDF (its path is in the pool stage's records), else (PDF gone, or the words split oddly) the stored
layout's blocks whose cleaned text contains it. Every path
is built here from a document's sha256 and a page number, never from a request. Does not own: the page cache
(runner/loop.py writes it; its path scheme is read here), PyMuPDF (documents/render.py).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from longdocvqa.core.errors import LongDocVQAError
from longdocvqa.core.recipe import RenderConfig
from longdocvqa.documents import render

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_NOT_SEARCHED = {"yes", "no", "not answerable", "none", "n/a"}
Box = tuple[float, float, float, float]


class Evidence:
    """Page images and highlight boxes of the documents of one run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cfg = _render_config(root)
        self._paths: dict[str, str] | None = None

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.cfg.format]

    def cached_path(self, sha256: str, page: int) -> Path:
        cfg = self.cfg
        variant = f"{cfg.dpi}-{cfg.format}-q{cfg.quality}-px{cfg.max_pixels}"
        return self.root / "cache" / "pages" / sha256[:2] / sha256 / variant / f"{page}.{_EXT[cfg.format]}"

    def page_image(self, sha256: str, page: int) -> bytes | None:
        """1-based `page` of the document, from the page cache or rendered now; None when neither can be had."""
        cached = self.cached_path(sha256, page)
        if cached.is_file():
            return cached.read_bytes()
        path = self.pdf_path(sha256)
        if path is None:
            return None
        try:
            return _rendered(path, page, self.cfg.dpi, self.cfg.format, self.cfg.quality, self.cfg.max_pixels)
        except (LongDocVQAError, OSError, IndexError, ValueError):
            return None

    def highlights(self, sha256: str, page: int, row: dict[str, Any]) -> list[Box]:
        """Boxes (fractions of the page) where the row's answer occurs on `page`; [] when it is not found."""
        needles = answer_needles(row)
        if not needles:
            return []
        path = self.pdf_path(sha256)
        if path is not None:
            try:
                if found := render.find_text(path, page, needles):
                    return found
            except (LongDocVQAError, OSError, IndexError, ValueError):
                pass
        return layout_boxes(self.root, sha256, page, needles)  # the blocks the pipeline read, cleaned text

    def pdf_path(self, sha256: str) -> str | None:
        """The source PDF of `sha256` as the pool stage recorded it, when that file is still readable."""
        if self._paths is None:
            self._paths = pool_paths(self.root)
        path = self._paths.get(sha256)
        return path if path and Path(path).is_file() else None


def _render_config(root: Path) -> RenderConfig:
    """The build's render settings (recipe.lock.yaml), which name its page-cache variant; defaults without one."""
    try:
        locked = yaml.safe_load((root / "recipe.lock.yaml").read_text(encoding="utf-8")) or {}
        return RenderConfig.model_validate(locked.get("render") or {})
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return RenderConfig()


@functools.lru_cache(maxsize=64)
def _rendered(path: str, page: int, dpi: int, fmt: str, quality: int, max_pixels: int) -> bytes:
    return render.render_page(path, page, dpi, fmt, quality, max_pixels)


def pool_paths(root: Path) -> dict[str, str]:
    """sha256 -> source path, from the pool stage's per-document records of every build of the run."""
    paths: dict[str, str] = {}
    for record in sorted((root / "stages" / "pool").glob("*/*/*.json")):
        try:
            ok = json.loads(record.read_text(encoding="utf-8")).get("ok") or {}
        except (OSError, ValueError):
            continue
        if isinstance(ok, dict) and ok.get("sha256") and ok.get("path"):
            paths[str(ok["sha256"])] = str(ok["path"])
    return paths


def answer_needles(row: dict[str, Any]) -> list[str]:
    """The strings to look for: the answer and the answer list's items, long enough to be told apart."""
    items: Iterable[Any] = [row.get("answer"), *(row.get("answer_list") or [])]
    needles = []
    for item in items:
        text = " ".join(str(item or "").split())
        if len(text) >= 3 and text.lower() not in _NOT_SEARCHED and text not in needles:
            needles.append(text)
    return needles


def layout_boxes(root: Path, sha256: str, page: int, needles: list[str]) -> list[Box]:
    """Blocks of the stored layout (stages/layout) on `page` whose text contains a needle, as page fractions."""
    for record in sorted((root / "stages" / "layout").glob(f"*/{sha256[:2]}/{sha256}.json")):
        try:
            pages = json.loads(record.read_text(encoding="utf-8"))["ok"]["pages"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if 1 <= page <= len(pages):
            return _matching_blocks(pages[page - 1], needles)
    return []


def _matching_blocks(page: dict[str, Any], needles: list[str]) -> list[Box]:
    width, height = float(page.get("width_pt") or 1.0), float(page.get("height_pt") or 1.0)
    wanted = [_squash(n) for n in needles]
    boxes = []
    for block in page.get("blocks", []):
        if any(w in _squash(str(block.get("text", ""))) for w in wanted):
            x0, y0, x1, y1 = block["bbox"]
            boxes.append((x0 / width, y0 / height, x1 / width, y1 / height))
    return boxes


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()
