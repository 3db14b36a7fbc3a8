"""What `longdocvqa audit` does: draw the sample and serve the page, or print and save the report.

The CLI passes a `say` callback for the lines a person reads (the URL, the report), so this module prints nothing
itself. Does not own: the flags and exit codes (cli.py).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longdocvqa.audit.app import Session, build_app
from longdocvqa.audit.report import report_lines, save_summary, summarize
from longdocvqa.audit.sample import DEFAULT_SAMPLE, Run, draw, find_run, read_documents, read_qa
from longdocvqa.audit.store import FILE_NAME, read_verdicts
from longdocvqa.core.errors import LongDocVQAError, RecipeError
from longdocvqa.core.store import atomic_write_json

SAMPLE_FILE = "sample.json"
Say = Callable[[str], None]


class AuditUnavailable(LongDocVQAError):
    """The `audit` extra (Starlette, uvicorn) is not installed: install it and run again (exit 2)."""

    exit_code = 2


@dataclass
class AuditOptions:
    """The command's flags."""

    out: Path
    sample: int = DEFAULT_SAMPLE
    seed: int = 0
    tasks: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8765
    auditor: str | None = None


def prepare(options: AuditOptions) -> Session:
    """Draw the sample of `options.out` and record how (OUT/audit/sample.json)."""
    run = find_run(options.out)
    sample = draw(read_qa(run), options.sample, options.seed, options.tasks or None)
    atomic_write_json(run.audit_dir / SAMPLE_FILE, sample.describe())
    return Session(run, sample, read_documents(run), options.auditor)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(options: AuditOptions, say: Say) -> None:
    """Serve the audit page until Ctrl-C; the URL (with the token on a non-loopback host) is said once."""
    try:
        import uvicorn
    except ImportError:
        raise AuditUnavailable("the audit page needs the 'audit' extra: pip install 'longdocvqa[audit]'") from None
    session = prepare(options)
    loopback = is_loopback(options.host)
    token = None if loopback else secrets.token_urlsafe(24)
    app = build_app(session, token=token, loopback=loopback)
    sock = _bind(options.host, options.port)
    port = sock.getsockname()[1]
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    say(f"auditing {len(session.sample.rows)} of {session.sample.population} published QA "
        f"(seed {options.seed}); verdicts go to {session.verdicts_path}")  # fmt: skip
    say(f"open http://{shown_host}:{port}/" + (f"?token={token}" if token else "") + "  (Ctrl-C to stop)")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port) (port 0: any free port); RecipeError naming the cause when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise RecipeError(f"--host {host} --port {port}: cannot listen there: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def report(out: Path, say: Say) -> dict[str, Any]:
    """Print the accuracy per task and overall (95% Wilson intervals) and save it to the manifest and the card."""
    run = find_run(out)
    verdicts = read_verdicts(run.audit_dir / FILE_NAME)
    if not verdicts:
        raise RecipeError(f"{run.audit_dir / FILE_NAME}: no verdicts yet; run `longdocvqa audit {out}` first")
    summary = summarize(verdicts, {row["id"]: row["task"] for row in read_qa(run)}, _sample_info(run))
    for line in report_lines(summary):
        say(line)
    for path in save_summary(run, summary):
        say(f"wrote {path}")
    return summary


def _sample_info(run: Run) -> dict[str, Any] | None:

    try:
        data = json.loads((run.audit_dir / SAMPLE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
