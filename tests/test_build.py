"""End-to-end document-side builds: bad inputs, error budget, resume, kill -9 and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from longdocvqa.core.errors import StageError
from longdocvqa.core.recipe import load_recipe
from longdocvqa.pipeline import build

ROOT = Path(__file__).resolve().parents[1]


def _segments(out: Path) -> dict[str, list[tuple[int, int, str]]]:
    result = {}
    for path in sorted((out / "stages" / "segment").glob("*/*/*.json")):
        data = json.loads(path.read_text())
        result[path.stem] = [(s["start_page"], s["end_page"], s["rule"]) for s in data["ok"]]
    return result


@pytest.mark.slow
def test_every_bad_input_is_rejected_with_its_reason_and_good_files_succeed(mixed_pool, write_recipe, tmp_path):
    folder, expected = mixed_pool
    recipe = load_recipe(write_recipe([str(folder)], pool={"max_reject_rate": 0.9}))
    manifest = build(recipe, tmp_path / "out", workers=2)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    by_file = {Path(r["item"]).name: r for r in rejects}
    for name, reason in expected.items():
        assert by_file[name]["reason"] == reason, (name, by_file[name])
        assert by_file[name]["stage"] == "pool" and by_file[name]["detail"]
    assert manifest["documents"] == 3 and manifest["segments"] == 3
    assert manifest["stages"]["pool"]["dropped"] == {
        r: list(expected.values()).count(r) for r in set(expected.values())
    }


@pytest.mark.slow
def test_error_budget_stops_the_build_with_a_clear_message(mixed_pool, write_recipe, tmp_path):
    folder, _ = mixed_pool
    recipe = load_recipe(write_recipe([str(folder)], pool={"max_reject_rate": 0.5}))
    with pytest.raises(StageError, match=r"pool: 7 of 10 inputs rejected \(70%\), over max_reject_rate 50%"):
        build(recipe, tmp_path / "out", workers=1)


@pytest.mark.slow
def test_rerun_does_no_work_and_writes_lock_and_manifest(write_recipe, pdf_dir, tmp_path):
    recipe = load_recipe(write_recipe([str(pdf_dir / "R-data.pdf"), str(pdf_dir / "brief.pdf")]))
    first = build(recipe, tmp_path / "out", workers=1)
    second = build(recipe, tmp_path / "out", workers=1)
    assert first["segments"] == second["segments"] == 2
    for stage in ("pool", "layout", "segment", "generate", "assemble", "publish"):
        assert second["stages"][stage]["reused"] == second["stages"][stage]["seen"] > 0, stage
    assert second["examples"] == first["examples"] > 0 and second["drops"] == first["drops"]
    assert second["recipe_fingerprint"] == recipe.fingerprint()
    assert (tmp_path / "out" / "recipe.lock.yaml").read_text() == recipe.to_yaml()


@pytest.mark.slow
def test_changed_segment_setting_reuses_layout(write_recipe, pdf_dir, tmp_path):
    recipe = load_recipe(write_recipe([str(pdf_dir / "R-data.pdf")]))
    build(recipe, tmp_path / "out", workers=1)
    recipe.segment.max_pages = 12
    manifest = build(recipe, tmp_path / "out", workers=1)
    assert manifest["stages"]["layout"]["reused"] == 1
    assert manifest["stages"]["segment"]["reused"] == 0


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_segments(write_recipe, pdf_dir, tmp_path):
    recipe_path = write_recipe([str(pdf_dir)])
    reference = tmp_path / "reference"
    build(load_recipe(recipe_path), reference, workers=2)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "longdocvqa", "build", str(recipe_path), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    layout_dir = out / "stages" / "layout"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(layout_dir.glob("*/*/*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "killed before finishing"
    assert not list(out.rglob("*.tmp")) or all(p.name.startswith(".") for p in out.rglob("*.tmp"))
    manifest = build(load_recipe(recipe_path), out, workers=1)
    assert manifest["stages"]["layout"]["reused"] >= 3
    assert _segments(out) == _segments(reference)


@pytest.mark.slow
def test_benchmark_copies_are_dropped_and_reported(write_recipe, pdf_dir, tmp_path):
    import shutil

    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copy(pdf_dir / "etoolbox.pdf", bench / "copy-of-etoolbox.pdf")
    benchmarks = [{"name": "mmlongbench-doc", "kind": "pdfs", "path": str(bench)}]
    paths = [str(pdf_dir / n) for n in ("etoolbox.pdf", "R-data.pdf", "mathtools.pdf")]
    recipe = load_recipe(write_recipe(paths, decontaminate={"benchmarks": benchmarks}))
    manifest = build(recipe, tmp_path / "out", workers=1)
    stage = manifest["stages"]["decontaminate"]
    assert stage["seen"] == 3 and stage["kept"] == 2 and stage["dropped"] == {"bench_sha256": 1}
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    (hit,) = [r for r in rejects if r["reason"] == "bench_sha256"]
    assert Path(hit["item"]).name == "etoolbox.pdf" or "etoolbox" in json.dumps(hit)
    card = (tmp_path / "out" / "dataset" / "README.md").read_text()
    assert "mmlongbench-doc" in card
    assert "| mmlongbench-doc | pdfs | bench_sha256 | 1 | `copy-of-etoolbox.pdf` |" in card  # benchmark, rule, count
    assert "decontaminated against `mmlongbench-doc`" in card and "No benchmark was configured" not in card
    assert str(bench) not in card and "- <local>/bench" not in card and "path: <local>/bench" in card
