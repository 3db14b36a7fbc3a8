"""Generation inside `build`: scanned pages transcribed by the VLM, and endpoint outages retried on resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pymupdf
import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)
from PIL import Image

from longdocvqa.core.errors import ExternalServiceError
from longdocvqa.core.recipe import load_recipe
from longdocvqa.documents import render
from longdocvqa.llm import ImageInput
from longdocvqa.pipeline import build

MAX_PIXELS = 200_000


def _endpoint(server) -> dict:
    return {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 5.0, "max_retries": 1}


def _scanned_copy(src: Path, out: Path, scanned: int, pages: int) -> list[str]:
    """The first `pages` pages of `src`; the first `scanned` become images with no text layer. Returns their text."""
    doc, new = pymupdf.open(src), pymupdf.open()
    texts = []
    for page in list(doc)[:scanned]:
        texts.append(page.get_text("text"))
        pix = page.get_pixmap(dpi=100)
        buf = io.BytesIO()
        Image.frombytes("RGB", (pix.width, pix.height), pix.samples).save(buf, "JPEG", quality=80)
        target = new.new_page(width=page.rect.width, height=page.rect.height)
        target.insert_image(target.rect, stream=buf.getvalue())
    new.insert_pdf(doc, from_page=scanned, to_page=pages - 1)
    new.save(out)
    return texts


@pytest.mark.slow
def test_image_only_pages_are_transcribed_by_the_vlm(server, write_recipe, pdf_dir, tmp_path) -> None:
    path = tmp_path / "scan.pdf"
    texts = _scanned_copy(pdf_dir / "R-data.pdf", path, scanned=3, pages=12)
    for index, text in enumerate(texts, start=1):  # the server cannot read pixels: say what each page shows
        page = render.render_page(path, index, dpi=144, fmt="jpeg", quality=90)
        server.register_image(ImageInput(page, MAX_PIXELS).data_url, text)
    recipe = load_recipe(write_recipe(
        [str(path)], pool={"min_pages": 1}, layout={"ocr": "vlm"}, decontaminate={"within_pool": False},
        render={"dpi": 144},  # the pages registered with the server above
        generate={"generator": {"kind": "openai", "endpoint": _endpoint(server)}, "tasks": ["extract-single"],
                  "max_pixels": MAX_PIXELS},
        assemble={"min_tokens": 1, "mixture": {"extract-single": 1.0}},
    ))  # fmt: skip
    out = tmp_path / "out"
    build(recipe, out, workers=1)
    ocr_calls = [b for b in server.bodies if "[OCR]" in json.dumps(b)]
    assert len(ocr_calls) == 3
    (stored,) = (out / "stages" / "layout-ocr").glob("*/*/*.json")
    layout = json.loads(stored.read_text())["ok"]
    first = " ".join(b["text"] for b in layout["pages"][0]["blocks"] if b["label"] != "figure")
    assert "R Data Import/Export" in first and layout["pages"][0]["image_only"]
    requests = server.requests
    build(recipe, out, workers=1)
    assert server.requests == requests  # stored and ledgered: nothing is asked twice


@pytest.mark.slow
def test_endpoint_outage_is_retried_on_the_next_run_without_repaying(server, write_recipe, pdf_dir, tmp_path):
    names = ["R-data.pdf", "etoolbox.pdf"]
    recipe = load_recipe(write_recipe(
        [str(pdf_dir / n) for n in names], decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": _endpoint(server)}, "input_mode": "text"},
        pool={"max_reject_rate": 0.9},  # an outage of 3 calls must not stop this small build (error budget)
        assemble={"budget_tokens": None},  # every planned unit, no top-up round: the calls are exactly the failed ones
    ))  # fmt: skip
    doomed: set[str] = set()  # the endpoint fails the first three distinct requests, and every retry of them

    def outage(index: int, body: dict) -> str:
        key = json.dumps(body["messages"], sort_keys=True)
        if len(doomed) < 3:
            doomed.add(key)
        return "server_error" if key in doomed else "ok"

    server.policy = outage
    out = tmp_path / "out"
    first = build(recipe, out, workers=1)
    assert first["stages"]["generate"]["incomplete_documents"] >= 1
    assert first["stages"]["generate"]["dropped"]["endpoint_error"] == 3
    sent_ok = server.requests - server.by_kind["server_error"]
    server.policy = None
    second = build(recipe, out, workers=1)
    assert "incomplete_documents" not in second["stages"]["generate"]
    assert second["stages"]["generate"]["by_task"] == {"extract-single": 2, "extract-multi": 2, "reasoning": 2}
    new_requests = server.requests - sent_ok - server.by_kind["server_error"]
    assert new_requests == first["stages"]["generate"]["dropped"]["endpoint_error"]  # only the failed calls


@pytest.mark.slow
def test_generation_split_over_processes_matches_one_process(server, write_recipe, pdf_dir, tmp_path) -> None:
    names = ["R-data.pdf", "etoolbox.pdf", "mathtools.pdf", "R-FAQ.pdf"]

    def recipe(processes: int):
        return load_recipe(write_recipe(
            [str(pdf_dir / n) for n in names], decontaminate={"within_pool": False},
            generate={"generator": {"kind": "openai", "endpoint": {**_endpoint(server), "max_concurrency": 8}},
                      "input_mode": "text", "processes": processes},
        ))  # fmt: skip

    split = build(recipe(2), tmp_path / "split", workers=1)
    sent = server.requests
    usage = split["stages"]["generate"]["usage"]["generator"]
    assert usage["sent"] == sent == sum(usage["by_task"][t]["sent"] for t in usage["by_task"])
    assert split["stages"]["generate"]["kept"] >= 2 * len(names)
    single = build(recipe(1), tmp_path / "single", workers=1)
    assert server.requests == 2 * sent  # a separate run directory: its own ledger

    def outputs(run: Path) -> dict[str, str]:
        return {p.name: p.read_text() for p in (run / "stages" / "generate").glob("*/*/*.json")}

    assert outputs(tmp_path / "split") == outputs(tmp_path / "single") and len(outputs(tmp_path / "single")) >= 3
    assert split["stages"]["generate"]["kept"] == single["stages"]["generate"]["kept"]
    assert split["examples"] == single["examples"]
    build(recipe(2), tmp_path / "split", workers=1)
    assert server.requests == 2 * sent  # resumed from the stored stage: no call is made again


@pytest.mark.slow
def test_a_wrong_key_stops_a_build_split_over_processes(server, write_recipe, pdf_dir, tmp_path) -> None:
    recipe = load_recipe(write_recipe(
        [str(pdf_dir / n) for n in ("R-data.pdf", "etoolbox.pdf")], decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": _endpoint(server)}, "input_mode": "text",
                  "processes": 2},
    ))  # fmt: skip
    server.policy = lambda _index, _body: "auth_error"
    with pytest.raises(ExternalServiceError, match="HTTP 401"):
        build(recipe, tmp_path / "out", workers=1)
