"""Hostile or unlucky input, through the real CLI (issue 29, the input / text / secrets half).

Every test runs `python -m longdocvqa ...` in a child process, against real PDFs, the loopback OpenAI-compatible
server and real Parquet, and checks what the user sees: the documented exit code (0 ok, 1 build or external
failure, 2 bad recipe or usage), one line on stderr, never a traceback; and what is stored and published:
no control characters, no raw HTML, no API key.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eval_helpers import gold_answers, make_benchmark, replier
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)
from openai_server import ScriptedOpenAI
from recipe_helpers import recipe_file

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT / "tests" / "data" / "pdfs"
SECRET = "sk-d29a-0123456789abcdefWXYZ"  # the key a hostile server echoes back
EXTRA_SECRET = "sk-extra-body-9876543210QRST"
# What must never be stored: C0/C1 controls but tab and newline, DEL, bidi embeddings, overrides and isolates.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE = "\x1b[2J\u202e|<img src=x onerror=alert(1)>"


def run_cli(*args: Any, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`longdocvqa ARGS` in a child process; never a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "longdocvqa", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    return proc


def one_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The single stderr line of a failed command, checked for its exit code and words."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def error_line(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The one `error:` line of a command that failed after it started work (progress bars may precede it)."""
    assert proc.returncode == code, proc.stderr[-2000:]
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    for needle in needles:
        assert needle in line, line
    return line


def openai_endpoint(server: ScriptedOpenAI, **overrides: Any) -> dict[str, Any]:
    values = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 10.0,
              "max_retries": 0, "max_concurrency": 4}  # fmt: skip
    return {**values, **overrides}


def stored_strings(dataset: Path) -> list[str]:
    """Every string value in every Parquet shard of `dataset` (nested lists and structs included)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for shard in sorted(dataset.glob("data/*/*.parquet")):
        columns = [c for c in pq.read_schema(shard).names if c != "images"]
        for row in pq.read_table(shard, columns=columns).to_pylist():
            walk(row)
    return found


def every_byte(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-document offline build (template generator), the base of the dataset cases."""
    folder = tmp_path_factory.mktemp("built")
    out = folder / "out"
    proc = run_cli("build", recipe_file(folder, [str(PDFS / "R-data.pdf")]), "--out", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def dataset_copy(built: Path, folder: Path, page_bytes: Any = None, doc_id: str | None = None) -> Path:
    """A copy of the built dataset/ whose first sft row's first page image is `page_bytes(original)` and whose
    first sft row's doc_id is `doc_id` (when given)."""
    copy = folder / "dataset"
    shutil.copytree(built / "dataset", copy)
    (shard,) = copy.glob("data/sft/*.parquet")
    rows = pq.read_table(shard).to_pylist()
    if page_bytes is not None:
        rows[0]["images"][0]["bytes"] = page_bytes(rows[0]["images"][0]["bytes"])
    if doc_id is not None:
        rows[0]["doc_id"] = doc_id
    schema = pq.read_schema(shard)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), shard)
    return copy


# ---------------------------------------------------------------- 1. text in, text out, clean (and 2. extra_body)


@pytest.mark.slow
def test_control_characters_and_markup_from_the_model_file_names_and_licences_are_not_stored_or_published(
    server: ScriptedOpenAI, tmp_path: Path
) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    name = f"R-data{HOSTILE}.pdf"
    shutil.copy(PDFS / "R-data.pdf", pool / name)
    licences = tmp_path / "licences.tsv"
    licences.write_text(
        "file\tlicence\tsource\n"
        f"{name}\tGPL <script>alert(1)</script>\x1b[31m | x\u202e\tjavascript:alert(document.cookie)\x07\n",
        encoding="utf-8",
    )
    original = server.make_qa

    def hostile_question(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        qa, description = original(body)
        qa["question"] = f"\x1b[31m{qa['question']}\u202e {HOSTILE}\x07"
        return qa, description

    server.make_qa = hostile_question  # type: ignore[method-assign]  (the test server's reply, not our code)
    ep = openai_endpoint(server, extra_body={"api_key": EXTRA_SECRET})
    recipe = recipe_file(
        tmp_path, [str(pool)], pool={"licences": str(licences)}, decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": ep}, "input_mode": "text",
                  "tasks": ["extract-single"]},
        assemble={"mixture": {"extract-single": 1.0}, "budget_tokens": None},
    )  # fmt: skip
    out = tmp_path / "out"
    proc = run_cli("build", recipe, "--out", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    strings = stored_strings(out / "dataset")
    assert not [s for s in strings if CONTROL.search(s)]
    questions = pq.read_table(next((out / "dataset").glob("data/qa/*.parquet")), columns=["question"])
    assert questions.num_rows and all("<img src=x onerror" in q for q in questions.column("question").to_pylist())
    assert any(s.startswith("R-data") and "|<img" in s for s in strings)  # the file name kept, without its controls
    for card in ("README.md", "LICENSE.md"):
        text = (out / "dataset" / card).read_text(encoding="utf-8")
        assert not CONTROL.search(text) and "<img" not in text and "<script" not in text, card
        assert "](javascript:" not in text and EXTRA_SECRET not in text
        for row in (line for line in text.splitlines() if "R-data" in line and line.startswith("| ")):
            assert len(re.findall(r"(?<!\\)\|", row)) == row.count(" | ") + 2  # every `|` of the data is escaped
    assert "api_key: <redacted>" in (out / "dataset" / "README.md").read_text(encoding="utf-8")
    assert EXTRA_SECRET.encode() not in every_byte(out / "dataset")


# ---------------------------------------------------------------- 2. secrets


@pytest.mark.slow
def test_a_key_echoed_by_the_server_is_masked_on_stderr_in_the_ledger_and_every_file(
    server: ScriptedOpenAI, tmp_path: Path
) -> None:
    server.policy = lambda _index, _body: "auth_echo"
    env = {"D29A_KEY": SECRET}
    recipe = recipe_file(
        tmp_path, [str(PDFS / "R-data.pdf")], decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": openai_endpoint(server, api_key_env="D29A_KEY")},
                  "input_mode": "text"},
    )  # fmt: skip
    out = tmp_path / "out"
    proc = run_cli("build", recipe, "--out", out, "--workers", "1", env=env)
    line = error_line(proc, 1, "HTTP 401", "sk-...WXYZ")
    assert SECRET not in proc.stdout + proc.stderr, line
    ledgers = list(out.rglob("llm_calls*.sqlite"))
    assert ledgers
    with sqlite3.connect(ledgers[0]) as db:
        details = [row[0] for row in db.execute("SELECT detail FROM errors")]
    # every 401 names the key masked; a call that timed out instead (a loaded machine) holds no key at all
    assert any("sk-...WXYZ" in d for d in details), details
    assert all(SECRET not in d and ("sk-...WXYZ" in d or "HTTP 401" not in d) for d in details), details
    assert SECRET.encode() not in every_byte(out)  # runs.jsonl, manifest.json, rejects.jsonl, caches, ledger
    bench = make_benchmark(tmp_path / "bench", excerpts={"R-data.pdf": 3}, questions=[
        {"doc_id": "R-data.pdf", "question": "Which manual?", "answer": "R", "answer_format": "Str",
         "evidence_pages": "[1]"}])  # fmt: skip
    evaluated = run_cli("eval", bench, "--base-url", server.base_url, "--model", "scripted", "--out",
                        tmp_path / "eval", "--lengths", "4096", "--input", "text", "--api-key-env", "D29A_KEY",
                        env=env)  # fmt: skip
    error_line(evaluated, 1, "HTTP 401", "sk-...WXYZ")
    assert SECRET not in evaluated.stdout + evaluated.stderr
    assert SECRET.encode() not in every_byte(tmp_path / "eval")


# ---------------------------------------------------------------- 3. bounds and duplicate keys


BAD_RECIPES = {
    "num_perm": ({"decontaminate": {"num_perm": 1099511627776}}, "decontaminate.num_perm"),
    "max_tokens": ({"assemble": {"max_tokens": 10**30}}, "assemble.max_tokens"),
    "max_pixels": ({"assemble": {"max_pixels": 10**12}}, "assemble.max_pixels"),
    "render_pixels": ({"render": {"max_pixels": 10**30}}, "render.max_pixels"),
    "memory": ({"isolation": {"memory_mb_per_document": 10**30}}, "isolation.memory_mb_per_document"),
    "seconds": ({"isolation": {"seconds_per_document": 1e30}}, "isolation.seconds_per_document"),
    "pages": ({"pool": {"max_pages": 10**20}}, "pool.max_pages"),
    "seed": ({"seed": 10**40}, "seed"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_an_out_of_range_number_in_the_recipe_is_exit_2_naming_the_field(case: str, tmp_path: Path) -> None:
    overrides, field = BAD_RECIPES[case]
    recipe = recipe_file(tmp_path, [str(PDFS / "R-data.pdf")], **overrides)
    proc = run_cli("build", recipe, "--out", tmp_path / "out", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "invalid recipe" in lines[0], lines  # the file, then one bullet: the field
    assert lines[1].startswith(f"- {field}:") and "less than or equal" in lines[1], lines
    assert not (tmp_path / "out").exists()


def test_a_key_given_twice_in_a_recipe_is_exit_2_naming_it(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, [str(PDFS / "R-data.pdf")], text="seed: 1\n")
    recipe.write_text(recipe.read_text() + "pool: {paths: [/nowhere]}\n")
    proc = run_cli("build", recipe, "--dry-run", timeout=120)
    one_line(proc, 2, str(recipe), "key 'seed' is given twice")


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_a_limit_below_one_is_exit_2(limit: str, tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, [str(PDFS / "R-data.pdf")])
    one_line(run_cli("build", recipe, "--dry-run", "--limit", limit, timeout=120), 2, "--limit")


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [("--lengths", "1e23", "--lengths: '1e23'"), ("--lengths", "10" * 12, "--lengths"),
     ("--max-concurrency", "0", "--max-concurrency: Input should be greater"), ("--input", "pixels", "--input:"),
     ("--timeout-s", "1e30", "--timeout-s:"), ("--max-tokens", "-3", "--max-tokens:")],
)  # fmt: skip
def test_eval_options_out_of_range_are_one_line_without_a_pydantic_dump(
    flag: str, value: str, needle: str, tmp_path: Path
) -> None:
    args = ["eval", tmp_path, "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", tmp_path / "o"]
    line = one_line(run_cli(*args, flag, value, timeout=120), 2, needle)
    assert "pydantic" not in line and "validation error" not in line


@pytest.mark.slow
def test_eval_rejects_evidence_pages_outside_the_document(server: ScriptedOpenAI, tmp_path: Path) -> None:
    good = {"doc_id": "R-data.pdf", "question": "Which manual is this document?", "answer": "R Data Import/Export",
            "answer_format": "Str", "evidence_pages": "[1]"}  # fmt: skip
    bad = [{**good, "question": f"Bad page {pages}?", "evidence_pages": pages} for pages in ("[0]", "[-5]", "[99999]")]
    bench = make_benchmark(tmp_path / "bench", excerpts={"R-data.pdf": 3}, questions=[good, *bad])
    server.responder = replier(gold_answers([good]))
    out = tmp_path / "out"
    proc = run_cli("eval", bench, "--base-url", server.base_url, "--model", "scripted", "--out", out,
                   "--lengths", "4096", "--input", "text")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rejected items 3" in " ".join(proc.stdout.split())
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["question"] for p in predictions] == [good["question"]]


# ---------------------------------------------------------------- 4. FIFOs, devices, /proc


def test_a_fifo_or_device_in_pool_paths_is_rejected_by_type(tmp_path: Path) -> None:
    fifo = tmp_path / "pool.pdf"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "is a FIFO"), (Path("/dev/zero"), "is a character device")):
        recipe = recipe_file(tmp_path / kind.split()[-1], [str(path)])
        one_line(run_cli("build", recipe, "--dry-run", timeout=120), 2, str(path), kind)


@pytest.mark.slow
def test_virtual_file_systems_are_never_walked(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path / "proc", ["/proc"])
    one_line(run_cli("build", recipe, "--dry-run", timeout=120), 2, "/proc", "virtual file system 'proc'")
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.copy(PDFS / "R-data.pdf", pool)
    (pool / "proc").symlink_to("/proc")  # a link into /proc (whose */root leads to the whole machine) is skipped
    os.mkfifo(pool / "fifo.pdf")  # and a FIFO named like a PDF is a reject, never opened
    out = tmp_path / "out"
    proc = run_cli("build", recipe_file(tmp_path, [str(pool)]), "--out", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    reasons = {Path(r["item"]).name: r["reason"] for r in rejects if r["stage"] == "pool"}
    assert reasons["proc"] == "virtual_folder" and reasons["fifo.pdf"] == "not_a_file"
    assert json.loads((out / "manifest.json").read_text())["documents"] == 1


def test_layout_on_a_fifo_returns_at_once_with_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "doc.pdf"
    os.mkfifo(fifo)
    one_line(run_cli("layout", fifo, timeout=60), 1, str(fifo), "is a FIFO")


# ---------------------------------------------------------------- 5. one line, never a traceback


def test_a_latin1_licence_tsv_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    licences = tmp_path / "licences.tsv"
    licences.write_bytes("file\tlicence\nR-data.pdf\tlicence libre (\xe9t\xe9)\n".encode("latin-1"))
    recipe = recipe_file(tmp_path, [str(PDFS / "R-data.pdf")], pool={"licences": str(licences)})
    one_line(run_cli("build", recipe, "--out", tmp_path / "out", timeout=120), 2, str(licences), "not UTF-8")


@pytest.mark.slow
@pytest.mark.parametrize("repo", ["../../etc", "org/a\x1b[31mb", "org/name/extra"])
def test_push_to_a_repo_id_that_is_not_one_is_exit_2(repo: str, built: Path) -> None:
    line = one_line(run_cli("push", built, "--repo", repo, timeout=120), 2, "--repo", "not a Hub repo id")
    assert "\x1b" not in line


def test_layout_png_onto_a_file_is_exit_2(tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("keep me")
    one_line(run_cli("layout", PDFS / "brief.pdf", "--pages", "1", "--png", target, timeout=120), 2, "is a file")
    assert target.read_text() == "keep me"


GARBAGE_MANIFESTS = [
    '{"name": ',
    "[1, 2]",
    '{"name": "x"}',
    '{"name": "x", "version": "1", "documents": 1, "segments": 0, "seconds": 1, "stages": {"pool": {"seen": "x"}}}',
]


@pytest.mark.parametrize("text", GARBAGE_MANIFESTS)
def test_inspect_on_a_garbage_manifest_is_one_line(text: str, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(text)
    one_line(run_cli("inspect", tmp_path, timeout=120), 1, "manifest.json", "not a run manifest")


@pytest.mark.slow
def test_validate_push_and_eval_on_a_dataset_whose_images_do_not_decode(built: Path, tmp_path: Path) -> None:
    dataset = dataset_copy(built, tmp_path, page_bytes=lambda _data: b"\xff\xd8\xff\xe0 not a JPEG at all")
    proc = run_cli("validate", dataset, "--json", timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["failure_counts"] == {"image": 1}
    one_line(run_cli("push", dataset, "--repo", "org/name", timeout=300), 1, "fails validation (image: 1)")
    evaluated = run_cli("eval", dataset, "--split", "train", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                        "--out", tmp_path / "eval", "--lengths", "4096", timeout=300)  # fmt: skip
    error_line(evaluated, 2, "no usable question")


# ---------------------------------------------------------------- 6. validate decodes every image, checks doc_id


@pytest.mark.slow
def test_validate_catches_a_page_jpeg_cut_short_and_an_unknown_doc_id(built: Path, tmp_path: Path) -> None:
    from PIL import Image

    def cut(data: bytes) -> bytes:
        with Image.open(io.BytesIO(data)) as image:
            image.size  # noqa: B018  (the header of the cut image still reads: only decoding catches it)
        return data[: len(data) // 2]

    dataset = dataset_copy(built, tmp_path / "cut", page_bytes=cut)
    with Image.open(io.BytesIO(cut(pq.read_table(next(dataset.glob("data/sft/*.parquet"))).to_pylist()[0]
                                   ["images"][0]["bytes"]))) as header_only:  # fmt: skip
        assert header_only.size[0] > 0
    proc = run_cli("validate", dataset, "--json", timeout=300)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["failure_counts"] == {"image": 1}
    assert "truncated" in report["failures"][0]["message"] or "decode" in report["failures"][0]["message"]
    unknown = dataset_copy(built, tmp_path / "doc", doc_id="0" * 64)
    report = json.loads(run_cli("validate", unknown, "--json", timeout=300).stdout)
    assert report["failure_counts"].get("missing_document") == 1
    assert run_cli("validate", built, timeout=300).returncode == 0  # the untouched build still validates


# ---------------------------------------------------------------- 7. onnxruntime's device id


@pytest.mark.slow
def test_a_build_in_a_fresh_home_leaves_no_onnxruntime_device_id(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    proc = subprocess.run(
        [sys.executable, "-m", "longdocvqa", "build", str(recipe_file(tmp_path, [str(PDFS / "R-data.pdf")])),
         "--out", str(tmp_path / "out"), "--workers", "1", "--limit", "1"],
        capture_output=True, text=True, cwd=ROOT, env={**env, "HOME": str(home)}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (home / ".cache" / "Microsoft").exists(), sorted(str(p) for p in home.rglob("*"))
