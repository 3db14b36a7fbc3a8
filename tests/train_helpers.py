"""Test helpers for train/: a small `sft` dataset folder in Hub layout, rendered from a real PDF.

`make_sft_folder` writes what `load_dataset(folder, "sft")` reads exactly as it would read the Hub repo: README.md
with a `configs:` YAML header and Parquet shards under data/sft/. Rows follow docs/design.md §4: `id`, `task`,
`doc_id`, `num_tokens` (exact, counted with the training processor), `images` (PyMuPDF renders of real PDF pages) and
`messages` (user: per page "Page N:" + an image placeholder, then the question; assistant: the answer), `licence`
and `source` (of the PDF), with the published Features (train/dataset_schema.json, the contract's export).
The lead can swap this for the project's demo build once it exists.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # tests import train.* from this checkout
    sys.path.insert(0, str(REPO_ROOT))

TEST_PDF_LICENCE = "GPL-2 (portions LGPL, Artistic)"  # R-FAQ.pdf, from tests/data/pdfs/SOURCES.tsv
TEST_PDF_SOURCE = "r-doc-pdf"
TINY_MIN_PIXELS = 28 * 28 * 4
TINY_MAX_PIXELS = 28 * 28 * 64
CARD_HEADER = """---
configs:
- config_name: sft
  data_files:
  - split: train
    path: data/sft/train-*.parquet
  default: true
---
"""


def find_test_pdf() -> Path | None:
    """A real PDF for the tests: R-FAQ.pdf (or any PDF) under tests/data, else R-FAQ.pdf from the shared pool."""
    data = REPO_ROOT / "tests" / "data"
    candidates = [data / "pdfs" / "R-FAQ.pdf", *sorted(data.glob("*.pdf")), *sorted(data.glob("pdfs/*.pdf"))]
    candidates += [
        base / "pdfs" / "r-doc-pdf" / "R-FAQ.pdf" for base in (REPO_ROOT / "shared", REPO_ROOT.parent / "shared")
    ]
    return next((path for path in candidates if path.is_file()), None)


def render_pages(pdf: Path | None, dpi: int, count: int) -> list[tuple[Any, str]]:
    """(PIL image, first text line) of the first `count` pages; a generated PDF if none is available."""
    import pymupdf
    from PIL import Image

    doc = pymupdf.open(pdf) if pdf is not None else _generated_pdf(count)
    pages = []
    for number in range(min(count, doc.page_count)):
        page = doc[number]
        pixmap = page.get_pixmap(dpi=dpi)
        image = Image.open(io.BytesIO(pixmap.tobytes("png"))).convert("RGB")
        lines = [line.strip() for line in page.get_text().splitlines() if line.strip()]
        pages.append((image, lines[0] if lines else f"page {number + 1}"))
    return pages


def _generated_pdf(count: int) -> Any:
    """A small real PDF written with PyMuPDF, for machines without the shared pool."""
    import pymupdf

    doc = pymupdf.open()
    for number in range(count):
        page = doc.new_page()
        page.insert_text((72, 72), f"Section {number + 1}: results for quarter {number % 4 + 1}", fontsize=14)
    return doc


def sft_messages(page_numbers: list[int], question: str, answer: str) -> list[dict[str, Any]]:
    """User turn: "Page N:" + image placeholder per page, then the question; assistant turn: the answer."""
    content: list[dict[str, Any]] = []
    for number in page_numbers:
        content += [{"type": "text", "text": f"Page {number}:"}, {"type": "image", "text": None}]
    content.append({"type": "text", "text": question})
    return [
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def count_tokens(processor: Any, messages: list[dict[str, Any]], images: list[Any]) -> int:
    """Exact sequence length of one example under `processor` and its chat template."""
    from trl.data_utils import prepare_multimodal_messages

    prepared = prepare_multimodal_messages(messages, images=images)
    out = processor.apply_chat_template(prepared, tokenize=True, return_dict=True, return_tensors="pt")
    return int(out["input_ids"].shape[1])


def sft_rows(pages: list[tuple[Any, str]], n_examples: int, pages_per_example: int, processor: Any) -> dict:
    """Column dict of `n_examples` rows, each over `pages_per_example` consecutive pages (wrapping around)."""
    keys = ("id", "task", "doc_id", "qa_id", "num_pages", "num_tokens", "images", "messages", "licence", "source")
    rows: dict[str, list] = {key: [] for key in keys}
    doc_id = hashlib.sha256(b"".join(text.encode() for _, text in pages)).hexdigest()
    for index in range(n_examples):
        chosen = [(index + offset) % len(pages) for offset in range(pages_per_example)]
        target = chosen[index % len(chosen)]
        question = f"What is the first line of text on page {target + 1}?"
        messages = sft_messages([n + 1 for n in chosen], question, pages[target][1])
        images = [pages[n][0] for n in chosen]
        rows["id"].append(hashlib.sha256(f"{doc_id}:{index}".encode()).hexdigest()[:16])
        rows["task"].append("extract-single")
        rows["doc_id"].append(doc_id)
        rows["qa_id"].append(None)  # these rows come from no `qa` row, as OCR tasks
        rows["num_pages"].append(len(chosen))
        rows["num_tokens"].append(count_tokens(processor, messages, images))
        rows["images"].append(images)
        rows["messages"].append(messages)
        rows["licence"].append(TEST_PDF_LICENCE)
        rows["source"].append(TEST_PDF_SOURCE)
    return rows


def make_sft_folder(
    path: Path,
    n_examples: int,
    pages_per_example: int,
    dpi: int,
    *,
    min_pixels: int = TINY_MIN_PIXELS,
    max_pixels: int = TINY_MAX_PIXELS,
    tokenizer_cache_dir: Path | None = None,
) -> Path:
    """Write a Hub-layout `sft` dataset folder at `path` and return it."""
    from datasets import Dataset

    from train.processor import TOKENIZER_CACHE_DIR, build_offline_processor
    from train.schema import features

    processor = build_offline_processor(min_pixels, max_pixels, tokenizer_cache_dir or TOKENIZER_CACHE_DIR)
    pages = render_pages(find_test_pdf(), dpi, max(3, pages_per_example + 1))
    rows = sft_rows(pages, n_examples, pages_per_example, processor)
    shard = path / "data" / "sft" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=features("sft")).to_parquet(str(shard))
    card = f"{CARD_HEADER}\n# test sft dataset\n\n```yaml\nrender:\n  dpi: {dpi}\n"
    card += f"  min_pixels: {min_pixels}\n  max_pixels: {max_pixels}\n```\n"
    (path / "README.md").write_text(card, encoding="utf-8")
    return path
