"""What a build publishes and keeps: nothing private in the dataset folder, licences in every row, a card that says
only what ran, and a history of every build (OUT/runs.jsonl, cumulative totals in the manifest)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)
from test_charts import data_under_legend

from longdocvqa.core.contract import passed_checks, source_of
from longdocvqa.core.history import MASK, masked_argv
from longdocvqa.core.recipe import load_recipe
from longdocvqa.core.records import PdfDoc
from longdocvqa.hub.card import split_card
from longdocvqa.hub.redact import pool_root, public_path, public_recipe
from longdocvqa.hub.validate import validate_dataset
from longdocvqa.pipeline import build

ROOT = Path(__file__).resolve().parents[1]
MARKER = "secret-marker-XYZ"
# A fake API key, key-shaped on purpose (core/history.py redacts the sk-... form): it must appear nowhere the
# build writes.
KEY = "sk-marker0123456789abcdefghij"


def _rows(dataset: Path, config: str) -> list[dict]:
    """Every row of a config, images left out (read with pyarrow: what is stored, not what a loader makes of it)."""
    rows = []
    for shard in sorted((dataset / "data" / config).glob("*.parquet")):
        table = pq.read_table(shard)
        rows += table.drop_columns([c for c in table.column_names if c == "images"]).to_pylist()
    return rows


def _private_build(server, write_recipe, pdf_dir: Path, tmp_path: Path, monkeypatch) -> tuple[Path, list[str]]:
    """A build from a pool under a marker path, endpoints from the environment and the recipe; returns (run
    directory, the strings that must not be published)."""
    private = tmp_path / MARKER
    (private / "pool").mkdir(parents=True)
    for name in ("R-data.pdf", "etoolbox.pdf"):
        shutil.copy(pdf_dir / name, private / "pool" / name)
    shutil.copy(pdf_dir / "SOURCES.tsv", private / "SOURCES.tsv")
    monkeypatch.setenv("MARKER_BASE_URL", server.base_url)
    monkeypatch.setenv("MARKER_API_KEY", KEY)
    endpoint = {
        "base_url_env": "MARKER_BASE_URL",
        "api_key_env": "MARKER_API_KEY",
        "model": "scripted",
        "timeout_s": 5.0,
        "max_retries": 1,
        "price_input_per_mtok": 1.0,
        "price_output_per_mtok": 2.0,
    }
    verifier = {
        "base_url": server.base_url,
        "api_key_env": "MARKER_API_KEY",
        "model": "scripted-verifier",
        "timeout_s": 5.0,
        "max_retries": 1,
    }
    recipe = load_recipe(write_recipe(
        [str(private / "pool")], pool={"licences": str(private / "SOURCES.tsv")},
        decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text",
                  "verify": {"enabled": True, "endpoint": verifier}},
    ))  # fmt: skip
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1)
    assert manifest["examples"] > 0
    host = urlparse(server.base_url).netloc  # 127.0.0.1:PORT
    return out, [MARKER, str(private), host, "MARKER_BASE_URL", "MARKER_API_KEY", KEY]


@pytest.mark.slow
def test_published_folder_holds_no_private_path_endpoint_or_env(server, write_recipe, pdf_dir, tmp_path, monkeypatch):
    out, private = _private_build(server, write_recipe, pdf_dir, tmp_path, monkeypatch)
    dataset = out / "dataset"
    files = [p for p in dataset.rglob("*") if p.is_file()]
    assert {"README.md", "LICENSE.md"} <= {p.name for p in files}
    for path in files:  # the bytes of every file, and the decoded rows (Parquet pages may be compressed)
        data = path.read_bytes()
        for secret in private:
            assert secret.encode() not in data, (secret, path)
    embedded = lambda o: o.decode("latin-1") if isinstance(o, bytes) else str(o)  # noqa: E731  (the documents' PDFs)
    decoded = json.dumps([_rows(dataset, c) for c in ("sft", "qa", "documents")], default=embedded)
    assert not [secret for secret in private if secret in decoded]
    card = (dataset / "README.md").read_text()
    assert "- <pool>" in card and "licences: <local>/SOURCES.tsv" in card
    assert "base_url: <redacted>" in card and "base_url_env: <redacted>" in card and "api_key_env: <redacted>" in card
    assert "Verification: on, answerability checked by `scripted-verifier`" in card
    assert "Generator: `scripted`" in card and "Prompt version: `v1`" in card
    for kept in ("manifest.json", "runs.jsonl", "rejects.jsonl"):  # local files: no key either
        assert KEY not in (out / kept).read_text(), kept


@pytest.mark.slow
def test_history_keeps_every_build_and_the_cost_of_the_first(
    server, write_recipe, pdf_dir, tmp_path, monkeypatch
) -> None:
    out, _ = _private_build(server, write_recipe, pdf_dir, tmp_path, monkeypatch)
    first = json.loads((out / "manifest.json").read_text())
    sent = server.requests
    second = build(load_recipe(out / "recipe.lock.yaml"), out, workers=1)
    assert server.requests == sent  # everything replayed or reused
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 2
    for run in runs:
        assert {"started_at", "finished_at", "argv", "versions", "tokenizer_source", "stage_seconds", "calls"} <= set(
            run
        )
        assert run["started_at"] <= run["finished_at"] and run["versions"]["longdocvqa"]
        assert {"pyarrow", "datasets", "tokenizers", "pymupdf"} <= set(run["versions"])
    assert runs[0]["calls"]["calls"] == sent > 0 and runs[1]["calls"]["calls"] == 0
    assert runs[0]["calls"]["cost_usd"] > 0 and runs[1]["calls"]["cost_usd"] is None
    assert runs[0]["tokenizer_source"] in ("dashscope qwen.tiktoken", "huggingface cache", "huggingface hub")
    total = second["cumulative"]
    assert total["runs"] == 2 and total["first_started_at"] == runs[0]["started_at"]
    assert total["calls"]["calls"] == sent and total["calls"]["cost_usd"] == runs[0]["calls"]["cost_usd"]
    assert total["seconds"] >= first["seconds"]  # the rerun does not erase the first build's time
    assert total["stage_seconds"]["generate"] >= first["stages"]["generate"]["seconds"]


def test_argv_secrets_are_masked(monkeypatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "abcdefgh12345678")
    argv = ["longdocvqa", "push", "runs/x", "--token", "hf_abcdefghijklmnopqrstuvwx", "--api-key=zzz",
            "--repo", "org/name", "--note=abcdefgh12345678", "Bearer xyz"]  # fmt: skip
    assert masked_argv(argv) == ["longdocvqa", "push", "runs/x", "--token", MASK, f"--api-key={MASK}",
                                 "--repo", "org/name", f"--note={MASK}", MASK]  # fmt: skip


def test_public_paths_are_relative_to_the_pool_root_or_reduced_to_a_name(tmp_path: Path, write_recipe) -> None:
    pool = tmp_path / "private" / "pool"
    (pool / "a").mkdir(parents=True)
    assert pool_root([str(pool / "a"), str(pool / "b.pdf"), str(pool / "c" / "*.pdf")]) == str(pool)
    assert public_path(str(pool / "a" / "x.pdf"), str(pool)) == "<pool>/a/x.pdf"
    assert public_path(str(tmp_path / "elsewhere" / "list.tsv"), str(pool)) == "<local>/list.tsv"
    assert public_path("org/bench", str(pool)) == "org/bench"  # a Hub id
    assert public_path("s3://acme-private/pdfs/shard-0001.tar", None) == "s3://<redacted>/shard-0001.tar"
    assert public_path("hf://datasets/org/pdfs/shard.tar", None) == "hf://datasets/org/pdfs/shard.tar"
    recipe = load_recipe(write_recipe([str(pool / "a")], decontaminate={"benchmarks": [
        {"name": "b", "kind": "pdfs", "path": str(tmp_path / "bench")}]}))  # fmt: skip
    data = public_recipe(recipe)
    assert data["pool"]["paths"] == ["<pool>"] and data["decontaminate"]["benchmarks"][0]["path"] == "<local>/bench"
    assert data["generate"]["generator"]["endpoint"]["api_key_env"] == "<redacted>"
    assert str(tmp_path) not in json.dumps(data)


@pytest.mark.slow
def test_rows_carry_licences_and_the_pool_filters_by_licence(write_recipe, pdf_dir, tmp_path) -> None:
    names = ["R-data.pdf", "etoolbox.pdf", "brief.pdf"]
    recipe = load_recipe(write_recipe([str(pdf_dir / n) for n in names], pool={"allow_licences": ["lppl-1.3c"]}))
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1)
    assert manifest["stages"]["pool"]["dropped"] == {"licence_not_allowed": 1}
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    (refused,) = [r for r in rejects if r["reason"] == "licence_not_allowed"]
    assert refused["item"].endswith("R-data.pdf") and "GPL-2" in refused["detail"]
    dataset = out / "dataset"
    docs = {d["sha256"]: d for d in _rows(dataset, "documents")}
    assert {d["file_name"] for d in docs.values()} == {"etoolbox.pdf", "brief.pdf"}
    sft, qa = _rows(dataset, "sft"), _rows(dataset, "qa")
    assert sft and qa
    for row in sft + qa:
        doc = docs[row.get("doc_id") or row.get("doc_sha256")]
        assert (
            (row["licence"], row["source"])
            == ("LPPL-1.3c", "texlive-latex-recommended-doc")
            == (
                doc["licence"],
                doc["source"],
            )
        )
    header, body = split_card((dataset / "README.md").read_text())
    assert header["license"] == "other" and header["license_name"] == "lppl-1.3c"
    assert header["license_link"] == "LICENSE.md" and "| LPPL-1.3c | 2 |" in (dataset / "LICENSE.md").read_text()
    assert f"| LPPL-1.3c | 2 | {len(sft)} | {len(qa)} |" in body
    report = validate_dataset(str(dataset))
    assert report.ok, report.to_json()


@pytest.mark.slow
def test_card_of_a_template_build_says_what_ran(demo_build: Path) -> None:
    dataset = demo_build / "dataset"
    header, body = split_card((dataset / "README.md").read_text())
    first_paragraph = body.split("\n\n")[1]
    assert first_paragraph.startswith("**Not training data.**") and "template baseline" in first_paragraph
    assert "**No benchmark was configured: these documents were not decontaminated" in body
    assert "decontaminated against benchmarks" not in body
    assert "- Verification: off" in body and "Prompt version: `template-v2`" in body
    assert header["license_name"] and header["license_link"] == "LICENSE.md"
    qa = {row["question"]: row for row in _rows(dataset, "qa")}
    used = {row["qa_id"] for row in _rows(dataset, "sft")}
    table = body.split("## Example rows (`qa`)")[1].split("\n## ")[0]
    shown = [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert shown
    for question in shown:  # the card's cells are cut at 120 characters
        (row,) = [r for q, r in qa.items() if q.replace("|", "\\|").startswith(question.rstrip("…"))]
        assert passed_checks(row) and row["id"] in used


@pytest.mark.slow
def test_demo_card_pictures_fit_the_data_and_show_one_example_per_task(demo_build: Path) -> None:
    dataset = demo_build / "dataset"
    header, body = split_card((dataset / "README.md").read_text())
    length = json.loads((dataset / "assets" / "length_histogram.json").read_text())
    tokens = [row["num_tokens"] for row in _rows(dataset, "sft")]
    assert sum(1 for total in length["totals"] if total) >= 8  # issue 30: not one 4K-wide bar
    assert min(tokens) - 100 <= length["edges"][0] <= min(tokens) and max(tokens) < length["edges"][-1] <= 3200
    assert length["title"].startswith(f"Tokens per example: {len(tokens)} examples") and "100K" not in length["title"]
    pages = json.loads((dataset / "assets" / "pages_histogram.json").read_text())
    assert pages["title"].startswith("Pages per example") and "tokens" not in pages["title"]
    assert data_under_legend(length) == [] and data_under_legend(pages) == []
    examples = body.split("## Examples")[1].split("\n## ")[0]
    tasks = set(header["longdocvqa"]["task_counts"]["train"])
    shown = dict(re.findall(r"!\[Example of ([a-z-]+)\]\((assets/example_[a-z-]+\.png)\)", examples))
    assert set(shown) == tasks
    qa = {row["id"]: row for row in _rows(dataset, "qa")}
    for task, picture in shown.items():
        assert (dataset / picture).stat().st_size < 300_000
        plotted = json.loads((dataset / picture).with_suffix(".json").read_text())
        assert plotted["header"].startswith(f"[{task}]") and plotted["pages"]
        assert all(p["caption"].startswith("page ") for p in plotted["pages"])
        text = " ".join(plotted["header"].split())
        (row,) = [r for r in qa.values() if r["task"] == task and f"Q: {' '.join(r['question'].split())[:60]}" in text]
        assert passed_checks(row) and [f"page {p}" for p in row["evidence_pages"][:3]] == [
            p["caption"] for p in plotted["pages"]
        ]
    assert any(p["boxes_px"] for picture in shown.values()
               for p in json.loads((dataset / picture).with_suffix(".json").read_text())["pages"])  # fmt: skip


def test_source_is_the_licence_files_or_else_the_file_name() -> None:
    doc = PdfDoc(sha256="0" * 64, path="/private/folder/a.pdf", size_bytes=1, num_pages=1, page_sizes_pt=[(1, 1)])
    assert source_of(doc) == "a.pdf"
    assert source_of(doc.model_copy(update={"source": "texlive-doc"})) == "texlive-doc"


def test_failed_checks_keep_a_row_out_of_the_card_examples() -> None:
    assert passed_checks({"verification": "evidence_text=found;answerability=not_run"})
    assert passed_checks({"verification": "evidence_text=not_applicable;answerability=judge"})
    assert not passed_checks({"verification": "evidence_text=skipped;answerability=not_run"})
    assert not passed_checks({"verification": "evidence_text=found;answerability=unverified"})
    assert not passed_checks({"verification": "not_run"})


@pytest.mark.slow
def test_demo_builds_without_importing_torch_or_transformers(tmp_path: Path) -> None:
    """The light install: the demo recipe (two of its PDFs) builds, the offline vocabulary converted afresh, and
    neither torch nor transformers is ever imported (scripts/setup.sh installs neither)."""
    code = (
        "import sys\n"
        "from longdocvqa.pipeline import build; from longdocvqa.core.recipe import load_recipe\n"
        f"recipe = load_recipe({str(ROOT / 'recipes' / 'demo.yaml')!r})\n"
        f"recipe.pool.paths = [{str(ROOT / 'tests/data/pdfs/R-data.pdf')!r}, "
        f"{str(ROOT / 'tests/data/pdfs/etoolbox.pdf')!r}]\n"
        f"m = build(recipe, {str(tmp_path / 'out')!r}, workers=1)\n"
        "print(m['examples'], sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'transformers'}))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "LONGDOCVQA_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }  # fmt: skip  (a fresh tokenizer cache: the offline vocabulary is converted)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    examples, heavy = result.stdout.strip().split(" ", 1)
    assert int(examples) > 0 and heavy == "[]"
    (run,) = [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert run["tokenizer_source"] == "dashscope qwen.tiktoken"


@pytest.mark.slow
def test_tokenizer_comes_from_the_hub_when_no_offline_source_exists(tmp_path: Path) -> None:
    """After a bare `pip install longdocvqa` (no dashscope, empty cache) the build downloads tokenizer.json."""
    from fakehub import FakeHub
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    local = tmp_path / "tokenizer.json"
    Tokenizer(WordLevel({"hello": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(local))
    code = (
        "from huggingface_hub import HfApi\n"
        "api = HfApi(); api.create_repo('org/tok', exist_ok=True)\n"
        f"api.upload_file(path_or_fileobj={str(local)!r}, path_in_repo='tokenizer.json', repo_id='org/tok')\n"
        "from longdocvqa.assembly import tokens\n"
        "from longdocvqa.hub.load import fetch_tokenizer_json\n"
        "tokens.dashscope_tiktoken_path = lambda: None  # as without the data-only dashscope wheel\n"
        "tokenizer, source = tokens.resolve_tokenizer('org/tok', fetch=fetch_tokenizer_json)\n"
        "print(source, tokenizer.encode('hello').ids)\n"
    )
    with FakeHub(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(hub.client_env(tmp_path / "hf-home"))
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "huggingface hub [0]"
