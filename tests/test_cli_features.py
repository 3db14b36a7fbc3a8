"""Features through the real CLI (`python -m longdocvqa ...` in a child process, as a user runs it; issue 28).

`inspect` on the demo build, `schema recipe` / `schema qa-row` checked as JSON Schema against a real recipe and a
real row, a failing `validate` (text and `--json`) on a copy with one broken row, a build from tar shards,
`generate.processes: 2` against the loopback OpenAI server, and the ocr-full / ocr-needle tasks end to end.
`push --tag/--public` through the CLI is in tests/test_push.py (with the Hub's failure answers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)
from openai_server import ScriptedOpenAI
from test_pool_shards import _shard
from test_validate import rewrite_rows

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str | Path, timeout_s: int = 900) -> subprocess.CompletedProcess:
    """`python -m longdocvqa ARGS`, offline, from the repository root."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "longdocvqa", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)


def parquet_sha(out: Path, config: str) -> str:
    digest = hashlib.sha256()
    for path in sorted((out / "dataset" / "data" / config).glob("*.parquet")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def rows(out: Path, config: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    paths = sorted((out / "dataset" / "data" / config).glob("*.parquet"))
    return [row for path in paths for row in pq.read_table(path).to_pylist()]


# ---- inspect, schema, validate on the demo build --------------------------------------------------------------


@pytest.mark.slow
def test_inspect_shows_the_builds_stats_drops_and_tokens(demo_build: Path) -> None:
    proc = cli("inspect", demo_build)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((demo_build / "manifest.json").read_text())
    tokens = manifest["stages"]["assemble"]["summary"]
    assert f"tokens: total {tokens['tokens']:,}" in proc.stdout
    for reason, count in manifest.get("drops", {}).items():
        assert f"dropped {reason}: {count}" in proc.stdout
    for stage in ("pool", "layout", "assemble"):
        assert stage in proc.stdout
    same = cli("inspect", demo_build / "dataset")  # the dataset folder names the same run
    assert same.returncode == 0 and same.stdout == proc.stdout


@pytest.mark.slow
def test_schemas_are_json_schema_and_accept_a_real_recipe_and_row(demo_build: Path) -> None:
    import jsonschema

    recipe_schema, row_schema = (json.loads(cli("schema", what).stdout) for what in ("recipe", "qa-row"))
    for schema in (recipe_schema, row_schema):
        jsonschema.Draft202012Validator.check_schema(schema)
    recipe = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    jsonschema.validate(recipe, recipe_schema)
    qa_rows = rows(demo_build, "qa")
    assert qa_rows
    for row in qa_rows:  # the schema describes the published row, every column of it
        assert set(row) == set(row_schema["properties"])
        jsonschema.validate(row, row_schema)
    broken = {**recipe, "assemble": {**recipe["assemble"], "max_tokens": "many"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, recipe_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in qa_rows[0].items() if k != "question"}, row_schema)
    unknown = cli("schema", "nothing")
    assert unknown.returncode == 2 and "unknown schema 'nothing'" in unknown.stderr


@pytest.mark.slow
def test_validate_fails_on_one_broken_row_in_text_and_json(demo_build: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    shutil.copytree(demo_build / "dataset", folder)
    target: dict[str, str] = {}

    def corrupt(qa: list[dict[str, Any]]) -> None:
        qa[0]["evidence_pages"] = [999]
        target["id"] = qa[0]["id"]

    rewrite_rows(folder, "qa", "train", corrupt)
    as_text = cli("validate", folder)
    assert as_text.returncode == 1 and "evidence_page" in as_text.stdout + as_text.stderr
    as_json = cli("validate", folder, "--json")
    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["failure_counts"] == {"evidence_page": 1}
    [failure] = report["failures"]
    assert failure["row"] == target["id"] and "evidence page 999 outside the document" in failure["message"]
    assert cli("validate", demo_build, "--json").returncode == 0  # the untouched build still passes


# ---- builds through the CLI -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_build_from_tar_shards_gives_the_demo_builds_rows(
    write_recipe, pdf_dir: Path, demo_build: Path, tmp_path: Path
) -> None:
    pdfs = sorted(pdf_dir.glob("*.pdf"))
    (tmp_path / "tars").mkdir()
    _shard(tmp_path / "tars" / "pool-000.tar", {p.name: p for p in pdfs[::2]})
    _shard(tmp_path / "tars" / "pool-001.tar", {f"docs/{p.name}": p for p in pdfs[1::2]})
    out = tmp_path / "out"
    proc = cli("build", write_recipe([str(tmp_path / "tars")], render={"dpi": 144}), "--out", out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    for config in ("sft", "qa"):
        assert parquet_sha(out, config) == parquet_sha(demo_build, config), config
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["pool"]["seen"] == len(pdfs)
    assert cli("validate", out).returncode == 0


def _openai_recipe(write_recipe, server: ScriptedOpenAI, pdf_dir: Path, processes: int) -> Path:
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 10.0,
                "max_concurrency": 4}  # fmt: skip
    names = ["R-data.pdf", "etoolbox.pdf", "mathtools.pdf"]
    return write_recipe(
        [str(pdf_dir / n) for n in names],
        decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text", "processes": processes},
    )


@pytest.mark.slow
def test_generate_processes_2_gives_the_one_process_rows(
    server: ScriptedOpenAI, write_recipe, pdf_dir: Path, tmp_path: Path
) -> None:
    one = cli("build", _openai_recipe(write_recipe, server, pdf_dir, 1), "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    calls_one = len(server.bodies)
    two = cli("build", _openai_recipe(write_recipe, server, pdf_dir, 2), "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert calls_one > 0 and len(server.bodies) == 2 * calls_one  # the same calls again, split over 2 processes
    assert sorted(map(json.dumps, server.bodies[calls_one:])) == sorted(map(json.dumps, server.bodies[:calls_one]))
    for config in ("qa", "sft"):
        assert parquet_sha(tmp_path / "two", config) == parquet_sha(tmp_path / "one", config), config
    kept = [
        json.loads((tmp_path / run / "manifest.json").read_text())["stages"]["generate"]["kept"]
        for run in ("one", "two")
    ]
    assert kept[0] == kept[1] > 0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ocr-full", "ocr-needle"])
def test_ocr_tasks_end_to_end(task: str, pdf_dir: Path, tmp_path: Path) -> None:
    recipe = yaml.safe_load((ROOT / "recipes" / f"ablation-ocr-{task.split('-')[1]}.yaml").read_text())
    recipe["pool"] = {"paths": [str(pdf_dir)], "min_pages": 32, "max_pages": 50,
                      "licences": str(pdf_dir / "SOURCES.tsv")}  # fmt: skip
    recipe["decontaminate"] = {"benchmarks": [], "within_pool": False}
    recipe["assemble"].update(min_pixels=3136, max_pixels=50176, min_tokens=1024, max_tokens=32768,
                              budget_tokens=200_000)  # fmt: skip
    recipe["assemble"].pop("tokenizer", None)  # the demo's offline default
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    proc = cli("build", path, "--out", out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    qa = rows(out, "qa")
    assert qa and {row["task"] for row in qa} == {task}
    documents = {d["sha256"]: d for d in rows(out, "documents")}
    for row in qa:
        pages, segment = row["evidence_pages"], range(row["segment_start"], row["segment_end"] + 1)
        assert set(pages) <= set(segment), (pages, segment)
        if task == "ocr-full":
            assert sorted(pages) == list(segment) and len(pages) >= 8  # every page of the segment
        else:
            assert 1 <= len(pages) <= 3
        assert len(row["answer"]) > 100 and row["doc_sha256"] in documents  # real page text, of a published document
    report = json.loads(cli("validate", out, "--json").stdout)
    assert report["ok"] is True, report["failures"]  # an ocr-full target of every page is not held to the QA schema
