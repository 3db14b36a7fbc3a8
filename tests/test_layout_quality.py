"""Layout quality on real PDFs, scored against hand-labelled pages and real outlines, and the `layout` command.

The thresholds are the figures this layout reaches (bench/layout.py prints them in full); a change that makes
the labels, the headings found without an outline, or the segment starts worse fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pymupdf
import pytest
from typer.testing import CliRunner

from longdocvqa.cli import app
from longdocvqa.core.recipe import LayoutConfig, SegmentConfig
from longdocvqa.core.records import Block, RawLine, RawPage
from longdocvqa.documents import layoutview
from longdocvqa.documents.headings import heading_level, index_letter
from longdocvqa.documents.layout import parse_layout
from longdocvqa.documents.layout_eval import LabelScores, score_page
from longdocvqa.documents.parse import parse_document

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = (ROOT / "tests/data/pdfs", ROOT / "tests/data/layout")
TRUTH = ROOT / "tests/data/layout_truth.json"
LABELS = {"title", "section", "paragraph", "list", "table", "figure", "caption", "header", "footer", "footnote",
          "formula"}  # fmt: skip
runner = CliRunner()


@pytest.fixture(scope="module")
def label_scores() -> LabelScores:
    return layoutview.evaluate_labels(TRUTH, FOLDERS)


def test_truth_covers_enough_pages_and_pdfs() -> None:
    pages = json.loads(TRUTH.read_text())["pages"]
    assert len(pages) >= 30 and len({p["pdf"] for p in pages.values()}) >= 15
    assert {b["label"] for p in pages.values() for b in p["blocks"]} <= LABELS
    for item in pages.values():
        layoutview.find_pdf(item["pdf"], FOLDERS)  # every labelled PDF ships with the tests


def test_labelled_pages_precision_stays_above_reached_thresholds(label_scores: LabelScores) -> None:
    assert label_scores.precision() >= 0.85
    for label in ("paragraph", "section", "header/footer", "table", "figure"):
        assert label_scores.precision(label) >= 0.80, (label, label_scores.precision(label))
    assert label_scores.predicted["table"] >= 2 and label_scores.predicted["figure"] >= 5
    assert label_scores.recall("header/footer") >= 0.85 and label_scores.recall("section") >= 0.80


def test_scoring_uses_the_smallest_truth_block_holding_the_centre() -> None:
    truth = [{"bbox": [0, 0, 100, 100], "label": "figure"}, {"bbox": [10, 10, 30, 20], "label": "caption"},
             {"bbox": [0, 200, 50, 210], "label": "footer"}]  # fmt: skip
    blocks = [Block(label="caption", bbox=(12, 12, 28, 18), text="Fig. 1", order=0),
              Block(label="paragraph", bbox=(40, 40, 60, 60), text="x", order=1),
              Block(label="header", bbox=(0, 200, 50, 210), text="3", order=2)]  # fmt: skip
    scores = LabelScores()
    score_page(blocks, truth, scores)
    assert scores.right["caption"] == 1 and scores.right["paragraph"] == 0
    assert scores.right["header"] == 0 and scores.right["header/footer"] == 1
    assert scores.recall("figure") == 0 and scores.recall("header/footer") == 1


def test_headings_and_segment_starts_with_the_outline_hidden() -> None:
    pdfs = sorted(p for folder in FOLDERS for p in folder.glob("*.pdf"))
    headings, aligned, total = layoutview.evaluate_headings(pdfs, SegmentConfig(per_document=3))
    assert headings.predicted > 200 and headings.truth > 200
    assert headings.precision >= 0.90 and headings.recall >= 0.80, (headings.precision, headings.recall)
    assert total >= 60 and aligned / total >= 0.93, (aligned, total)


def test_lines_that_only_look_numbered_or_large_are_no_headings() -> None:
    def level(text: str, size: float = 12.0, bold: bool = True) -> int | None:
        return heading_level(RawLine((72, 100, 400, 112), text, size, bold=bold), 10.0)

    assert level("2.1 Installation") == 2 and level("4.1 draw") == 2 and level("1.4 Small primes l.") == 2
    assert level("6 one , two , three ,") is None  # a numbered line of a listing's output, ending in a comma
    date = RawLine((72, 100, 400, 112), "30 December 2018, v1.1", 12.0)
    assert heading_level(date, 10.0, first_page=True) is None  # on a title page: a date, not section 30
    assert level("4 and 10. This style is sometimes referred to as a range-frame graph.") is None
    assert level("M F") is None and level("N P") is None  # letters side by side: index columns, music glyphs
    assert index_letter("M F") and index_letter("C") and not index_letter("Q & A")
    assert level("long vector long vector", 20.0, bold=False) is None  # a typeset example, large and plain
    assert level("1.100 dotted note", 14.4, bold=False) == 2  # a glossary's hundredth entry is numbered
    assert level("l3draw-state implementation", 14.4) == 2 and level("fontspec-code-load.dtx", 14.4, False) == 2


def test_headings_inside_a_captioned_page_of_example_output_are_not_headings() -> None:
    lines = [RawLine((100, 120, 300, 134), "1 First Steps", 14.4, bold=True),
             RawLine((100, 150, 500, 160), "This is the example document, typeset and shown whole.", 10.0),
             RawLine((300, 650, 305, 660), "1", 10.0),
             RawLine((200, 680, 420, 690), "Figure 1: Output from example.tex.", 10.0)]  # fmt: skip
    page = RawPage(index=2, width_pt=600, height_pt=800, lines=lines)
    shown = parse_layout("x", [page], [], LayoutConfig()).pages[0]
    assert [b.label for b in shown.blocks if b.text == "1 First Steps"] == ["paragraph"]
    own = RawPage(index=2, width_pt=600, height_pt=800, lines=lines[:2])  # no caption below: its own heading
    assert [b.label for b in parse_layout("x", [own], [], LayoutConfig()).pages[0].blocks][0] == "section"


def test_section_numbers_join_titles_and_page_numbers_are_furniture(pdf_dir: Path) -> None:
    layout = parse_document(str(pdf_dir / "R-data.pdf"), "r-data", LayoutConfig())
    page = layout.pages[11]
    assert [b.text for b in page.blocks if b.label == "section"] == [
        "2 Spreadsheet-like data", "2.1 Variations on read.table"]  # fmt: skip
    assert [b.text for b in page.blocks if b.label == "header"] == ["8"]
    brief = parse_document(str(pdf_dir / "brief.pdf"), "brief", LayoutConfig())
    assert [b.text for b in brief.pages[10].blocks if b.label == "footer"] == ["11"]  # 16% above the bottom edge


def test_footnotes_need_a_rule_and_code_is_never_a_formula() -> None:
    fancy = layoutview.layout_of(FOLDERS[1] / "fancyvrb-doc.pdf")  # numbered code lines in framed boxes
    assert [b.text[:6] for b in fancy.pages[3].blocks if b.label == "footnote"] == ["1_Yes!"]  # a real one
    for index in (8, 18):  # pages of small numbered code lines: no footnotes, no figures
        assert not [b for b in fancy.pages[index - 1].blocks if b.label in ("footnote", "figure")]
    seminar = layoutview.layout_of(FOLDERS[0] / "seminar-doc.pdf")
    notes = [b.text for b in seminar.pages[30].blocks if b.label == "footnote"]
    assert notes and notes[0].startswith("12")
    brief = layoutview.layout_of(FOLDERS[0] / "brief.pdf")  # a documented .dtx: TeX source everywhere
    assert not [b.text for p in brief.pages for b in p.blocks if b.label == "formula"]


def test_figures_group_drawings_and_skip_rules() -> None:
    gs9 = layoutview.layout_of(FOLDERS[0] / "GS9_Color_Management.pdf")
    figures = [b for b in gs9.pages[4].blocks if b.label == "figure"]
    assert len(figures) == 1 and figures[0].bbox[3] - figures[0].bbox[1] > 300  # one diagram, not 200 paths
    for page in gs9.pages:
        assert all(b.bbox[3] - b.bbox[1] >= 10 for b in page.blocks if b.label == "figure")


def test_heuristic_backend_does_not_run_the_layout_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = pymupdf.Page.get_layout

    def counting(self, *args, **kwargs):  # a spy: counts, then runs the real method
        calls.append(self.number)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "get_layout", counting)
    layout = parse_document(str(FOLDERS[0] / "seminar-doc.pdf"), "seminar", LayoutConfig())
    assert any(b.label == "table" for p in layout.pages for b in p.blocks)  # the table finder did run
    assert calls == []


def test_layout_command_prints_json_and_draws_pages(tmp_path: Path) -> None:
    pdf = FOLDERS[0] / "R-data.pdf"
    result = runner.invoke(app, ["layout", str(pdf), "--pages", "12-13", "--json", "--png", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["page"] for p in data["pages"]] == [12, 13]
    for page in data["pages"]:
        for block in page["blocks"]:
            assert block["label"] in LABELS and len(block["bbox"]) == 4 and isinstance(block["text"], str)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R-data-p12.png", "R-data-p13.png"]
    assert (tmp_path / "R-data-p12.png").read_bytes().startswith(b"\x89PNG")
    text = runner.invoke(app, ["layout", str(pdf), "--pages", "12"])
    assert text.exit_code == 0 and "section   2.1 Variations on read.table" in text.output


def test_layout_command_reports_bad_input(tmp_path: Path) -> None:
    pdf = FOLDERS[0] / "R-data.pdf"
    bad_range = runner.invoke(app, ["layout", str(pdf), "--pages", "40-99"])
    assert bad_range.exit_code == 2 and "outside pages 1-41" in bad_range.output
    fake = tmp_path / "notes.pdf"
    fake.write_text("not a pdf")
    rejected = runner.invoke(app, ["layout", str(fake)])
    assert rejected.exit_code == 1 and "notes.pdf" in rejected.output and "not_pdf" in rejected.output
