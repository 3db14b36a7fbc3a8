"""Publishing: the Hub-ready folder written by hub.publish, read back with `datasets.load_dataset` like a user would.

`build_sample` makes a small real build (three real PDFs rendered with PyMuPDF at low DPI, QA rows and full-document
examples shaped like the assembly stage's) with the project's own writer; test_validate, test_push and
test_trl_datapath reuse it. The lead may switch it to the demo build once that exists.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from longdocvqa.core.contract import qa_record_from_row, split_for
from longdocvqa.core.fingerprint import content_hash, file_sha256
from longdocvqa.core.recipe import Recipe, parse_recipe
from longdocvqa.core.records import PdfDoc
from longdocvqa.documents import render
from longdocvqa.hub.card import BuildReport, split_card
from longdocvqa.hub.features import features_for
from longdocvqa.hub.publish import Bounds, ShardWriter, write_dataset

PDFS = Path(__file__).resolve().parent / "data" / "pdfs"
SAMPLE_PDFS = ("ulineno.pdf", "latexbug.pdf", "beamerexample-lecture-beamer-version.pdf")  # 20, 33, 33 pages
SAMPLE_DPI = 36  # the recipe minimum: ~300x420 px pages, real renders, small files
TEST_SHARE = 0.3  # puts the beamer deck (sha256 0x28...) in `test`, the other two in `train`
LICENCES = {"ulineno.pdf": "LPPL-1.3c", "latexbug.pdf": "LPPL-1.3c"}  # the beamer deck: licence unknown on purpose
TASK_PAGES = {"extract-single": [3], "extract-multi": [4, 6], "reasoning": [5, 7]}
SEGMENT = (2, 9)


@dataclass
class Sample:
    """A small real build: the folder and the inputs it was written from."""

    out_dir: Path  # the run directory; the dataset is out_dir / "dataset"
    recipe: Recipe
    documents: list[PdfDoc]
    qa_rows: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    images: dict[tuple[str, int], bytes]
    short_images: list[bytes]

    @property
    def dataset(self) -> Path:
        return self.out_dir / "dataset"


def sample_recipe(**publish: Any) -> Recipe:
    """The demo-like recipe of the sample build (token window wide enough for tiny pages)."""
    data = {
        "name": "sample",
        "version": "0.1.0",
        "description": "Test build from three Debian documentation PDFs.",
        "pool": {"paths": [str(PDFS)], "min_pages": 20, "max_pages": 40},
        "render": {"dpi": SAMPLE_DPI, "format": "jpeg", "quality": 80},
        "assemble": {"min_tokens": 100, "max_tokens": 200_000},
        "publish": {"test_share": TEST_SHARE, "rows_per_group": 2, "max_shard_mb": 1, "repo": "org/name", **publish},
    }
    return parse_recipe(data)


def sample_documents() -> list[PdfDoc]:
    docs = []
    for name in SAMPLE_PDFS:
        path = PDFS / name
        info = render.probe(path)
        docs.append(
            PdfDoc(
                sha256=file_sha256(path),
                path=str(path),
                size_bytes=path.stat().st_size,
                num_pages=info["num_pages"],
                page_sizes_pt=info["page_sizes_pt"],
                title=info["title"],
                producer=info["producer"],
                licence=LICENCES.get(name),
                source=f"debian:{name}",
            )
        )
    return docs


def sample_qa(doc: PdfDoc, page_text: str) -> list[dict[str, Any]]:
    """One QA per task, evidence inside the segment; answers quote the page's first line."""
    rows = []
    for task, pages in TASK_PAGES.items():
        listed = task == "extract-multi"
        answer: str | list[str] = [page_text, f"page {pages[1]}"] if listed else page_text
        record = {
            "task": task,
            "doc_sha256": doc.sha256,
            "segment_id": content_hash([doc.sha256, *SEGMENT], 16),
            "segment_start": SEGMENT[0],
            "segment_end": SEGMENT[1],
            "segment_sections": ["Introduction"],
            "question": f"What does page {pages[0]} begin with? ({task})",
            "answer": answer,
            "answer_format": "List" if listed else "String",
            "evidence_pages": pages,
            "evidence_sources": ["Text"],
            "generator": "template",
            "prompt_version": "v1",
        }
        rows.append({"id": content_hash(record, 16), **record})
    return rows


def count_tokens(messages: list[dict[str, Any]], sizes: list[tuple[int, int]], recipe: Recipe) -> int:
    """Exact length (longdocvqa.assembly.tokens) when a Qwen2 tokenizer is available offline, else a value inside
    the bounds that `validate` then checks."""
    from longdocvqa.core.contract import normalise_messages
    from longdocvqa.hub.validate import exact_token_counter, token_bounds

    a = recipe.assemble
    if "counter" not in _COUNTER:
        _COUNTER["counter"] = exact_token_counter(a.tokenizer, a.min_pixels, a.max_pixels)
    typed = normalise_messages(messages)
    if _COUNTER["counter"] is not None:
        return _COUNTER["counter"](sizes, typed)
    low, high = token_bounds(sizes, typed, a.min_pixels, a.max_pixels)
    return low + (high - low) // 4


_COUNTER: dict[str, Any] = {}


def example_for(qa: dict[str, Any], sizes: list[tuple[int, int]], recipe: Recipe) -> dict[str, Any]:
    """A full-document example as the assembly stage makes it: "Page N: " + image per page, question; answer."""
    content: list[dict[str, Any]] = []
    for page in range(1, len(sizes) + 1):
        content += [{"type": "text", "text": f"Page {page}: " if page == 1 else f"\nPage {page}: "}, {"type": "image"}]
    content.append({"type": "text", "text": "\n" + qa["question"]})
    answer = json.dumps(qa["answer"]) if isinstance(qa["answer"], list) else qa["answer"]
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return {
        "id": content_hash(["sft", qa["id"]], 16),
        "task": qa["task"],
        "doc_id": qa["doc_sha256"],
        "qa_id": qa["id"],
        "num_pages": len(sizes),
        "num_tokens": count_tokens(messages, sizes, recipe),
        "messages": messages,
    }


def short_example(images: list[bytes], recipe: Recipe) -> dict[str, Any]:
    """A short-data example (assemble's form: no document, `short_index`, its own images)."""
    content = [{"type": "image", "text": None} for _ in images] + [{"type": "text", "text": "What is on these pages?"}]
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": "Two pages of a manual."}]
    sizes = [_size(image) for image in images]
    return {
        "id": "short-0",
        "task": "short",
        "doc_id": "",
        "qa_id": "",
        "num_pages": len(images),
        "num_tokens": count_tokens(messages, sizes, recipe),
        "messages": messages,
        "short_index": 0,
    }


def build_sample(out_dir: Path, recipe: Recipe | None = None, build: BuildReport | None = None) -> Sample:
    """Render, write and return a sample build under `out_dir` (about 2 s)."""
    recipe = recipe or sample_recipe()
    documents = sample_documents()
    paths = {doc.sha256: doc.path for doc in documents}
    images: dict[tuple[str, int], bytes] = {}

    def page_image(sha: str, page: int) -> bytes:
        if (sha, page) not in images:
            images[sha, page] = render.render_page(paths[sha], page, SAMPLE_DPI, "jpeg", 80)
        return images[sha, page]

    qa_rows, examples = [], []
    for doc in documents:
        sizes = [_size(page_image(doc.sha256, p)) for p in range(1, doc.num_pages + 1)]
        first_line = (render.page_texts(doc.path)[2].strip().splitlines() or ["(empty)"])[0][:80]
        for qa in sample_qa(doc, first_line):
            examples.append(example_for(qa, sizes, recipe))
            qa_rows.append({**qa, "num_tokens": examples[-1]["num_tokens"]})
    short = [render.render_page(PDFS / "brief.pdf", page, SAMPLE_DPI, "png", 0) for page in (1, 2)]
    examples.append(short_example(short, recipe))
    write_dataset(out_dir / "dataset", recipe, documents, qa_rows, examples, page_image, build, lambda i: short)
    return Sample(out_dir, recipe, documents, qa_rows, examples, images, short)


def _size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(_bytes_io(data)) as image:
        return image.size


def _bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


_CACHE: dict[str, Sample] = {}


def cached_sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """One sample build per test session (treat it as read-only: copy it before corrupting)."""
    if "sample" not in _CACHE:
        _CACHE["sample"] = build_sample(tmp_path_factory.mktemp("sample-build"))
    return _CACHE["sample"]


def copy_sample(sample: Sample, dest: Path) -> Path:
    """A writable copy of the sample's dataset folder."""
    shutil.copytree(sample.dataset, dest)
    return dest


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return cached_sample(tmp_path_factory)


def load(folder: Path, config: str, tmp_path: Path, **kwargs: Any) -> Any:
    from longdocvqa.hub.load import load_config

    return load_config(folder, config, cache_dir=tmp_path / "hf-cache", **kwargs)


# ---- tests ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sft_round_trip_keeps_pages_messages_and_ids(sample: Sample, tmp_path: Path) -> None:
    data = load(sample.dataset, "sft", tmp_path, decode_images=False)
    by_id = {e["id"]: e for e in sample.examples}
    rows = [row for split in data for row in data[split]]
    assert sorted(r["id"] for r in rows) == sorted(by_id)
    for row in rows:
        example = by_id[row["id"]]
        pages = range(1, example["num_pages"] + 1)
        expected_images = (
            [sample.images[example["doc_id"], p] for p in pages] if example["doc_id"] else sample.short_images
        )
        assert [img["bytes"] for img in row["images"]] == expected_images
        user, assistant = row["messages"]
        assert sum(block["type"] == "image" for block in user["content"]) == example["num_pages"]
        assert {"type": "image", "text": None} in user["content"]
        answer = example["messages"][1]["content"]
        assert assistant == {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        assert (row["num_tokens"], row["task"]) == (example["num_tokens"], example["task"])
        assert row["qa_id"] == (example["qa_id"] or None)  # short data: no qa row


@pytest.mark.slow
def test_document_example_messages_are_typed_blocks(sample: Sample, tmp_path: Path) -> None:
    data = load(sample.dataset, "sft", tmp_path, decode_images=False, split="test")
    user = data[0]["messages"][0]["content"]
    assert user[:3] == [
        {"type": "text", "text": "Page 1: "},
        {"type": "image", "text": None},
        {"type": "text", "text": "\nPage 2: "},
    ]
    assert user[-1]["type"] == "text" and user[-1]["text"].startswith("\nWhat does page")


@pytest.mark.slow
def test_sft_images_decode_to_pil_pages(sample: Sample, tmp_path: Path) -> None:
    data = load(sample.dataset, "sft", tmp_path, split="test")
    row = data[0]
    assert len(row["images"]) == row["num_pages"] == 33
    assert row["images"][0].size[0] > 0 and row["images"][0].mode == "RGB"
    assert str(data.features["images"]) == "List(Image(mode=None, decode=True))"


@pytest.mark.slow
def test_qa_and_documents_round_trip(sample: Sample, tmp_path: Path) -> None:
    qa = load(sample.dataset, "qa", tmp_path)
    got = {row["id"]: qa_record_from_row(row) for split in qa for row in qa[split]}
    for expected in sample.qa_rows:
        record = got[expected["id"]]
        assert record["answer"] == expected["answer"]  # List answers come back as lists
        assert record["evidence_pages"] == expected["evidence_pages"]
        assert record["verification"] == "not_run"  # defaults of QARecord are filled in
    docs = load(sample.dataset, "documents", tmp_path)
    rows = {row["file_name"]: row for split in docs for row in docs[split]}
    by_sha = {row["sha256"]: row["file_name"] for row in rows.values()}
    assert set(rows) == set(SAMPLE_PDFS)
    assert rows["ulineno.pdf"]["licence"] == "LPPL-1.3c" and rows[SAMPLE_PDFS[2]]["licence"] is None
    assert len(rows["latexbug.pdf"]["page_sizes_pt"]) == rows["latexbug.pdf"]["num_pages"] == 33
    assert not any("/" in name for name in rows)  # no machine paths in the published rows
    for row in (r for split in qa for r in qa[split]):  # every qa row carries its document's licence
        assert row["licence"] == rows[by_sha[row["doc_sha256"]]]["licence"]


@pytest.mark.slow
def test_streaming_gives_the_same_rows(sample: Sample, tmp_path: Path) -> None:
    eager = load(sample.dataset, "sft", tmp_path, decode_images=False)
    streamed = load(sample.dataset, "sft", tmp_path, decode_images=False, streaming=True)
    for split in ("train", "test"):
        assert [r["id"] for r in streamed[split]] == [r["id"] for r in eager[split]]
    first = next(iter(load(sample.dataset, "sft", tmp_path, streaming=True)["train"]))
    assert first["images"][0].size[0] > 0  # decoded PIL page when streaming too


@pytest.mark.slow
def test_splits_are_by_document(sample: Sample, tmp_path: Path) -> None:
    seen: dict[str, set[str]] = {}
    for config, key in (("sft", "doc_id"), ("qa", "doc_sha256"), ("documents", "sha256")):
        data = load(sample.dataset, config, tmp_path, decode_images=False)
        for split in data:
            for row in data[split]:
                if not row[key]:  # the short-data row: no document, always train
                    assert (config, split, row["task"]) == ("sft", "train", "short")
                    continue
                assert split == split_for(row[key], TEST_SHARE)
                seen.setdefault(row[key], set()).add(split)
    assert all(len(splits) == 1 for splits in seen.values())
    assert {s for splits in seen.values() for s in splits} == {"train", "test"}


@pytest.mark.slow
def test_card_header_declares_configs_info_and_processor_settings(sample: Sample) -> None:
    header, body = split_card((sample.dataset / "README.md").read_text())
    configs = {c["config_name"]: c for c in header["configs"]}
    assert configs["sft"]["default"] is True and set(configs) == {"sft", "qa", "documents"}
    assert configs["sft"]["data_files"] == [
        {"split": "train", "path": "data/sft/train-*"},
        {"split": "test", "path": "data/sft/test-*"},
    ]
    infos = {i["config_name"]: i for i in header["dataset_info"]}
    assert {s["name"]: s["num_examples"] for s in infos["sft"]["splits"]} == {"train": 7, "test": 3}
    assert header["license"] == "other" and header["size_categories"] == ["n<1K"]
    assert "visual-question-answering" in header["task_categories"] and "long-context" in header["tags"]
    meta = header["longdocvqa"]
    assert (meta["min_pixels"], meta["max_pixels"]) == (3136, 12845056)
    assert meta["version"] == "0.1.0" and meta["recipe_fingerprint"] == sample.recipe.fingerprint()
    assert meta["num_tokens_total"] == sum(e["num_tokens"] for e in sample.examples)
    assert abs(sum(meta["task_shares"].values()) - 1) < 1e-5


@pytest.mark.slow
def test_card_body_reports_the_build(tmp_path: Path) -> None:
    build = BuildReport(
        drops_by_reason={"pool/too_short": 4, "generate/invalid_json": 1},
        decontamination={"docvqa: removed documents": 2},
        benchmarks=["docvqa"],
    )
    sample = build_sample(tmp_path / "out", build=build)
    _, body = split_card((sample.dataset / "README.md").read_text())
    for expected in (
        "pool/too_short | 4",
        "docvqa: removed documents | 2",
        "<details><summary>Recipe (resolved; local paths relative to the pool root, endpoints redacted)",
        'load_dataset("org/name", "sft", revision="v0.1.0")',
        "LPPL-1.3c | 2",
        "unknown | 1",
        "train/",
        "QA rows by prompt version: `v1` (9)",
        "| LPPL-1.3c | 2 |",  # per licence: documents, sft examples, qa rows
        "extract-multi",
    ):
        assert expected in body
    for png in ("assets/length_histogram.png", "assets/pages_histogram.png"):
        assert f"]({png})" in body
        assert (sample.dataset / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assets = sample.dataset / "assets"
    length = json.loads((assets / "length_histogram.json").read_text())
    pages = json.loads((assets / "pages_histogram.json").read_text())
    tokens = [e["num_tokens"] for e in sample.examples]
    assert length["title"].startswith(f"Tokens per example: {len(tokens)} examples") and "100K" in length["title"]
    assert pages["title"].startswith(f"Pages per example: {len(tokens)} examples")
    assert (
        sum(length["totals"]) == len(tokens) and length["edges"][0] <= min(tokens) < max(tokens) < length["edges"][-1]
    )
    assert "## Examples" in body


@pytest.mark.slow
def test_rebuild_is_byte_identical(sample: Sample, tmp_path: Path) -> None:
    again = build_sample(tmp_path / "again")
    files = sorted(p.relative_to(sample.dataset) for p in sample.dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.dataset) for p in again.dataset.rglob("*") if p.is_file())
    for rel in files:
        assert (sample.dataset / rel).read_bytes() == (again.dataset / rel).read_bytes(), rel


def test_shards_bounded_by_bytes_with_small_row_groups(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    features = features_for("documents")
    writer = ShardWriter(tmp_path, "train", features, Bounds(shard_bytes=20_000, group_rows=3, group_bytes=10**8))
    row = {
        "sha256": "0" * 64,
        "file_name": "x.pdf",
        "num_pages": 2,
        "page_sizes_pt": [[1.0, 2.0], [3.0, 4.0]],
        "size_bytes": 1,
        "title": "t" * 3000,
        "producer": "",
        "licence": None,
        "source": None,
        "pdf": None,
    }
    for _ in range(20):
        writer.add(row, size_bytes=3100)
    paths = writer.close()
    # 3 rows of ~3.6 kB (estimate incl. overhead) per group; two groups would pass 20 kB; the last 2 rows fit with 3
    assert [p.name for p in paths] == [f"train-{i:05d}-of-00006.parquet" for i in range(6)]
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        assert all(meta.row_group(i).num_rows <= 3 for i in range(meta.num_row_groups))
        assert path.stat().st_size - meta.serialized_size <= 20_000  # data pages within the bound; footer apart
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in paths) == 20
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.slow
def test_rows_reach_disk_while_examples_stream(tmp_path: Path) -> None:
    """Memory stays bounded: row groups are on disk before the examples iterator is exhausted."""
    sample = build_sample(tmp_path / "first")
    staging = tmp_path / "second" / ".dataset.partial" / "data" / "sft"
    sizes_seen: list[int] = []

    def examples() -> Iterator[dict[str, Any]]:
        for example in sample.examples:
            sizes_seen.append(sum(p.stat().st_size for p in staging.glob("*.partial")) if staging.exists() else 0)
            yield example

    write_dataset(
        tmp_path / "second" / "dataset",
        sample.recipe,
        sample.documents,
        sample.qa_rows,
        examples(),
        lambda sha, page: sample.images[sha, page],
    )
    assert sizes_seen[0] == 0 and sizes_seen[-1] > 0
    assert len(set(sizes_seen)) >= 3  # grew several times, one row group (2 rows) at a time


@pytest.mark.slow
def test_bad_examples_become_rejects_not_errors(tmp_path: Path) -> None:
    sample = build_sample(tmp_path / "first")
    good = sample.examples[0]
    bad = [
        {**good, "id": "unknown-doc", "doc_id": "f" * 64},
        {**good, "id": "short", "num_pages": good["num_pages"] - 1},
        {**good, "id": "placeholders", "messages": [{"role": "user", "content": "no pages"}, good["messages"][1]]},
    ]
    qa_bad = {**sample.qa_rows[0], "id": "bad-format", "answer_format": "Essay"}

    def page_image(sha: str, page: int) -> bytes:
        return sample.images[sha, page]

    summary = write_dataset(
        tmp_path / "out" / "dataset",
        sample.recipe,
        sample.documents,
        [*sample.qa_rows, qa_bad],
        [*sample.examples, *bad],
        page_image,
        None,
        lambda index: sample.short_images,
    )
    reasons = {r.item: r.reason for r in summary.rejects}
    assert reasons == {
        "unknown-doc": "unknown_document",
        "short": "image_count",
        "placeholders": "placeholders",
        "bad-format": "schema",
    }
    assert all(r.stage == "publish" for r in summary.rejects)
    assert summary.counts["sft"] == {"train": 7, "test": 3}


@pytest.mark.slow
def test_card_yaml_is_what_datasets_reads(sample: Sample) -> None:
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    header = yaml.safe_load((sample.dataset / "README.md").read_text().split("---\n")[1])
    card_data = DatasetCardData(**header)
    assert MetadataConfigs.from_dataset_card_data(card_data).get_default_config_name() == "sft"
    infos = DatasetInfosDict.from_dataset_card_data(card_data)
    assert infos["qa"].features == features_for("qa")
    assert infos["documents"].splits["test"].num_examples == 1
