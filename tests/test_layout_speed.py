"""What the layout stage does for speed must not change what it gives: parse_document pauses Python's cycle
collector while it works (documents/parse.py), and the collector's state must come back as the caller left it, also
when the document is rejected; blocks built without validation and lines read with shortcuts are the same values."""

from __future__ import annotations

import gc
import random
import struct
from pathlib import Path

import pytest

from longdocvqa.core.errors import RejectedInput
from longdocvqa.core.recipe import LayoutConfig
from longdocvqa.core.records import Block, RawLine
from longdocvqa.documents import figures, render
from longdocvqa.documents import layout as layout_rules
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


def test_blocks_built_without_validation_are_the_validated_records() -> None:
    """layout._block skips pydantic's validation pass: each block must be the record validation would give, in its
    JSON too, also from a hand-made line with whole-number coordinates."""
    layout = parse_document(str(PDF), "latexbug", LayoutConfig())
    blocks = [block for page in layout.pages for block in page.blocks]
    assert len(blocks) > 100
    for block in blocks:
        again = Block.model_validate(block.model_dump())
        assert again == block and again.model_dump_json() == block.model_dump_json()
    made = layout_rules._block("paragraph", [RawLine((1, 2, 3, 4), "x", 10)], level=None)
    validated = Block(label="paragraph", bbox=(1, 2, 3, 4), text="x", order=0, font_size=10, level=None)
    assert made == validated and made.model_dump_json() == validated.model_dump_json()
    assert made.model_fields_set == validated.model_fields_set


def test_the_shortcut_is_checked_at_import_and_dropped_where_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the installed pydantic the unvalidated blocks hold (so labelling keeps its speed); a pydantic whose internals
    changed (here: the fields-set attribute no longer written) makes the import-time check fail, and blocks are then
    validated."""
    assert layout_rules._fast_blocks_hold() and layout_rules._make_line_block is layout_rules._line_block
    real_set = layout_rules._set

    def set_without_fields_set(obj: object, name: str, value: object) -> None:
        if name != "__pydantic_fields_set__":
            real_set(obj, name, value)

    monkeypatch.setattr(layout_rules, "_set", set_without_fields_set)
    assert not layout_rules._fast_blocks_hold()
    block = layout_rules._validated_line_block("section", (1.0, 2.0, 3.0, 4.0), "1 Scope", 10.0, 1)
    assert block.model_fields_set == {"label", "bbox", "text", "order", "font_size", "level"}


def test_text_lines_round_to_hundredths_and_find_the_main_span() -> None:
    """render._text_lines rounds with `_round2` and counts spans only where fonts differ: the values of the rule."""
    values = [0.125, 0.135, -0.004, 72.0049999, 1e300, float("inf"), float("-inf"), 3.14159]
    spans = [{"text": "x", "font": "CMR10", "flags": 0, "size": v} for v in values]
    rows = [{"spans": [span], "bbox": (v, -v, v, 0.0)} for span, v in zip(spans, values, strict=True)]
    blocks = [{"type": 0, "lines": rows}]
    lines, drawn = render._text_lines(blocks)
    assert not drawn
    for line, v in zip(lines, values, strict=True):
        expected = (render._round2(v), render._round2(-v), render._round2(v), render._round2(0.0))
        assert struct.pack("4d", *line.bbox) == struct.pack("4d", *expected) and line.size == render._round2(v)
    one_font = [{"text": t, "font": "CMMI10", "flags": 0, "size": 10.0} for t in ("ab", " ", "abc", "   ", "xyz")]
    mixed = [dict(one_font[0], font="CMTT10"), *one_font[1:3], dict(one_font[4], font="CMTT10", text="abcd")]
    for spans in (one_font, mixed, [dict(s, text=" " * 9 if i == 0 else s["text"]) for i, s in enumerate(one_font)]):
        line = {"spans": spans, "bbox": (0.0, 0.0, 10.0, 10.0)}
        (got,), _ = render._text_lines([{"type": 0, "lines": [line]}])
        main, mono, math = _main_span_by_counting(spans)
        assert (got.size, got.mono, got.math) == (main["size"], mono, math)
        assert render._main_span(spans, [s["text"] for s in spans])[0] is main


def _main_span_by_counting(spans: list[dict]) -> tuple[dict, bool, bool]:
    """The rule `_main_span` implements, span by span: the first longest non-blank span; monospace when most
    characters are, math when over 40% are."""
    main, longest, chars, mono, math = spans[0], -1, 0, 0, 0
    for span in spans:
        length = len(span["text"].strip())
        if length:
            is_mono, is_math, _ = render._font_kind(span["font"], span["flags"])
            chars, mono, math = chars + length, mono + length * is_mono, math + length * is_math
            if len(span["text"]) > longest:
                main, longest = span, len(span["text"])
    return main, mono > chars / 2, math > chars * 0.4


def test_parts_inside_a_box_are_those_within_it() -> None:
    """figures._inside is `within` over a list, written out for speed: both must keep the same rule and slack."""
    rng = random.Random(7)
    for _ in range(200):
        x, y = rng.uniform(0, 500), rng.uniform(0, 700)
        box = (x, y, x + rng.uniform(0, 200), y + rng.uniform(0, 200))
        parts = []
        for _ in range(30):
            px, py = rng.uniform(x - 20, box[2] + 20), rng.uniform(y - 20, box[3] + 20)
            parts.append((px, py, px + rng.choice([0.0, 1.0, 4.0, rng.uniform(0, 30)]), py + rng.uniform(0, 30)))
        assert figures._inside(parts, box) == [p for p in parts if figures.within(p, box)]
