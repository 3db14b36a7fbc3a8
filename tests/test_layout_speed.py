"""parse_document pauses Python's cycle collector while it works (documents/parse.py): the collector's state
must come back as the caller left it, also when the document is rejected."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from longdocvqa.core.errors import RejectedInput
from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.documents.parse import parse_document

PDF = Path(__file__).resolve().parents[1] / "tests/data/pdfs/latexbug.pdf"


def test_the_cycle_collector_is_resumed_after_a_document(tmp_path: Path) -> None:
    assert gc.isenabled()
    assert parse_document(str(PDF), "latexbug", LayoutConfig()).num_pages > 0
    assert gc.isenabled()
    broken = tmp_path / "not.pdf"
    broken.write_bytes(b"plain text, no PDF header")
    with pytest.raises(RejectedInput):
        parse_document(str(broken), "broken", LayoutConfig())
    assert gc.isenabled()


def test_a_paused_collector_stays_paused() -> None:
    gc.disable()
    try:
        parse_document(str(PDF), "latexbug", LayoutConfig())
        assert not gc.isenabled()
    finally:
        gc.enable()
