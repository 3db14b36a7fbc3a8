"""Every MuPDF read after the pool and layout stages runs in an isolated per-document worker: a document whose page
texts (decontaminate) or page images (generate, publish) crash MuPDF's process, overrun isolation.seconds_per_document
or run out of memory is one reject naming the file, and the build goes on with the others.

The failures are real: the reading function, patched in the build process before it forks its workers, sends the
worker a real SIGSEGV (or sleeps past the time limit) when it reads the doomed file; called in the build process
itself it fails the test instead, since the point is that the build process never reads a PDF there."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)

from longdocvqa.core.fingerprint import file_sha256
from longdocvqa.core.recipe import load_recipe
from longdocvqa.documents import render
from longdocvqa.pipeline import build

NAMES = ["R-data.pdf", "etoolbox.pdf"]
CRASH = {"memory_mb_per_document": 0}  # no memory bound: a SIGSEGV reads as a crash, not as the memory limit


def _copies(pdf_dir: Path, folder: Path) -> list[Path]:
    folder.mkdir()
    return [Path(shutil.copy(pdf_dir / name, folder / name)) for name in NAMES]


def _failing_in_worker(real: Callable, doomed: Path, action: str) -> Callable:
    """`real`, except that reading `doomed` in a worker process crashes it (SIGSEGV), allocates 8 GB or hangs it."""
    build_pid = os.getpid()

    def patched(path, *args, **kwargs):
        if Path(path) == doomed:
            assert os.getpid() != build_pid, f"{doomed.name} was read in the build process"
            if action == "segfault":
                os.kill(os.getpid(), signal.SIGSEGV)
            if action == "allocate":  # far past isolation.memory_mb_per_document: RLIMIT_AS refuses it
                return bytearray(8 * 1024**3)
            time.sleep(120)
        return real(path, *args, **kwargs)

    return patched


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


def _published_docs(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    (shard,) = (out / "dataset" / "data" / "documents").glob("*.parquet")
    return set(pq.read_table(shard).column("file_name").to_pylist())


def _example_docs(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    (shard,) = (out / "dataset" / "data" / "sft").glob("*.parquet")
    return set(pq.read_table(shard, columns=["doc_id"]).column("doc_id").to_pylist())


@pytest.mark.slow
def test_a_crash_reading_page_texts_at_decontamination_is_one_reject(write_recipe, pdf_dir, tmp_path, monkeypatch):
    paths = _copies(pdf_dir, tmp_path / "pool")
    doomed = paths[1]
    monkeypatch.setattr(render, "page_texts", _failing_in_worker(render.page_texts, doomed, "segfault"))
    recipe = load_recipe(write_recipe([str(p) for p in paths], decontaminate={"within_pool": True}, isolation=CRASH))
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1)
    (failed,) = [r for r in _rejects(out) if r["stage"] == "decontaminate"]
    assert failed["reason"] == "worker_crashed" and str(doomed) in failed["detail"]
    assert "SIGSEGV" in failed["detail"] and "\n" not in failed["detail"]
    assert manifest["stages"]["decontaminate"]["kept"] == 1 and manifest["examples"] > 0
    assert _published_docs(out) == {paths[0].name}


@pytest.mark.slow
def test_reading_past_the_time_limit_at_decontamination_is_a_timeout(write_recipe, pdf_dir, tmp_path, monkeypatch):
    paths = _copies(pdf_dir, tmp_path / "pool")
    doomed = paths[0]
    monkeypatch.setattr(render, "page_texts", _failing_in_worker(render.page_texts, doomed, "hang"))
    recipe = load_recipe(write_recipe(
        [str(p) for p in paths], decontaminate={"within_pool": True}, isolation={"seconds_per_document": 8},
    ))  # fmt: skip
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=2)
    (late,) = [r for r in _rejects(out) if r["stage"] == "decontaminate"]
    assert late["reason"] == "timeout" and str(doomed) in late["detail"] and "8 s" in late["detail"]
    assert _published_docs(out) == {paths[1].name} and manifest["examples"] > 0


@pytest.mark.slow
def test_a_crash_rendering_pages_for_generation_is_one_reject(server, write_recipe, pdf_dir, tmp_path, monkeypatch):
    paths = _copies(pdf_dir, tmp_path / "pool")
    doomed = paths[1]
    monkeypatch.setattr(render, "render_pages", _failing_in_worker(render.render_pages, doomed, "segfault"))
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "max_retries": 0}
    recipe = load_recipe(write_recipe(
        [str(p) for p in paths], decontaminate={"within_pool": False}, isolation=CRASH,
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "images+text"},
    ))  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(AssertionError, match="read in the build process"):
        render.render_pages(doomed, [1], 72, "jpeg", 80)  # the patch is armed in this process
    manifest = build(recipe, out, workers=1)
    (crashed,) = [r for r in _rejects(out) if r["reason"] == "worker_crashed"]
    assert crashed["stage"] == "generate" and crashed["item"] == str(doomed) and "SIGSEGV" in crashed["detail"]
    assert manifest["stages"]["generate"]["dropped"]["worker_crashed"] == 1
    assert _published_docs(out) == {paths[0].name}  # rendered at generation, published from the page cache


@pytest.mark.slow
def test_a_crash_rendering_pages_for_publishing_is_one_reject_each(write_recipe, pdf_dir, tmp_path, monkeypatch):
    paths = _copies(pdf_dir, tmp_path / "pool")
    doomed = paths[0]  # the template generator renders nothing: publish is the first to render pages
    monkeypatch.setattr(render, "render_pages", _failing_in_worker(render.render_pages, doomed, "segfault"))
    recipe = load_recipe(write_recipe([str(p) for p in paths], decontaminate={"within_pool": False}, isolation=CRASH))
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1)
    crashed = [r for r in _rejects(out) if r["reason"] == "worker_crashed"]
    assert crashed and all(r["stage"] == "publish" and str(doomed) in r["detail"] for r in crashed)
    assert manifest["stages"]["publish"]["dropped"]["worker_crashed"] == len(crashed)
    assert manifest["examples"] > 0 and _example_docs(out) == {file_sha256(paths[1])}


@pytest.mark.slow
def test_a_benchmark_pdf_that_crashes_its_reader_is_reported_unreadable(write_recipe, pdf_dir, tmp_path, monkeypatch):
    paths = _copies(pdf_dir, tmp_path / "pool")
    bench = tmp_path / "bench"
    bench.mkdir()
    doomed = Path(shutil.copy(pdf_dir / "R-FAQ.pdf", bench / "R-FAQ.pdf"))
    monkeypatch.setattr(render, "page_texts", _failing_in_worker(render.page_texts, doomed, "segfault"))
    benchmarks = [{"name": "bench", "kind": "pdfs", "path": str(bench)}]
    recipe = load_recipe(write_recipe(
        [str(p) for p in paths], decontaminate={"within_pool": False, "benchmarks": benchmarks}, isolation=CRASH,
    ))  # fmt: skip
    manifest = build(recipe, tmp_path / "out", workers=1)
    report = manifest["stages"]["decontaminate"]["report"]["benchmarks"]["bench"]
    (unreadable,) = report["unreadable"]
    assert unreadable.startswith("R-FAQ.pdf: ") and "worker_crashed" in unreadable and "SIGSEGV" in unreadable
    assert manifest["stages"]["decontaminate"]["kept"] == 2 and manifest["examples"] > 0


@pytest.mark.slow
def test_rendering_past_the_memory_limit_at_publishing_is_too_big(write_recipe, pdf_dir, tmp_path, monkeypatch):
    paths = _copies(pdf_dir, tmp_path / "pool")
    doomed = paths[1]
    monkeypatch.setattr(render, "render_pages", _failing_in_worker(render.render_pages, doomed, "allocate"))
    recipe = load_recipe(write_recipe(
        [str(p) for p in paths], decontaminate={"within_pool": False}, isolation={"memory_mb_per_document": 1024},
    ))  # fmt: skip
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1)
    big = [r for r in _rejects(out) if r["reason"] == "too_big"]
    assert big and all(r["stage"] == "publish" and str(doomed) in r["detail"] for r in big)
    assert manifest["examples"] > 0 and _example_docs(out) == {file_sha256(paths[0])}
