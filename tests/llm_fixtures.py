"""Fixtures and helpers for the LLM and QA tests: the scripted loopback server and real parsed documents.

Test modules import what they use from here (importing `scripted_server` registers the `server` fixture);
the real documents are parsed from tests/data/pdfs by the project's own layout and segment code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from openai_server import ScriptedOpenAI

from longdocvqa.core.fingerprint import file_sha256
from longdocvqa.core.recipe import LayoutConfig, SegmentConfig
from longdocvqa.core.recipe_generate import EndpointConfig, GenerateConfig
from longdocvqa.core.records import LayoutDoc, PdfDoc, Segment
from longdocvqa.llm import ImageInput, LLMClient

PDFS = Path(__file__).resolve().parent / "data" / "pdfs"


def closing(work: Awaitable[Any], *clients: LLMClient) -> Any:
    """asyncio.run(work), then close the clients' HTTP sessions on the same event loop."""

    async def go() -> Any:
        try:
            return await work
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(go())


@pytest.fixture(name="server")
def scripted_server() -> Iterator[ScriptedOpenAI]:
    """A fresh scripted OpenAI-compatible server on 127.0.0.1 (random port)."""
    app = ScriptedOpenAI().start()
    yield app
    app.stop()


@cache
def real_document(name: str = "R-data.pdf", per_document: int = 1) -> tuple[PdfDoc, LayoutDoc, list[Segment]]:
    """A real bundled PDF parsed into layout blocks and section-aligned segments (cached per session)."""
    from longdocvqa.documents.parse import parse_document
    from longdocvqa.documents.segment import sample_segments

    path = PDFS / name
    sha = file_sha256(path)
    layout = parse_document(str(path), sha, LayoutConfig())
    segments = sample_segments(layout, SegmentConfig(per_document=per_document), seed=0)
    sizes = [(p.width_pt, p.height_pt) for p in layout.pages]
    doc = PdfDoc(sha256=sha, path=str(path), size_bytes=path.stat().st_size, num_pages=layout.num_pages,
                 page_sizes_pt=sizes)  # fmt: skip
    return doc, layout, segments


def endpoint(server: ScriptedOpenAI, **overrides: Any) -> EndpointConfig:
    """An endpoint on the scripted server with short timeouts and no API key."""
    values: dict[str, Any] = {"base_url": server.base_url, "model": "scripted", "api_key_env": None,
                              "timeout_s": 5.0, "max_retries": 4}  # fmt: skip
    return EndpointConfig.model_validate({**values, **overrides})


def generate_config(
    server: ScriptedOpenAI, endpoint_overrides: dict | None = None, **overrides: Any
) -> GenerateConfig:
    """A GenerateConfig with the openai generator pointed at the scripted server."""
    ep = endpoint(server, **(endpoint_overrides or {}))
    data: dict[str, Any] = {"generator": {"kind": "openai", "endpoint": ep.model_dump()}, "input_mode": "text"}
    return GenerateConfig.model_validate({**data, **overrides})


def page_images(doc: PdfDoc, layout: LayoutDoc, server: ScriptedOpenAI | None, max_pixels: int) -> Callable:
    """page_image(i) for `doc` (real 144-DPI renders), telling `server` which text each sent image shows."""
    from longdocvqa.documents import render

    cache_: dict[int, bytes] = {}

    def page_image(index: int) -> bytes:
        if index not in cache_:
            cache_[index] = render.render_page(doc.path, index, dpi=144, fmt="jpeg", quality=90)
            if server is not None:
                server.register_image(ImageInput(cache_[index], max_pixels).data_url, layout.page_text(index))
        return cache_[index]

    return page_image
