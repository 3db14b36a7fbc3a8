"""The only module that imports PyMuPDF (with onnxruntime's telemetry kept off): probing PDFs, raw page text,
tables, page images, and where a text sits on a page (`text_boxes`, for the card's example pictures).

Rendering is lazy: the document stages need sizes and text, not pixels. Page images are made
when a later stage asks for them (generation, publishing) and are cached by the caller.
Images are rasterised by MuPDF and encoded by Pillow (libjpeg-turbo), which is ~8x faster than
MuPDF's own JPEG writer (docs/research/infra.md §4).
"""

from __future__ import annotations

import functools
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

from longdocvqa.assembly.tokens import RENDER_MAX_PIXELS, capped_dpi
from longdocvqa.core.errors import RejectedInput
from longdocvqa.core.records import RawBox, RawLine, RawPage
from longdocvqa.documents import sources
from longdocvqa.documents.text import clean, clean_metadata, dehyphenate_lines, dehyphenate_text, vocabulary

_PDF_MAGIC_WINDOW = 1024
_BOLD_FLAG = 16
_MONO_FLAG = 8
_MONO_FONT = re.compile(r"mono|courier|cmtt|sfmono|consol|inconsolata|typewriter|^tt|beramono|menlo", re.I)
_MATH_FONT = re.compile(r"cmmi|cmsy|cmex|msam|msbm|math|symbol|stix|rsfs|eufm|mnsymbol|esint", re.I)
_RULE_PT = 3.0  # a drawing thinner than this is a rule or a border line, never a figure
Box = tuple[float, float, float, float]
# PyMuPDF 2's layout model labels -> our block labels.
_MODEL_LABELS = {
    "title": "title", "section-header": "section", "text": "paragraph", "list-item": "list", "table": "table",
    "caption": "caption", "picture": "figure", "page-header": "header", "page-footer": "footer",
    "footnote": "footnote", "formula": "formula",
}  # fmt: skip


def _pymupdf() -> Any:
    # PyMuPDF 2 loads its ONNX layout model (pymupdf.layout, with onnxruntime) whenever it is imported: about
    # 0.4 s of CPU in every process that opens a PDF (each CLI command, each Ray worker), for a model only the
    # pymupdf-layout backend uses. It is kept out of that import and loaded by `layout_model()` when wanted.
    # onnxruntime's telemetry writes a persistent device id and an event queue under
    # ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ on import; this opt-out keeps it off when it is loaded (a
    # user's own ORT_DISABLE_TELEMETRY wins). docs/safety.md.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    if "pymupdf" not in sys.modules:
        sys.modules["pymupdf.layout"] = None  # type: ignore[assignment]  # PyMuPDF's own `import` then fails quietly
        try:
            import pymupdf
        finally:
            if "pymupdf.layout" in sys.modules and sys.modules["pymupdf.layout"] is None:
                del sys.modules["pymupdf.layout"]  # importable again, by `layout_model()` or anyone
    import pymupdf

    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    return pymupdf


def layout_model() -> None:
    """Load PyMuPDF 2's ONNX layout model (the pymupdf-layout backend); once per process."""
    _pymupdf()
    import pymupdf.layout  # noqa: F401  (its import activates the model: pymupdf._get_layout)


def preload() -> None:
    """Import PyMuPDF (and Pillow) now, in the build process, so per-document worker processes forked from it
    start with them loaded instead of importing them again each (about a second of CPU per document)."""
    _pymupdf()
    import PIL.Image  # noqa: F401


def open_pdf(path: str | Path) -> Any:
    """Open a PDF or raise RejectedInput naming the cause (not a PDF, corrupt, encrypted, empty)."""
    pymupdf = _pymupdf()
    head = sources.read_head(str(path), _PDF_MAGIC_WINDOW)  # a local file, a shard member (SHARD.tar/MEMBER), a URL
    if b"%PDF-" not in head:
        raise RejectedInput("not_pdf", "no %PDF header in the first 1 KiB")
    pymupdf.TOOLS.mupdf_warnings(reset=True)
    try:
        if sources.is_plain_file(str(path)):
            doc = pymupdf.open(str(path), filetype="pdf")
        else:
            doc = pymupdf.open(stream=sources.read_bytes(str(path)), filetype="pdf")
    except RejectedInput:
        raise
    except Exception as exc:  # MuPDF raises several types for broken files
        raise RejectedInput("corrupt", f"MuPDF cannot open it: {exc}") from None
    if doc.needs_pass or doc.is_encrypted:
        doc.close()
        raise RejectedInput("encrypted", "the PDF is password-protected")
    if doc.page_count == 0:
        doc.close()
        warnings = pymupdf.TOOLS.mupdf_warnings(reset=False).strip()
        if warnings:  # MuPDF "repaired" a damaged file into nothing
            raise RejectedInput("corrupt", f"damaged beyond repair: {warnings.splitlines()[0]}")
        raise RejectedInput("no_pages", "the PDF has zero pages")
    return doc


def probe(path: str | Path) -> dict[str, Any]:
    """Page count, page sizes (points) and metadata; rejects files MuPDF complains about."""
    pymupdf = _pymupdf()
    doc = open_pdf(path)
    try:
        sizes = [(p.rect.width, p.rect.height) for p in doc]  # unrounded: exact pixmap sizes depend on it
        meta = doc.metadata or {}
        warnings = pymupdf.TOOLS.mupdf_warnings(reset=True).strip()
    finally:
        doc.close()
    if warnings:
        first = warnings.splitlines()[0]
        raise RejectedInput("mupdf_warnings", f"MuPDF reported problems while reading it: {first}")
    return {
        "num_pages": len(sizes),
        "page_sizes_pt": sizes,
        "title": clean_metadata(meta.get("title")),
        "producer": clean_metadata(meta.get("producer")),
    }


def outline(path: str | Path) -> list[tuple[int, str, int]]:
    """The PDF outline (bookmarks) as (level, title, 1-based page); empty when there is none."""
    doc = open_pdf(path)
    try:
        return _outline(doc)
    finally:
        doc.close()


def _outline(doc: Any) -> list[tuple[int, str, int]]:
    toc = doc.get_toc(simple=True)
    return [(int(lvl), clean_metadata(str(title)), int(page)) for lvl, title, page, *_ in toc]


def raw_pages(path: str | Path, find_tables: bool = True, layout_model: bool = False) -> list[RawPage]:
    """Text lines with font size and weight, image boxes, ruled tables and optional model boxes, per page.

    Text is clean (text.clean) and end-of-line hyphenation is undone where the joined word occurs in the document."""
    return raw_document(path, find_tables, layout_model)[0]


def raw_document(
    path: str | Path, find_tables: bool = True, layout_model: bool = False
) -> tuple[list[RawPage], list[tuple[int, str, int]]]:
    """`raw_pages` and `outline` of one PDF, opening it once."""
    doc = open_pdf(path)
    try:
        pages = [_raw_page(page, find_tables, layout_model) for page in doc]
        toc = _outline(doc)
    finally:
        doc.close()
    words = vocabulary(line.text for page in pages for line in page.lines)
    for page in pages:
        texts = dehyphenate_lines([line.text for line in page.lines], words)
        page.lines = [line if t == line.text else line._replace(text=t)
                      for line, t in zip(page.lines, texts, strict=True) if t]  # fmt: skip
    return pages, toc


@functools.cache
def _text_flags() -> int:
    """`get_text("dict")`'s flags without images, plus vector blocks: whether a page draws any path comes from the
    text pass, so `get_cdrawings` (a second interpretation of the page) runs only where it finds something. On the
    9241 pages of bench/layout_identity.py's PDFs, a page has a vector block exactly when `get_cdrawings` is not
    empty, and TEXT_LAZY_VECTORS keeps the text lines and their order as they are without vectors (without it, a
    vector drawn inside a line of text splits the line)."""
    pymupdf = _pymupdf()
    flags: int = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
    return flags | pymupdf.TEXT_COLLECT_VECTORS | pymupdf.TEXT_LAZY_VECTORS


def _raw_page(page: Any, find_tables: bool, layout_model: bool) -> RawPage:
    lines, drawn = _text_lines(page.get_text("dict", flags=_text_flags())["blocks"])
    images = _image_boxes(page)
    graphics, rules, grids, paths = _drawings(page) if drawn else ([], [], [], [])
    tables = _tables(page, grids, paths) if find_tables and grids else []
    boxes = _model_boxes(page) if layout_model else None
    rect = page.rect
    return RawPage.model_construct(  # every field is built here, of the right type: no validation pass
        index=page.number + 1, width_pt=round(rect.width, 2), height_pt=round(rect.height, 2), lines=lines,
        image_boxes=images, tables=tables, model_boxes=boxes, graphic_boxes=graphics, rules=rules,
    )  # fmt: skip


def _text_lines(blocks: list[dict[str, Any]]) -> tuple[list[RawLine], bool]:
    """The non-blank text lines of a page's `get_text("dict")` blocks, and whether there is a vector block."""
    lines: list[RawLine] = []
    drawn = False
    append = lines.append
    for block in blocks:
        if block["type"]:  # 3, a vector block (the only other kind _text_flags gives)
            drawn = True
            continue
        for line in block["lines"]:
            spans = line["spans"]
            if len(spans) == 1:  # one font: no per-span counting
                main = spans[0]
                text = main["text"]
                text = (text if text.isascii() and text.isprintable() else clean(text)).strip()  # `clean`'s test
                if not text:
                    continue
                mono, math, bold = _font_kind(main["font"], main["flags"])
            else:
                texts = [s["text"] for s in spans]
                text = "".join(texts)
                text = (text if text.isascii() and text.isprintable() else clean(text)).strip()
                if not text:
                    continue
                main, mono, math = _main_span(spans, texts)
                bold = _font_kind(main["font"], main["flags"])[2]
            x0, y0, x1, y1 = line["bbox"]
            append(RawLine((_round2(x0), _round2(y0), _round2(x1), _round2(y1)), text, _round2(main["size"]), bold,
                           mono, math))  # fmt: skip
    return lines, drawn


def _round2(value: float) -> float:
    """`round(value, 2)` for a value MuPDF gives (a C float): `value * 100` is then exact in a double, so rounding
    it half to even is what `round(value, 2)` does, at half its cost (it formats the number in decimal). A zero keeps
    the value's sign, as `round` does (-0.0 for -0.004)."""
    try:
        hundredths = round(value * 100)
    except (OverflowError, ValueError):  # inf, nan: as round(value, 2) gives them
        return value
    return hundredths / 100 if hundredths else value * 0.0


def _main_span(spans: list[dict[str, Any]], texts: list[str]) -> tuple[dict[str, Any], bool, bool]:
    """The longest span (the first of the longest), and whether most characters are monospace / over 40% are in
    a math font. Blank spans do not count. `texts` holds the spans' texts.

    A line has 13 spans on average where it has more than one (every space between words is a span of its own), and
    half of such lines are in one font throughout: that font's kind is then the line's, without counting."""
    first = spans[0]
    font, flags = first["font"], first["flags"]
    for span in spans:
        if span["font"] != font or span["flags"] != flags:
            break
    else:
        lengths = [len(text) for text in texts]
        i = lengths.index(max(lengths))
        if texts[i].strip():  # the first of the longest is not blank: the main span
            mono, math, _ = _font_kind(font, flags)
            return spans[i], mono, math
    main, longest, chars, mono_chars, math_chars = first, -1, 0, 0, 0
    for span, text in zip(spans, texts, strict=True):
        if text == " ":  # most blank spans
            continue
        length = len(text.strip())
        if not length:
            continue
        is_mono, is_math, _ = _font_kind(span["font"], span["flags"])
        chars += length
        if is_mono:
            mono_chars += length
        if is_math:
            math_chars += length
        if len(text) > longest:
            main, longest = span, len(text)
    return main, mono_chars > chars / 2, math_chars > chars * 0.4


@functools.lru_cache(maxsize=4096)
def _font_kind(font: str, flags: int) -> tuple[bool, bool, bool]:
    """(monospace, math font, bold) for a span's font name and flags."""
    mono = bool(flags & _MONO_FLAG) or bool(_MONO_FONT.search(font))
    return mono, bool(_MATH_FONT.search(font)), bool(flags & _BOLD_FLAG) or "bold" in font.lower()


def _image_boxes(page: Any) -> list[Box]:
    """Where images are drawn; the resource list is checked first because `get_image_info` builds a second
    text page (as slow as the text extraction itself) and most pages have no image."""
    if not page.get_images(full=False):
        return []
    return [tuple(round(v, 2) for v in info["bbox"]) for info in page.get_image_info()]  # type: ignore[misc]


def _drawings(page: Any) -> tuple[list[Box], list[Box], list[Box], list[dict[str, Any]]]:
    """Vector graphics in one pass: every path's box (layout groups them into figures), thin horizontal rules,
    and ruled grids' boxes. A path covering most of the page is a background and is left out. Last, the paths
    themselves (`get_cdrawings`), for the table finder."""
    graphics: list[Box] = []
    rules: list[Box] = []
    segments: list[Box] = []
    page_area = page.rect.width * page.rect.height
    paths = page.get_cdrawings()
    for path in paths:
        x0, y0, x1, y1 = path["rect"]
        x0, y0, x1, y1 = _round2(x0), _round2(y0), _round2(x1), _round2(y1)
        width, height = x1 - x0, y1 - y0
        if height < _RULE_PT and width >= _RULE_PT:
            rules.append((x0, y0, x1, y1))
        if min(width, height) < _RULE_PT:
            segments.append((x0, y0, x1, y1))
        else:
            segments.extend(_segments(path["items"]))
        if width * height < 0.6 * page_area:
            graphics.append((x0, y0, x1, y1))
    return graphics, rules, _grids(segments), paths


def _segments(items: list[Any]) -> list[Box]:
    """Straight lines and thin rectangles inside one path (a table grid is often drawn as one path)."""
    out: list[Box] = []
    for item in items:
        if item[0] == "l":
            (x0, y0), (x1, y1) = item[1], item[2]
            out.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        elif item[0] == "re" and min(item[1][2] - item[1][0], item[1][3] - item[1][1]) < 2:
            out.append(tuple(item[1]))
    return out


def _grids(segments: list[Box]) -> list[Box]:
    """Boxes where at least 3 horizontal rules of the same extent are crossed by 3 vertical ones: ruled tables.

    A framed code box (2 + 2 lines) or a footnote rule is not; the table finder is slow, so it only runs here.
    """
    rows: dict[tuple[int, int], set[int]] = {}
    for x0, y0, x1, y1 in segments:
        if y1 - y0 < 1 and x1 - x0 >= 20:
            rows.setdefault((round(x0 / 3), round(x1 / 3)), set()).add(round(y0))
    grids = []
    for (left, right), ys in rows.items():
        if _wide_gaps(ys, 9) < 2:  # rows of text are >= 9 pt apart; the 5 lines of a music staff are not
            continue
        top, bottom = min(ys), max(ys)
        columns = {round(x0) for x0, y0, x1, y1 in segments if x1 - x0 < 1 and y1 - y0 >= 8
                   and left * 3 - 3 <= x0 <= right * 3 + 3 and y0 < bottom and y1 > top}  # fmt: skip
        if len(columns) >= 3:
            grids.append((left * 3.0 - 3, top - 3.0, right * 3.0 + 3, bottom + 3.0))
    return grids


def _wide_gaps(values: set[int], min_gap: int) -> int:
    """How many gaps between consecutive sorted values are at least `min_gap`."""
    ordered = sorted(values)
    return sum(b - a >= min_gap for a, b in zip(ordered, ordered[1:], strict=False))


def _tables(page: Any, grids: list[Box], paths: list[dict[str, Any]]) -> list[RawBox]:
    """Ruled tables only: `use_layout=False` keeps PyMuPDF 2 from running its ONNX layout model here (~90% of
    the time it took); the `pymupdf-layout` backend runs that model deliberately and uses its labels. The finder
    is given the page's paths, read once already, in `get_drawings`' form (on a rotated page it turns the page
    upright first and reads them itself)."""
    clip = (min(g[0] for g in grids), min(g[1] for g in grids), max(g[2] for g in grids), max(g[3] for g in grids))
    try:
        found = page.find_tables(clip=clip, use_layout=False, paths=None if page.rotation else _as_drawings(paths))
    except TypeError:  # PyMuPDF < 1.26 has no layout model and no such argument
        found = page.find_tables(clip=clip)
    boxes = []
    for table in found.tables:
        rows = table.extract() or []
        text = clean("\n".join(" | ".join(c or "" for c in row) for row in rows))
        cells = [c for row in rows for c in row]
        filled = sum(bool(c and c.strip()) for c in cells)
        full_rows = sum(sum(bool(c and c.strip()) for c in row) >= 2 for row in rows)
        if table.row_count >= 2 and full_rows >= 2 and filled >= 0.4 * len(cells):  # not a staff, not a frame
            boxes.append(RawBox(bbox=tuple(round(v, 2) for v in table.bbox), label="table", text=text))
    return boxes


_PATH_KEYS = ("closePath", "fill", "color", "width", "lineCap", "lineJoin", "dashes", "stroke_opacity",
              "fill_opacity", "even_odd")  # fmt: skip


def _as_drawings(paths: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`get_cdrawings` paths as `page.get_drawings()` gives them (Rect, Point and Quad objects, every key of a fill
    or stroke path present), built on copies: the table finder edits the paths it is given."""
    pymupdf = _pymupdf()
    point, rect, quad = pymupdf.Point, pymupdf.Rect, pymupdf.Quad
    out = []
    for path in paths:
        items: list[tuple[Any, ...]] = []
        for item in path["items"]:
            if item[0] == "re":
                items.append(("re", rect(item[1]).normalize(), item[2]))
            elif item[0] == "qu":
                items.append(("qu", quad(item[1])))
            else:
                items.append((item[0], *(point(p) for p in item[1:])))
        copy = dict(path, rect=rect(path["rect"]), items=items)
        if copy["type"] in ("f", "s"):
            for key in _PATH_KEYS:
                copy.setdefault(key, None)
        out.append(copy)
    return out


def _model_boxes(page: Any) -> list[RawBox]:
    layout_model()
    page.get_layout()
    boxes = []
    for x0, y0, x1, y1, label in page.layout_information or []:
        text = clean(page.get_text("text", clip=(x0, y0, x1, y1))).strip()
        mapped = _MODEL_LABELS.get(label, "paragraph")
        boxes.append(RawBox(bbox=(round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)), label=mapped, text=text))
    return boxes


def page_texts(path: str | Path) -> list[str]:
    """Plain text of every page, in order (for decontamination and checks), clean and safely de-hyphenated."""
    doc = open_pdf(path)
    try:
        texts = [clean(page.get_text("text")) for page in doc]
    finally:
        doc.close()
    words = vocabulary(texts)
    return [dehyphenate_text(text, words) for text in texts]


def find_text(path: str | Path, index: int, needles: list[str], limit: int = 40) -> list[Box]:
    """Where `needles` occur on 1-based page `index` (MuPDF's search: case-insensitive, across line breaks and
    hyphenation, ligatures such as `ﬁ` expanded), as boxes in fractions of the page as shown (rotation applied)."""
    pymupdf = _pymupdf()
    flags = pymupdf.TEXT_DEHYPHENATE | pymupdf.TEXT_MEDIABOX_CLIP  # no TEXT_PRESERVE_LIGATURES: "fi" finds "ﬁ"
    doc = open_pdf(path)
    try:
        page = doc[index - 1]
        width, height = page.rect.width or 1.0, page.rect.height or 1.0
        boxes: list[Box] = []
        for needle in needles:
            for quad in page.search_for(needle, quads=True, flags=flags)[:limit]:
                r = quad.rect * page.rotation_matrix
                boxes.append((r.x0 / width, r.y0 / height, r.x1 / width, r.y1 / height))
        return boxes[:limit]
    finally:
        doc.close()


def pixel_size(width_pt: float, height_pt: float, dpi: int) -> tuple[int, int]:
    """The pixmap size MuPDF produces for a page at `dpi` (US-Letter at 144 DPI: 1224 x 1584)."""
    pymupdf = _pymupdf()
    matrix = pymupdf.Matrix(dpi / 72, dpi / 72)
    irect = pymupdf.Rect(0, 0, width_pt, height_pt).transform(matrix).irect
    return irect.width, irect.height


def render_page(
    path: str | Path, index: int, dpi: int = 144, fmt: str = "jpeg", quality: int = 90,
    max_pixels: int = RENDER_MAX_PIXELS,
) -> bytes:  # fmt: skip
    """Render 1-based page `index` to an RGB image encoded as JPEG, PNG or WebP, at most `max_pixels` pixels."""
    return render_pages(path, [index], dpi, fmt, quality, max_pixels)[index]


def render_pages(
    path: str | Path, indices: list[int], dpi: int, fmt: str, quality: int, max_pixels: int = RENDER_MAX_PIXELS
) -> dict[int, bytes]:
    """Render several pages of one document, opening it once; a page whose pixmap at `dpi` would exceed
    `max_pixels` renders at the lower DPI that fits (tokens.capped_dpi, which token counting also uses)."""
    doc = open_pdf(path)
    try:
        return {i: encode_pixmap(_pixmap(doc[i - 1], dpi, max_pixels), fmt, quality) for i in indices}
    finally:
        doc.close()


def _pixmap(page: Any, dpi: int, max_pixels: int) -> Any:
    rect = page.rect
    return page.get_pixmap(dpi=capped_dpi(rect.width, rect.height, dpi, max_pixels), alpha=False)


def encode_pixmap(pix: Any, fmt: str, quality: int) -> bytes:
    """Encode a MuPDF RGB pixmap with Pillow straight from its raw samples."""
    from PIL import Image

    image = Image.frombuffer("RGB", (pix.width, pix.height), pix.samples, "raw", "RGB", pix.stride, 1)
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=quality)
    elif fmt == "png":
        image.save(out, "PNG", compress_level=1)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=quality)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return out.getvalue()


Rect = tuple[float, float, float, float]


def text_boxes(path: str | Path, page_number: int, needles: list[str], limit: int = 12) -> tuple[Rect, list[Rect]]:
    """Where the text layer of 1-based page `page_number` holds each of `needles` (MuPDF's case-insensitive search):
    (the page's box in points as rendered, the boxes found in the same points, at most `limit`)."""
    doc = open_pdf(path)
    try:
        page = doc[page_number - 1]
        found = [r * page.rotation_matrix for needle in needles if needle.strip() for r in page.search_for(needle)]
        box = page.rect
        return (box.x0, box.y0, box.x1, box.y1), [(r.x0, r.y0, r.x1, r.y1) for r in found[:limit]]
    finally:
        doc.close()
