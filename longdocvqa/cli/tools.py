"""`schema` and `layout`: tools for looking at what the pipeline works with, without building anything.

Owns: these commands' flags and what they print. Does not own: the schemas (generate/, core/recipe.py) or the
layout rules and viewer (documents/layout.py, documents/layoutview.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from longdocvqa.cli.output import console, fail, plain
from longdocvqa.core.contract import row_json_schema
from longdocvqa.core.errors import LongDocVQAError, RecipeError, RejectedInput
from longdocvqa.core.recipe import Recipe
from longdocvqa.documents import layoutview
from longdocvqa.generate import qa_json_schema

_BLOCK_CHARS = 100  # a block's text shown on one line, cut with "..." beyond this


def schema(
    what: Annotated[
        str, typer.Argument(help="'qa' (the generator's JSON), 'qa-row' (a published qa row) or 'recipe'.")
    ] = "qa",
) -> None:
    """Print the JSON Schema of the QA record or of the recipe."""

    schemas = {"qa": qa_json_schema, "qa-row": lambda: row_json_schema("qa"), "recipe": Recipe.model_json_schema}
    if what not in schemas:
        fail(RecipeError(f"unknown schema {what!r}; choose one of {', '.join(schemas)}"))
    typer.echo(json.dumps(schemas[what](), indent=2))


def layout(
    pdf: Annotated[Path, typer.Argument(help="The PDF to look at.")],
    pages: Annotated[str | None, typer.Option(help="Pages to show, e.g. 3-5 or 1,4-6 (1-based); default all.")] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print {"pages": [{"page": N, "blocks": [{"label", "text", "bbox"}]}]}.'),
    ] = False,
    png: Annotated[
        Path | None, typer.Option(help="Folder for page images with every block outlined in its label's colour.")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="'heuristic' (default) or 'pymupdf-layout' (ONNX model).")
    ] = "heuristic",
) -> None:
    """Show the labelled layout blocks (title, section, paragraph, table, figure, ...) the pipeline sees on pages."""

    if backend not in ("heuristic", "pymupdf-layout"):
        fail(RecipeError(f"--backend {backend!r}: choose 'heuristic' or 'pymupdf-layout'"))
    try:
        doc = layoutview.layout_of(pdf, backend)
        chosen = layoutview.parse_pages(pages, doc.num_pages)
    except RecipeError as exc:
        fail(exc)
    except (RejectedInput, OSError) as exc:
        fail(exc, about=pdf)
    data = layoutview.layout_json(doc, chosen)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=1))
    else:
        _print_layout(data)
    if png is not None:
        try:
            written = layoutview.write_pngs(pdf, doc, chosen, png)
        except LongDocVQAError as exc:
            fail(exc)
        console(stderr=as_json).print(plain(f"wrote {len(written)} page images to {png}"))


def _print_layout(data: dict[str, Any]) -> None:
    """Each page's heading, then one line per block: its label and its text, cut to one line."""
    out = console()
    for page in data["pages"]:
        out.print(plain(f" ({len(page['blocks'])} blocks)", f"page {page['page']}", "bold"))
        for block in page["blocks"]:
            text = block["text"].replace("\n", " ")
            text = text if len(text) <= _BLOCK_CHARS else text[: _BLOCK_CHARS - 3] + "..."
            out.print(plain(f"  {block['label']:<9} {text}"))


COMMANDS: dict[str, Callable[..., None]] = {"schema": schema, "layout": layout}
