"""Reading a run's manifest.json for display (`longdocvqa inspect`): parsed and checked against the fields shown.

A manifest that does not parse, or lacks or mistypes a field `inspect` prints, is one StageError naming the file
and the first problem, never a traceback. Extra fields are kept (the manifest grows). Writing the manifest is the
pipeline's (pipeline.py, core/store.py); this module only reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from longdocvqa.core.errors import StageError

MAX_MANIFEST_BYTES = 64_000_000


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _TaskSummary(_Open):
    examples: int = 0
    tokens: int = 0


class _Summary(_Open):
    examples: int = 0
    tokens: int = 0
    mean_tokens: float = 0.0
    min_tokens: int = 0
    max_tokens: int = 0
    share_ge_100k: float = 0.0
    mean_pages: float = 0.0
    per_task: dict[str, _TaskSummary] = {}


class _Stage(_Open):
    seen: int
    kept: int
    reused: int = 0
    dropped: dict[str, int] = {}
    seconds: float = 0.0
    pages: int = 0
    summary: _Summary | None = None


class _Calls(_Open):
    calls: int = 0
    cost_usd: float | None = None


class _Cumulative(_Open):
    runs: int
    first_started_at: str
    seconds: float
    calls: _Calls | None = None


class _Manifest(_Open):
    name: str
    version: str
    documents: int
    segments: int
    seconds: float
    examples: int = 0
    stages: dict[str, _Stage]
    drops: dict[str, int] = {}
    cumulative: _Cumulative | None = None


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path` as a dict; StageError (exit 1) with one line when it is not a manifest of this tool."""
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise StageError(f"{path}: {path.stat().st_size:,} bytes, too large for a run manifest")
        data = json.loads(path.read_bytes())
        _Manifest.model_validate(data)
    except OSError as exc:
        raise StageError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSON errors and pydantic's ValidationError
        raise StageError(f"{path}: not a run manifest of longdocvqa: {_first_problem(exc)}") from None
    return dict(data)


def _first_problem(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        return f"{where}: {err['msg']}"
    return " ".join(str(exc).split())
