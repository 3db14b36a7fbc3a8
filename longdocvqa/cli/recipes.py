"""`longdocvqa recipe list|show|new`: the recipes bundled with the package (core/bundled.py).

Owns: the three sub-commands' flags and what they print. Does not own: where the bundled recipes live, finding one
by name, or writing a starter (core/bundled.py), nor `build NAME` (build.py, through `bundled.load`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from longdocvqa.cli.output import console, fail, plain
from longdocvqa.core import bundled
from longdocvqa.core.errors import LongDocVQAError

recipe_app = typer.Typer(
    help="The recipes bundled with the package: list them, print one, or start your own from one.",
    no_args_is_help=True,
)


@recipe_app.command("list")
def recipe_list() -> None:
    """Name every bundled recipe, with one line each (build one with `longdocvqa build NAME`)."""
    out = console()
    for name in bundled.bundled_names():
        out.print(plain(bundled.summary(name), f"{name:<32} ", "bold"), highlight=False, soft_wrap=True)


@recipe_app.command("show")
def recipe_show(
    name: Annotated[str, typer.Argument(help="A bundled recipe's name (longdocvqa recipe list).")],
) -> None:
    """Print a bundled recipe, comments included."""
    try:
        typer.echo(bundled.bundled_path(name).read_text(encoding="utf-8"), nl=False)
    except LongDocVQAError as exc:
        fail(exc)


@recipe_app.command("new")
def recipe_new(
    name: Annotated[str, typer.Argument(help="Name of the new recipe: writes NAME.yaml into the current folder.")],
    source: Annotated[str, typer.Option("--from", help="The bundled recipe to start from.")] = "mmprolong-128k",
    pool: Annotated[str | None, typer.Option(help="Your PDFs: a folder, glob, .txt list or URL.")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Your OpenAI-compatible endpoint, e.g. http://host:8000/v1.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="The model name the endpoint serves.")] = None,
) -> None:
    """Write a starter recipe, ready to edit, from a bundled one; never overwrites a file."""
    dest = Path(name if name.endswith(bundled.SUFFIX) else f"{name}{bundled.SUFFIX}")
    try:
        text = bundled.starter(source, dataset_name=dest.stem, pool=pool, base_url=base_url, model=model)
        bundled.write_new(dest, text)
    except LongDocVQAError as exc:
        fail(exc)
    console().print(plain(f"{dest}: edit it, then `longdocvqa build {dest}`", "wrote ", "bold"), highlight=False)


COMMANDS: dict[str, object] = {}
TYPERS = {"recipe": recipe_app}
