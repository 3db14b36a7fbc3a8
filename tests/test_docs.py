"""The repository is self-contained: every document the code cites is in docs/, and the top-level cli.py runs.

Citations take the form `docs/design.md §3` or `docs/research/infra.md §4`; a citation of a file outside the
repository (the bare design file or research folder the project started from) fails here with the fix.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("longdocvqa", "train", "bench", "scripts", "tests", "recipes", "README.md", "cli.py")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".json"}
CITED = re.compile(r"docs/[A-Za-z0-9_./-]*[A-Za-z0-9_]\.(?:md|png|json|yaml)")
# a design or research file cited without its docs/ folder
OUTSIDE = re.compile(
    r"(?<![\w/])(?:" + "DESIGN" + r"\.md|research/\w+\.md|(?:paper|infra|training|anchors|aesthetics)\.md)"
)


def _files() -> list[Path]:
    out = []
    for name in SCANNED:
        path = ROOT / name
        found = [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in SUFFIXES]
        out += [p for p in found if "__pycache__" not in p.parts and p != Path(__file__).resolve()]
    return sorted(out)


def test_every_cited_doc_exists() -> None:
    cited = {
        (path.relative_to(ROOT).as_posix(), match)
        for path in _files()
        for match in CITED.findall(path.read_text(encoding="utf-8", errors="replace"))
    }
    assert {match for _, match in cited} >= {"docs/design.md", "docs/research/infra.md"}  # the scan finds them
    missing = sorted((where, match) for where, match in cited if not (ROOT / match).exists())
    assert missing == [], f"cited but not in the repository (add the file under docs/ or drop the citation): {missing}"


def test_no_citation_points_outside_the_repository() -> None:
    outside = [
        f"{path.relative_to(ROOT)}: {match}"
        for path in _files()
        for match in OUTSIDE.findall(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert outside == [], f"cite the copies under docs/ (docs/design.md, docs/research/...): {outside}"


def test_top_level_cli_is_an_entry_point(tmp_path: Path) -> None:
    run = [sys.executable, str(ROOT / "cli.py")]
    help_text = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert all(command in help_text for command in ("build", "validate", "push", "inspect", "eval"))
    out = tmp_path / "run"
    plan = subprocess.run(
        [*run, "build", str(ROOT / "recipes" / "demo.yaml"), "--out", str(out), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert plan.returncode == 0, plan.stderr
    assert "pool documents" in plan.stdout and not out.exists()  # the plan is printed, nothing is built
