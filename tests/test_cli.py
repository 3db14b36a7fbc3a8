"""The command line: every command has --help, start-up imports nothing heavy, exit codes follow docs/design.md."""

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


@pytest.mark.slow
def test_all_contract_commands_exist() -> None:
    assert {"build", "validate", "push", "inspect", "schema"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None) -> None:
    result = runner.invoke(app, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output) > 200


def test_startup_imports_nothing_heavy() -> None:
    heavy = "('pymupdf', 'datasets', 'torch', 'openai', 'transformers', 'ray')"
    code = f"import sys, longdocvqa.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_schema_prints_the_qa_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    assert set(schema["required"]) == {"question", "answer", "answer_format", "evidence_pages", "evidence_sources"}


@pytest.mark.slow
def test_bad_recipe_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nversion: 0.1.0\npool: {paths: [.], colour: red}\n")
    result = runner.invoke(app, ["build", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "pool.colour: unknown key" in result.output


@pytest.mark.slow
def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "longdocvqa", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "build" in out.stdout


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_value_type_for_flags(command: str | None) -> None:
    result = runner.invoke(app, [command, "--help"] if command else ["--help"], terminal_width=120)
    assert result.exit_code == 0 and "<bool>" not in result.output, result.output


def test_inspect_lists_stages_in_pipeline_order_and_takes_the_dataset_folder(tmp_path: Path) -> None:
    from longdocvqa.core.store import atomic_write_json
    from longdocvqa.pipeline import STAGE_ORDER

    stage = {"seen": 1, "kept": 1, "reused": 0, "dropped": {}, "seconds": 0.1}
    manifest = {"name": "demo", "version": "0.1.0", "documents": 1, "segments": 1, "examples": 1, "seconds": 1.0,
                "stages": {name: stage for name in STAGE_ORDER}, "drops": {},
                "cumulative": {"runs": 2, "first_started_at": "2026-01-01T00:00:00+00:00", "seconds": 3.5,
                               "stage_seconds": {}, "calls": {"calls": 7, "cost_usd": 0.25}}}  # fmt: skip
    atomic_write_json(tmp_path / "manifest.json", manifest)  # as the pipeline writes it: keys sorted
    (tmp_path / "dataset").mkdir()
    for target in (tmp_path, tmp_path / "dataset"):
        result = runner.invoke(app, ["inspect", str(target)], terminal_width=200)
        assert result.exit_code == 0, result.output
        rows = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ")]
        assert rows == list(STAGE_ORDER)
        assert "history: 2 builds since 2026-01-01T00:00:00+00:00" in result.output and "cost $0.2500" in result.output


@pytest.mark.slow
def test_executor_ray_without_ray_installed_exits_2_naming_the_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    demo = str(ROOT / "recipes" / "demo.yaml")
    result = runner.invoke(app, ["build", demo, "--out", str(tmp_path / "o"), "--executor", "ray"])
    assert result.exit_code == 2 and "pip install 'longdocvqa[ray]'" in result.output, result.output
    unknown = runner.invoke(app, ["build", demo, "--out", str(tmp_path / "o"), "--executor", "slurm"])
    assert unknown.exit_code == 2 and "'slurm' is not one of 'local', 'ray'" in unknown.output, unknown.output
