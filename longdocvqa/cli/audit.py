"""`audit`: the hand audit of published QA in the browser, and its report.

Owns: the command's flags and what it prints. Does not own: the sample, the verdict file, the report or the page
(longdocvqa/audit/).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from longdocvqa.audit import command as audit_command
from longdocvqa.cli.output import console, fail, plain
from longdocvqa.core.errors import LongDocVQAError


def audit(
    out_dir: Annotated[Path, typer.Argument(help="A build's run directory (or its dataset/ folder).")],
    sample: Annotated[int, typer.Option(help="QA to sample, stratified by task.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the sample (the same seed gives the same QA).")] = 0,
    task: Annotated[list[str] | None, typer.Option(help="Audit only this task (repeatable).")] = None,
    port: Annotated[int, typer.Option(help="Port of the page (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to serve on; not loopback: a token is printed in the URL.")] = (
        "127.0.0.1"
    ),
    auditor: Annotated[str | None, typer.Option(help="Name recorded with each verdict.")] = None,
    report: Annotated[bool, typer.Option("--report", help="Print accuracy with 95% Wilson CIs, save it.")] = False,
) -> None:
    """Hand-audit a sample of the published QA in the browser (verdicts: OUT/audit/verdicts.jsonl)."""
    options = audit_command.AuditOptions(out_dir, sample, seed, task or [], host, port, auditor)
    try:
        if report:
            audit_command.report(out_dir, _say())
        else:
            audit_command.serve(options, _say())
    except LongDocVQAError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass  # Ctrl-C stops the server; every verdict given is already on disk


def _say() -> Callable[[str], Any]:
    out = console()
    return lambda line: out.print(plain(line, style=""))


COMMANDS = {"audit": audit}
