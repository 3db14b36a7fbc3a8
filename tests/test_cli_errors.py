"""Every command stops on an error the same way: one `error: ...` line on stderr, nothing on stdout, the exit code of
docs/design.md §3 (1 failure, 2 usage), and no Rich markup printed literally (`[bold red]error:[/]`), on the error
paths and in the `layout` command's listing. Names from outside are printed as they are, escaped, never as markup.

Real commands in this process (Typer's CliRunner, stdout and stderr apart) on real PDFs and real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longdocvqa.cli import app

ROOT = Path(__file__).resolve().parents[1]
PDF = ROOT / "tests" / "data" / "pdfs" / "R-data.pdf"
runner = CliRunner()
MARKUP = ("[/", "[bold", "[red", "[yellow")
EVAL = ["eval", "some/dataset", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out"]


def _run(args: list[str]) -> tuple[int, str, str]:
    result = runner.invoke(app, args, terminal_width=100)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def _cases(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    """{case: (arguments, exit code, what the error line says)}."""
    not_pdf = tmp / "notes.pdf"
    not_pdf.write_text("plain text, no PDF header")
    return {
        "build: no recipe file": (["build", str(tmp / "none.yaml")], 2, f"{tmp / 'none.yaml'}: recipe file not found"),
        "build: unknown executor": (
            ["build", str(ROOT / "recipes" / "demo.yaml"), "--executor", "slurm", "--out", str(tmp / "o")],
            2,
            "--executor: 'slurm' is not one of 'local', 'ray'",
        ),
        "inspect: no run directory": (["inspect", str(tmp)], 2, f"{tmp / 'manifest.json'}: no manifest"),
        "schema: unknown": (["schema", "nope"], 2, "unknown schema 'nope'; choose one of qa, qa-row, recipe"),
        "layout: no file": (["layout", str(tmp / "gone.pdf")], 1, f"{tmp / 'gone.pdf'}: "),
        "layout: not a PDF": (["layout", str(not_pdf)], 1, f"{not_pdf}: not_pdf: no %PDF header"),
        "layout: page out of range": (["layout", str(PDF), "--pages", "99"], 2, "'99' is outside pages 1-"),
        "layout: unknown backend": (["layout", str(PDF), "--backend", "ocr"], 2, "--backend 'ocr': choose"),
        "eval: bad lengths": ([*EVAL, str(tmp / "e"), "--lengths", "32k"], 2, "--lengths: '32k' is not a token count"),
        "eval: judge half given": (
            [*EVAL, str(tmp / "e"), "--judge-model", "j"],
            2,
            "give both --judge-base-url and --judge-model",
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    ["build: no recipe file", "build: unknown executor", "inspect: no run directory", "schema: unknown",
     "layout: no file", "layout: not a PDF", "layout: page out of range", "layout: unknown backend",
     "eval: bad lengths", "eval: judge half given"],
)  # fmt: skip
def test_an_error_is_one_line_on_stderr_with_its_exit_code(case: str, tmp_path: Path) -> None:
    args, code, says = _cases(tmp_path)[case]
    exit_code, stdout, stderr = _run(args)
    assert exit_code == code, stderr
    assert stdout == ""
    (line,) = [line for line in stderr.splitlines() if line.strip()]
    assert line.startswith("error: ") and says in line, line
    assert not any(mark in stderr for mark in MARKUP), stderr


def test_eval_settings_out_of_range_are_a_usage_error_naming_each_option(tmp_path: Path) -> None:
    exit_code, stdout, stderr = _run([*EVAL, str(tmp_path / "e"), "--dpi", "0", "--seed", "-1"])
    assert exit_code == 2 and stdout == ""
    (line,) = [line for line in stderr.splitlines() if line.strip()]
    assert line.startswith("error: --dpi: ") and "; --seed: " in line, stderr
    assert "https://errors.pydantic.dev" not in stderr and not any(mark in stderr for mark in MARKUP)


def test_a_name_with_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "[bold]bad["  # the file's path reads `.../[bold]bad[/b]x...`: Rich markup, if parsed
    folder.mkdir()
    named = folder / "b]x\x1b[31m.pdf"
    named.write_text("no PDF here")
    exit_code, stdout, stderr = _run(["layout", str(named)])
    assert exit_code == 1 and stdout == ""
    (line,) = [line for line in stderr.splitlines() if line.strip()]
    assert line == f"error: {folder}/b]x\\x1b[31m.pdf: not_pdf: no %PDF header in the first 1 KiB"


def test_the_layout_listing_prints_no_markup(tmp_path: Path) -> None:
    exit_code, stdout, stderr = _run(["layout", str(PDF), "--pages", "1-3", "--png", str(tmp_path)])
    assert exit_code == 0, stderr
    pages = [line for line in stdout.splitlines() if line.startswith("page ")]
    assert [line.split(" (")[0] for line in pages] == ["page 1", "page 2", "page 3"]
    assert all(line.endswith(" blocks)") for line in pages), pages
    assert "  title     R Data Import/Export" in stdout.splitlines()
    assert stdout.splitlines()[-1] == f"wrote 3 page images to {tmp_path}" and stderr == ""
    assert not any(mark in stdout + stderr for mark in MARKUP), stdout


def test_the_layout_json_is_the_documents_blocks() -> None:
    exit_code, stdout, _ = _run(["layout", str(PDF), "--pages", "1", "--json"])
    assert exit_code == 0
    (page,) = json.loads(stdout)["pages"]
    first = page["blocks"][0]
    assert page["page"] == 1 and (first["label"], first["text"]) == ("title", "R Data Import/Export")


@pytest.mark.slow
def test_no_resume_with_a_bad_recipe_clears_nothing(write_recipe, pdf_dir: Path, tmp_path: Path) -> None:
    """--no-resume clears finished stages only once the recipe's prompts and files check out."""
    openai = {"kind": "openai", "endpoint": {"base_url": "http://127.0.0.1:9/v1"}}
    recipe = write_recipe([str(pdf_dir / "R-data.pdf")], generate={"prompt_version": "v9", "generator": openai})
    kept = tmp_path / "out" / "stages" / "layout" / "done.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    exit_code, stdout, stderr = _run(["build", str(recipe), "--out", str(tmp_path / "out"), "--no-resume"])
    assert exit_code == 2 and stdout == "", stderr
    assert "no prompt file 'qa_v9.md'" in stderr and kept.is_file()
