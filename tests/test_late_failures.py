"""Per-document bounds after the isolated stages: a page MuPDF cannot render at publish, a document whose text
cannot be read at decontamination, and a document whose generation overruns isolation.seconds_per_document each
become one reject naming the file, and the build goes on.

The failures are real: the pool file really changes on disk between stages (a re-synced share, an editor saving
over it), seen through the pipeline's own Progress hook, and the loopback endpoint really hangs."""

from __future__ import annotations

import json
import shutil
from contextlib import AbstractContextManager
from pathlib import Path

import pymupdf
import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)

from longdocvqa.core.recipe import load_recipe
from longdocvqa.pipeline import build
from longdocvqa.runner.loop import Progress

NAMES = ["R-data.pdf", "etoolbox.pdf"]


class _ChangeFileAt(Progress):
    """Replace `path` with `data` as stage `stage` starts."""

    def __init__(self, stage: str, path: Path, data: bytes) -> None:
        self.when, self.path, self.data = stage, path, data

    def stage(self, name: str, total: int) -> AbstractContextManager:
        if name == self.when:
            self.path.write_bytes(self.data)
        return super().stage(name, total)


def _copies(pdf_dir: Path, folder: Path) -> list[Path]:
    folder.mkdir()
    return [Path(shutil.copy(pdf_dir / name, folder / name)) for name in NAMES]


def _first_page_only(path: Path) -> bytes:
    doc, new = pymupdf.open(path), pymupdf.open()
    new.insert_pdf(doc, from_page=0, to_page=0)
    return new.tobytes()


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_page_that_cannot_be_rendered_at_publish_is_one_reject(write_recipe, pdf_dir, tmp_path) -> None:
    paths = _copies(pdf_dir, tmp_path / "pool")
    recipe = load_recipe(write_recipe([str(p) for p in paths], decontaminate={"within_pool": False}))
    doomed = paths[0]  # the template generator renders nothing: publish is the first to render its pages
    progress = _ChangeFileAt("publish pages", doomed, _first_page_only(doomed))  # as its page rendering starts
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1, progress=progress)
    failed = [r for r in _rejects(out) if r["reason"] == "render_failed"]
    assert failed and all(r["stage"] == "publish" and str(doomed) in r["detail"] for r in failed)
    assert "\n" not in failed[0]["detail"] and "page 2" in failed[0]["detail"]
    assert manifest["stages"]["publish"]["dropped"]["render_failed"] == len(failed)
    assert manifest["examples"] > 0  # the other document's examples are published


@pytest.mark.slow
def test_a_document_unreadable_at_decontamination_is_one_reject(write_recipe, pdf_dir, tmp_path) -> None:
    paths = _copies(pdf_dir, tmp_path / "pool")
    recipe = load_recipe(write_recipe([str(p) for p in paths], decontaminate={"within_pool": True}))
    doomed = paths[1]
    progress = _ChangeFileAt("decontaminate", doomed, b"this file was overwritten after the pool stage\n")
    out = tmp_path / "out"
    manifest = build(recipe, out, workers=1, progress=progress)
    (failed,) = [r for r in _rejects(out) if r["stage"] == "decontaminate"]
    assert failed["reason"] == "render_failed" and str(doomed) in failed["detail"]
    assert manifest["stages"]["decontaminate"]["kept"] == 1 and manifest["examples"] > 0
    assert failed["item"] == str(doomed)  # the line names the file; its sha256 stays in the detail
    sha = failed["detail"].rsplit("(sha256 ", 1)[1].rstrip(")")
    assert len(sha) == 64 and not list((out / "cache" / "decontaminate").rglob(f"{sha}.npy"))  # no empty entry


@pytest.mark.slow
def test_generation_over_the_per_document_limit_is_rejected_and_retried(server, write_recipe, pdf_dir, tmp_path):
    paths = _copies(pdf_dir, tmp_path / "pool")
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 120.0,
                "max_retries": 0}  # fmt: skip
    recipe = load_recipe(write_recipe(
        [str(p) for p in paths], decontaminate={"within_pool": False}, isolation={"seconds_per_document": 5},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text"},
    ))  # fmt: skip
    server.hang_s = 15.0  # longer than the document's limit, shorter than the endpoint's timeout
    server.policy = lambda _i, body: "hang" if "etoolbox" in json.dumps(body) else "ok"
    out = tmp_path / "out"
    first = build(recipe, out, workers=1)
    generate = first["stages"]["generate"]
    assert generate["dropped"]["timeout"] == 1 and generate["incomplete_documents"] == 1
    (late,) = [r for r in _rejects(out) if r["reason"] == "timeout"]
    assert late["stage"] == "generate" and late["item"] == str(paths[1]) and "seconds_per_document" in late["detail"]
    server.policy = None
    second = build(recipe, out, workers=1)
    assert "timeout" not in second["stages"]["generate"]["dropped"]
    assert "incomplete_documents" not in second["stages"]["generate"]
    assert second["stages"]["generate"]["by_task"] == {"extract-single": 2, "extract-multi": 2, "reasoning": 2}
