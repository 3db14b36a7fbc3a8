"""The command line: every command has --help, start-up imports nothing heavy, exit codes follow DESIGN.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longdocvqa.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
COMMANDS = sorted(cmd.name or cmd.callback.__name__ for cmd in app.registered_commands)


def test_all_contract_commands_exist() -> None:
    assert {"build", "validate", "push", "inspect", "schema"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None) -> None:
    result = runner.invoke(app, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output) > 200


def test_startup_imports_nothing_heavy() -> None:
    heavy = "('pymupdf', 'datasets', 'torch', 'openai', 'transformers')"
    code = f"import sys, longdocvqa.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_schema_prints_the_qa_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    assert set(schema["required"]) == {"question", "answer", "answer_format", "evidence_pages", "evidence_sources"}


def test_bad_recipe_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nversion: 0.1.0\npool: {paths: [.], colour: red}\n")
    result = runner.invoke(app, ["build", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "pool.colour: unknown key" in result.output


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "longdocvqa", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "build" in out.stdout
