"""`longdocvqa layout PDF --png DIR` on a real PDF: the page images a person checks a layout with.

Each block is outlined in its label's colour and tagged with its reading order and label on a filled tag of that
colour; a legend of the page's labels sits below the page; the page is rendered at layoutview.PNG_DPI.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from longdocvqa.cli import app
from longdocvqa.documents import layoutview, render

PDF = Path(__file__).resolve().parents[1] / "tests/data/pdfs/seminar-doc.pdf"
runner = CliRunner()


def test_every_label_has_its_own_colour() -> None:
    assert len(set(layoutview.COLOURS.values())) == len(layoutview.COLOURS)


def test_the_png_shows_each_label_in_its_colour_with_a_legend(tmp_path: Path) -> None:
    result = runner.invoke(app, ["layout", str(PDF), "--pages", "39", "--json", "--png", str(tmp_path)])
    assert result.exit_code == 0, result.output
    labels = {block["label"] for block in json.loads(result.stdout)["pages"][0]["blocks"]}
    assert {"table", "caption", "section", "paragraph", "footer"} <= labels  # a page with a mix of labels
    image = Image.open(io.BytesIO((tmp_path / "seminar-doc-p39.png").read_bytes())).convert("RGB")
    doc = render.open_pdf(PDF)
    width_pt, height_pt = doc[38].rect.width, doc[38].rect.height
    doc.close()
    page_w, page_h = render.pixel_size(width_pt, height_pt, layoutview.PNG_DPI)
    assert image.width == page_w and image.height > page_h  # the page at 144 DPI, the legend below it
    page = image.crop((0, 0, page_w, page_h))
    legend = image.crop((0, page_h, page_w, image.height))
    counts = {colour: n for n, colour in page.getcolors(maxcolors=1 << 20)}
    legend_counts = {colour: n for n, colour in legend.getcolors(maxcolors=1 << 20)}
    for label in labels:
        colour = layoutview.COLOURS[label]
        assert counts.get(colour, 0) >= 300, label  # its tags, filled with the label's colour, and its outlines
        assert legend_counts.get(colour, 0) >= 100, label  # its swatch in the legend
    for label in set(layoutview.COLOURS) - labels:
        # the legend names this page's labels only: no swatch (a few anti-aliased pixels of text may match a grey)
        assert legend_counts.get(layoutview.COLOURS[label], 0) < 50, label


def test_tags_scale_with_the_page_and_keep_a_contrasting_text() -> None:
    assert layoutview._ink(layoutview.COLOURS["caption"]) == (0, 0, 0)  # olive: black text
    assert layoutview._ink(layoutview.COLOURS["paragraph"]) == (255, 255, 255)  # blue: white text
    assert layoutview._font(17).size == 17
    assert layoutview._tag_spot((100, 100, 300, 150), (80, 20), (600, 800), []) == (18, 100, 98, 120)  # left of it
    inside = layoutview._tag_spot((0, 0, 300, 150), (80, 20), (600, 800), [])  # no room left or above: in the corner
    assert inside == (0, 0, 80, 20)


def test_a_small_page_is_drawn_large_enough_to_read(tmp_path: Path) -> None:
    slides = PDF.parent / "beamerexample-lecture-beamer-version.pdf"  # 363 x 272 pt slides
    result = runner.invoke(app, ["layout", str(slides), "--pages", "5", "--png", str(tmp_path)])
    assert result.exit_code == 0, result.output
    image = Image.open(tmp_path / "beamerexample-lecture-beamer-version-p5.png")
    assert image.width >= layoutview._MIN_WIDTH_PX
    counts = {colour: n for n, colour in image.convert("RGB").getcolors(maxcolors=1 << 20)}
    assert counts.get(layoutview.COLOURS["list"], 0) >= 300 and counts.get(layoutview.COLOURS["figure"], 0) >= 300
