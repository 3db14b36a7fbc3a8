"""The `longdocvqa` command line: the only place that prints or exits.

Commands stay thin: parse flags, call the library, render results, and stop on an error through output.fail (one
`error: ...` line on stderr; exit 0 success, 1 build or external failure, 2 bad recipe or usage). Heavy libraries
are imported inside the commands, so `longdocvqa --help` is instant.

One module per group of commands, each listing its commands in `COMMANDS` ({name: function}); this module makes
the Typer `app` and registers them in `GROUPS` order. To add a command: write it in a module of this package (or
in a new one, added to `GROUPS`), with its flags as `Annotated` parameters and its help as its docstring.

    build.py     build (and --dry-run's plan)
    dataset.py   validate, push, inspect
    tools.py     schema, layout
    evaluate.py  eval
    recipes.py   recipe list, recipe show, recipe new (a Typer of sub-commands, in `TYPERS`)
    audit.py     audit (the hand audit's page and --report)
    output.py    consoles, plain text, the error function `fail`, the build summary table
"""

from __future__ import annotations

from typing import Any

import typer

from longdocvqa.cli import audit, build, dataset, evaluate, recipes, tools

GROUPS = (build, dataset, tools, evaluate, recipes, audit)

app = typer.Typer(
    name="longdocvqa",
    help="Build long-document VQA datasets for long-context training of vision-language models "
    "(PDF pool -> pages -> layout -> segments -> QA -> full-document examples -> Hub dataset). "
    "Exit codes: 0 success, 1 build or external failure, 2 bad recipe or usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _hide_flag_types() -> None:
    """Show no `<bool>` beside on/off flags (--dry-run, --resume/--no-resume, --help) in the Rich help: recent Typer
    prints a value type for every option, though a flag takes no value."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "_hides_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._hides_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_hide_flag_types()
for _group in GROUPS:
    for _name, _command in _group.COMMANDS.items():
        app.command(_name)(_command)
    for _name, _typer in getattr(_group, "TYPERS", {}).items():  # commands with sub-commands (`recipe list`)
        app.add_typer(_typer, name=_name)


def main() -> None:
    """The console script `longdocvqa` (and `python -m longdocvqa`)."""
    app()


__all__ = ["app", "main"]
