"""The package as an installed user meets it: bundled recipes (`longdocvqa recipe ...`, `build NAME`) and the source
PDFs in the `documents` config.

The wheel itself (built, installed into a fresh virtual environment outside the repository, then `recipe new`,
`build` and `validate` there) is checked by scripts/test_wheel.sh, which scripts/test.sh runs before pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from longdocvqa.core import bundled
from longdocvqa.hub.features import features_for
from longdocvqa.hub.publish import Bounds, ShardWriter

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT / "tests" / "data" / "pdfs"
_MB = 1_000_000


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "longdocvqa", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_pyproject_packages_every_folder_and_the_recipes() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "longdocvqa").rglob("__init__.py")}
    assert set(config["packages"]) == folders | {"longdocvqa.prompts", "longdocvqa.recipes"}  # the two data folders
    assert config["package-dir"] == {"longdocvqa.recipes": "recipes"}  # one copy: the repository's recipes/


def test_recipe_list_names_every_bundled_recipe_with_one_line(tmp_path: Path) -> None:
    result = cli("recipe", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    assert [line.split()[0] for line in lines] == expected
    assert "MMProLong final recipe" in next(line for line in lines if line.startswith("mmprolong-128k "))


def test_recipe_show_prints_the_file_with_its_comments(tmp_path: Path) -> None:
    result = cli("recipe", "show", "mmprolong-128k", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == (ROOT / "recipes" / "mmprolong-128k.yaml").read_text()
    missing = cli("recipe", "show", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "demo" in missing.stderr


def test_recipe_new_fills_in_pool_endpoint_and_model_and_never_overwrites(tmp_path: Path) -> None:
    args = ("recipe", "new", "mine", "--pool", str(PDFS), "--base-url", "http://127.0.0.1:9/v1", "--model", "m-7b")
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "mine.yaml").read_text()
    assert "# The MMProLong final recipe" in text  # comments kept
    assert f"paths: [{PDFS}]" in text and "name: mine" in text
    assert "base_url: http://127.0.0.1:9/v1" in text and "base_url_env" not in text and "model: m-7b" in text
    before = (tmp_path / "mine.yaml").read_bytes()
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and again.stderr.count("\n") == 1
    assert (tmp_path / "mine.yaml").read_bytes() == before
    offline = cli("recipe", "new", "x", "--from", "demo", "--model", "m", cwd=tmp_path)
    assert (
        offline.returncode == 2 and "--model does not apply" in offline.stderr and not (tmp_path / "x.yaml").exists()
    )


def test_a_starter_from_the_demo_builds_from_another_folder(tmp_path: Path) -> None:
    """`recipe new --from demo` anchors the demo's relative licence file, so the copy builds anywhere."""
    assert cli("recipe", "new", "mine", "--from", "demo", "--pool", str(PDFS), cwd=tmp_path).returncode == 0
    assert f"licences: {PDFS / 'SOURCES.tsv'}" in (tmp_path / "mine.yaml").read_text()
    loaded = bundled.load(tmp_path / "mine.yaml")
    assert loaded.pool.paths == [str(PDFS)] and loaded.name == "mine"


@pytest.mark.slow
def test_build_takes_a_bundled_name_and_a_file_of_that_name_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, is_bundled = bundled.locate("demo")
    assert is_bundled and path == ROOT / "recipes" / "demo.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("name: x\n")
    assert bundled.locate("demo") == (Path("demo"), False)
    unknown = cli("build", "no-such-recipe", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "recipe list" in unknown.stderr


def test_a_bundled_recipe_without_its_pdfs_says_where_to_get_them(tmp_path: Path) -> None:
    """What an installed wheel meets: the bundled demo's PDFs ship only with the repository."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    shutil.copy(ROOT / "recipes" / "demo.yaml", folder / "demo.yaml")
    code = (
        "import sys; from pathlib import Path; from longdocvqa.core import bundled; "
        f"bundled.bundled_dir = lambda: Path({str(folder)!r}); "
        "from longdocvqa.cli import main; sys.argv = ['longdocvqa', 'build', 'demo']; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert "tests/data/pdfs" in result.stderr and "recipe new" in result.stderr


@pytest.mark.slow
def test_documents_config_embeds_each_pdf_decodably(demo_build: Path) -> None:
    import pyarrow.parquet as pq
    from datasets import load_dataset

    dataset = demo_build / "dataset"
    rows = load_dataset(str(dataset), "documents", split="train")
    assert len(rows) == 8
    first = rows[0]
    assert len(first["pdf"].pages) == first["num_pages"]  # decoded (pdfplumber, the test extra's decoder)
    for row in pq.read_table(next((dataset / "data" / "documents").glob("*.parquet"))).to_pylist():
        assert hashlib.sha256(row["pdf"]["bytes"]).hexdigest() == row["sha256"]
        assert row["pdf"]["path"] == row["file_name"]  # a file name, never a local path
    card = (dataset / "README.md").read_text()
    assert "the source PDF itself" in card


@pytest.mark.slow
def test_validate_fails_on_one_changed_pdf_byte(demo_build: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    copy = tmp_path / "dataset"
    shutil.copytree(demo_build / "dataset", copy)
    shard = next((copy / "data" / "documents").glob("*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    data = bytearray(rows[0]["pdf"]["bytes"])
    data[len(data) // 2] ^= 0x01
    rows[0]["pdf"]["bytes"] = bytes(data)
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), shard)
    result = cli("validate", str(copy), cwd=tmp_path)
    assert result.returncode == 1 and "pdf_mismatch" in result.stdout + result.stderr
    assert cli("validate", str(demo_build / "dataset"), cwd=tmp_path).returncode == 0


@pytest.mark.slow
def test_row_groups_are_bounded_by_bytes(demo_build: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    for shard in (demo_build / "dataset" / "data").rglob("*.parquet"):
        meta = pq.ParquetFile(shard).metadata
        assert all(meta.row_group(i).total_byte_size <= 100 * _MB for i in range(meta.num_row_groups)), shard
    writer = ShardWriter(tmp_path, "train", features_for("documents"), Bounds(10**9, 100, 2 * _MB))
    blob = os.urandom(_MB)  # incompressible: one row is about 1 MB on disk
    row = {"sha256": "0" * 64, "file_name": "x.pdf", "num_pages": 1, "page_sizes_pt": [[1.0, 1.0]], "size_bytes": 1}
    row |= {"title": "", "producer": "", "licence": None, "source": None, "pdf": {"bytes": blob, "path": "x.pdf"}}
    for _ in range(7):
        writer.add(row, _MB)
    (path,) = writer.close()
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1, 1, 1, 1, 1, 1, 1]
    assert all(meta.row_group(i).total_byte_size <= 2 * _MB for i in range(meta.num_row_groups))


@pytest.mark.slow
def test_include_pdf_false_leaves_the_column_null(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from longdocvqa.core.recipe import load_recipe
    from longdocvqa.pipeline import build

    recipe = load_recipe(ROOT / "recipes" / "demo.yaml")
    recipe.publish.include_pdf = False
    recipe.assemble.budget_tokens = 6000
    build(recipe, tmp_path / "out", workers=1)
    rows = pq.read_table(next((tmp_path / "out" / "dataset" / "data" / "documents").glob("*.parquet"))).to_pylist()
    assert rows and all(row["pdf"] is None for row in rows)
    assert "does not redistribute the PDF files" in (tmp_path / "out" / "dataset" / "README.md").read_text()
