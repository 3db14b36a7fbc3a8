"""What the commands print, and the one way they stop on an error.

Owns: the consoles (Rich, markup and emoji off: paths, PDF titles and server replies are data, so `[/b]` or `:x:`
in a name is printed as is), text from outside made plain (`plain`: escaped with core/safetext.printable, never
parsed as markup), `fail` (every error of every command: one `error: ...` line on stderr, then the exit code), and
the build summary table that `build` and `inspect` share.
Does not own: the commands (the other modules of this package) or what the library computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from longdocvqa.core.errors import LongDocVQAError
from longdocvqa.core.safetext import printable
from longdocvqa.pipeline import STAGE_ORDER

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def console(stderr: bool = False) -> Console:
    """A console that prints text as it is: no markup, no emoji codes, no highlighting of numbers and paths."""
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


def plain(text: object, label: str = "", style: str = "bold red", keep_newlines: bool = False) -> Text:
    """`label` (in `style`) + `text` as Rich Text: never parsed as markup, control characters escaped."""
    from rich.text import Text

    return Text.assemble((label, style), printable(text, keep_newlines=keep_newlines))


def exit_code(error: BaseException) -> int:
    """0 success, 1 build or external failure, 2 bad recipe or usage (docs/design.md §3): an error of ours carries
    its code (RecipeError: 2); anything else (a file that cannot be read) is a failure, 1."""
    return error.exit_code if isinstance(error, LongDocVQAError) else 1


def fail(error: BaseException, about: str | Path | None = None) -> NoReturn:
    """Print `error` as one line, `error: [ABOUT: ]MESSAGE`, on stderr, and exit with its code (`exit_code`).

    The message is escaped and never read as markup. A recipe with several problems is the one exception to one
    line: its first line names the file, then one line per problem, as load_recipe words them."""
    message = f"{about}: {error}" if about is not None else str(error)
    console(stderr=True).print(plain(message, "error: ", keep_newlines=True))
    raise typer.Exit(exit_code(error)) from None


def summary(manifest: dict[str, Any], out_dir: Path) -> None:
    """The build's table (one row per stage, in pipeline order), its counts and where its files are."""
    from rich.table import Table

    table = Table(title=plain(f"{manifest['name']} {manifest['version']} -> {out_dir}"))
    for column in ("stage", "seen", "kept", "reused", "dropped (by reason)", "seconds"):
        table.add_column(column, justify="left" if column in ("stage", "dropped (by reason)") else "right")
    for name, stage in in_pipeline_order(manifest["stages"]):
        drops = ", ".join(f"{k}: {v}" for k, v in stage["dropped"].items()) or "-"
        table.add_row(
            name, str(stage["seen"]), str(stage["kept"]), str(stage["reused"]), drops, f"{stage['seconds']:.2f}"
        )
    out = console()
    out.print(table)
    pages = manifest["stages"].get("pool", {}).get("pages", 0)
    counts = f"documents {manifest['documents']} ({pages} pages), segments {manifest['segments']}"
    out.print(f"{counts}, examples {manifest.get('examples', 0)}, {manifest['seconds']:.1f} s")
    out.print(plain(f"rejects: {out_dir / 'rejects.jsonl'}; dataset: {out_dir / 'dataset'}"))


def in_pipeline_order(stages: dict[str, Any]) -> list[tuple[str, Any]]:
    """Stages as the pipeline runs them (the manifest's JSON keys are sorted); unknown stages last, by name."""

    def rank(name: str) -> tuple[int, str]:
        return (STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER), name)

    return sorted(stages.items(), key=lambda item: rank(item[0]))
