"""One PDF -> its labelled layout: render.py's raw pages and outline through layout.py's rules.

Used by the layout stage (in its per-document worker) and by the `layout` command's viewer (layoutview.py).
Does not own: the labelling rules (layout.py) or PDF access (render.py).
"""

from __future__ import annotations

from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.core.records import LayoutDoc
from longdocvqa.documents import render
from longdocvqa.documents.layout import parse_layout


def parse_document(path: str, sha: str, cfg: LayoutConfig) -> LayoutDoc:
    """Raw page content -> labelled layout for one PDF."""
    raw, outline = render.raw_document(path, cfg.find_tables, layout_model=cfg.backend == "pymupdf-layout")
    return parse_layout(sha, raw, outline, cfg)
