"""Text is clean at extraction: surrogates, control characters, ligatures, safe de-hyphenation, one comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf

from longdocvqa.core.recipe import LayoutConfig, PoolConfig
from longdocvqa.documents import render
from longdocvqa.documents.parse import parse_document
from longdocvqa.documents.pool import inspect_file
from longdocvqa.documents.text import (
    clean,
    clean_metadata,
    comparable,
    dehyphenate_lines,
    dehyphenate_text,
    vocabulary,
)
from longdocvqa.generate import normalise


def test_lone_surrogates_and_controls_are_replaced_and_pairs_joined() -> None:
    raw = "T\ud80ceX\x00 font\x07 enc\x1bodings \ud83d\ude00 done"
    cleaned = clean(raw)
    assert cleaned == "T\ufffdeX  font  enc odings \U0001f600 done"
    cleaned.encode("utf-8")  # storable
    assert json.loads(json.dumps(cleaned, ensure_ascii=False)) == cleaned
    assert clean("line one\r\nline two\tcell") == "line one\nline two\tcell"


def test_ligatures_become_letters_and_other_text_is_untouched() -> None:
    assert clean("pro\ufb01les \ufb02ow e\ufb03cient") == "profiles flow efficient"
    assert clean("x² 全角 مرحبا") == "x² 全角 مرحبا"  # no NFKC in stored text


def test_metadata_is_one_clean_line() -> None:
    assert clean_metadata(" A\ud800 title\nwith\x0bbreaks ") == "A\ufffd title with breaks"
    assert clean_metadata(None) == ""


def test_hyphenation_is_undone_only_when_the_word_is_attested() -> None:
    words = vocabulary(["information is everywhere", "a well known fact"])
    lines = ["the infor-", "mation here", "a well-", "known thing"]
    assert dehyphenate_lines(lines, words) == ["the information", "here", "a well-", "known thing"]
    assert dehyphenate_lines(["infor-", "mation"], words) == ["information", ""]
    text = "the infor-\nmation is\na well-\nknown fact"
    assert dehyphenate_text(text, words) == "the information\nis\na well-\nknown fact"


def test_model_output_and_page_text_compare_through_one_normalisation() -> None:
    assert normalise("Pro\ufb01les, and\nINFOR-\nmation!") == comparable("profiles and information")
    assert comparable("⟨true⟩if") == "true if"


def _hostile_text_pdf(path: Path) -> None:
    """A real PDF with hyphenated lines and a control character in its text layer, and a title holding lone
    UTF-16 surrogates (MuPDF returns them unpaired: on main this file was rejected `unreadable`)."""
    doc = pymupdf.open()
    page = doc.new_page()
    lines = ["Every information counts here.", "Our infor-", "mation about files.", "A well-", "known bell\x07."]
    for i, line in enumerate(lines):
        page.insert_text((72, 100 + 20 * i), line, fontname="helv")
    doc.set_metadata({"title": "placeholder"})
    info_xref = int(doc.xref_get_key(-1, "Info")[1].split()[0])
    doc.xref_set_key(info_xref, "Title", "<FEFF0054DC000041D80C>")  # "T", lone low surrogate, "A", lone high
    doc.save(path)


def test_a_pdf_with_a_surrogate_title_and_ligatures_is_read_clean(tmp_path: Path) -> None:
    path = tmp_path / "odd text.pdf"
    _hostile_text_pdf(path)
    title = render.probe(path)["title"]
    assert title.startswith("T") and "\ufffd" in title
    title.encode("utf-8")
    texts = render.page_texts(path)
    assert "information\nabout files" in texts[0] and "well-\nknown" in texts[0] and "\x07" not in texts[0]
    layout = parse_document(str(path), "0" * 64, LayoutConfig())
    body = " ".join(layout.page_text(1).split())
    assert "Our information about files" in body and "A well-known bell" in body and "\x07" not in body
    json.dumps(layout.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")
    assert inspect_file(path, PoolConfig(paths=[str(path)], min_pages=1)).title == title


def test_ligatures_in_a_real_latex_manual_are_spelled_out(pdf_dir: Path) -> None:
    path = pdf_dir / "etoolbox.pdf"
    raw = "".join(pymupdf.open(path)[i].get_text() for i in range(5))
    assert any(lig in raw for lig in "\ufb00\ufb01\ufb02\ufb03\ufb04"), "the manual has ligature glyphs"
    texts = render.page_texts(path)
    layout = parse_document(str(path), "1" * 64, LayoutConfig())
    stored = "".join(texts) + "".join(layout.page_text(p.index) for p in layout.pages)
    assert not any(lig in stored for lig in "\ufb00\ufb01\ufb02\ufb03\ufb04")
