"""validate: passes on a fresh build; on copies with one thing corrupted, fails naming the check and the row."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_publish import Sample, cached_sample, copy_sample

from longdocvqa.cli.dataset import render_report
from longdocvqa.hub.validate import (
    ValidationReport,
    exact_token_counter,
    token_bounds,
    validate_dataset,
)

Rows = list[dict[str, Any]]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return cached_sample(tmp_path_factory)


def rewrite_rows(folder: Path, config: str, split: str, change: Callable[[Rows], Rows | None]) -> None:
    """Apply `change` to the rows of the first shard of config/split and write them back with the same schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for shard in sorted((folder / "data" / config).glob(f"{split}-*.parquet"))[:1]:
        table = pq.read_table(shard)
        rows = table.to_pylist()
        rows = change(rows) or rows
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)


def edit_card(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    text = (folder / "README.md").read_text()
    _, head, body = text.split("---\n", 2)
    header = yaml.safe_load(head)
    change(header)
    (folder / "README.md").write_text("---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n" + body)


def failures(report: ValidationReport, kind: str) -> list[tuple[str, str, str]]:
    return [(f.config, f.row, f.message) for f in report.failures if f.kind == kind]


@pytest.mark.slow
def test_fresh_build_passes(sample: Sample) -> None:
    report = validate_dataset(str(sample.dataset))
    assert report.ok, report.failures
    assert report.rows_checked == {
        "sft": {"train": 7, "test": 3},
        "qa": {"train": 6, "test": 3},
        "documents": {"train": 2, "test": 1},
    }
    data = json.loads(report.to_json())
    assert data["ok"] is True and data["failure_counts"] == {}


@pytest.mark.slow
def test_wrong_evidence_page_is_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    target = {}

    def corrupt(rows: Rows) -> None:
        rows[0]["evidence_pages"] = [999]
        target["id"] = rows[0]["id"]

    rewrite_rows(folder, "qa", "train", corrupt)
    report = validate_dataset(str(folder))
    assert set(report.failure_counts) == {"evidence_page"}
    [(config, row, message)] = failures(report, "evidence_page")
    assert (config, row) == ("qa", target["id"]) and "evidence page 999 outside the document" in message


@pytest.mark.slow
def test_evidence_outside_segment_is_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    rewrite_rows(folder, "qa", "test", lambda rows: [{**rows[0], "evidence_pages": [12]}, *rows[1:]])
    report = validate_dataset(str(folder))
    [(config, _, message)] = failures(report, "evidence_page")
    assert config == "qa" and "outside the recorded segment 2-9" in message


@pytest.mark.slow
def test_missing_document_is_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    removed = {}

    def drop_first(rows: Rows) -> Rows:
        removed["sha"] = rows[0]["sha256"]
        return rows[1:]

    rewrite_rows(folder, "documents", "train", drop_first)
    report = validate_dataset(str(folder))
    orphans = {e["id"] for e in sample.examples if e["doc_id"] == removed["sha"]}
    orphans |= {q["id"] for q in sample.qa_rows if q["doc_sha256"] == removed["sha"]}
    named = {row for _, row, _ in failures(report, "missing_document")}
    assert named == orphans and len(named) == 6
    assert "card_counts" in report.failure_counts  # the card still counts the dropped document


@pytest.mark.slow
def test_image_count_mismatch_is_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    target = {}

    def drop_last_page(rows: Rows) -> None:
        rows[1]["images"] = rows[1]["images"][:-1]
        target["id"] = rows[1]["id"]

    rewrite_rows(folder, "sft", "test", drop_last_page)
    report = validate_dataset(str(folder))
    [(config, row, message)] = failures(report, "image_count")
    assert (config, row) == ("sft", target["id"]) and "32 images" in message and "document has 33 pages" in message
    assert failures(report, "placeholders")[0][1] == target["id"]  # 33 image blocks for 32 images


@pytest.mark.slow
def test_duplicated_id_is_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    rewrite_rows(folder, "sft", "test", lambda rows: [rows[0], {**rows[1], "id": rows[0]["id"]}, *rows[2:]])
    report = validate_dataset(str(folder))
    first_test_id = sorted(e["id"] for e in sample.examples if e["doc_id"] == sample.documents[2].sha256)
    [(config, row, message)] = failures(report, "duplicate_id")
    assert config == "sft" and row in first_test_id and "already used" in message


@pytest.mark.slow
def test_card_count_mismatch_is_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")

    def bump(header: dict[str, Any]) -> None:
        header["longdocvqa"]["counts"]["sft"]["train"] += 1
        header["dataset_info"][1]["splits"][0]["num_examples"] += 1  # qa, train

    edit_card(folder, bump)
    report = validate_dataset(str(folder))
    assert set(report.failure_counts) == {"card_counts"}
    messages = {(config, message) for config, _, message in failures(report, "card_counts")}
    assert ("sft", "card records 8 train + 3 test rows, the data has 7 train + 3 test") in messages
    assert ("qa", "dataset_info records 7 train + 3 test rows, the data has 6 train + 3 test") in messages


@pytest.mark.slow
def test_task_share_and_token_window_are_checked(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    edit_card(folder, lambda h: h["longdocvqa"].update(max_tokens=1000, task_shares={"reasoning": 1.0}))
    report = validate_dataset(str(folder))
    assert report.failure_counts["token_window"] == 9  # the short-data row (~400 tokens) stays inside
    assert {f.message.split(":")[0] for f in report.failures if f.kind == "task_share"} == {
        "extract-multi",
        "extract-single",
        "reasoning",
        "short",
    }


@pytest.mark.slow
def test_impossible_token_count_is_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    target = {}

    def corrupt(rows: Rows) -> None:
        rows[0]["num_tokens"] = 150
        target["id"] = rows[0]["id"]

    rewrite_rows(folder, "sft", "train", corrupt)
    report = validate_dataset(str(folder))
    [(config, row, message)] = failures(report, "token_count")
    assert (config, row) == ("sft", target["id"]) and message.startswith("num_tokens 150 ")


@pytest.mark.slow
def test_exact_recount_catches_an_off_by_one_length(sample: Sample, tmp_path: Path) -> None:
    a = sample.recipe.assemble
    if exact_token_counter(a.tokenizer, a.min_pixels, a.max_pixels) is None:
        pytest.skip("no offline Qwen2 tokenizer (pip install --no-deps dashscope==2.0.2): only bounds are checked")
    folder = copy_sample(sample, tmp_path / "ds")
    rewrite_rows(folder, "sft", "test", lambda rows: [{**rows[0], "num_tokens": rows[0]["num_tokens"] + 1}, *rows[1:]])
    report = validate_dataset(str(folder))
    [(_, _, message)] = failures(report, "token_count")
    assert "but the recount gives" in message and not report.warnings


@pytest.mark.slow
def test_schema_and_split_leak_are_named(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    rewrite_rows(
        folder, "qa", "train", lambda rows: [{**rows[0], "answer_format": "Essay", "question": ""}, *rows[1:]]
    )
    test_doc = {}
    rewrite_rows(folder, "documents", "test", lambda rows: test_doc.update(rows[0]))
    rewrite_rows(folder, "documents", "train", lambda rows: [*rows, test_doc])
    report = validate_dataset(str(folder))
    schema = [message for _, _, message in failures(report, "schema")]
    assert any(m.startswith("answer_format: 'Essay' is not one of") for m in schema)
    assert any(m.startswith("question: '' should be non-empty") for m in schema)  # QA's min_length
    [(config, row, message)] = failures(report, "split_leak")
    assert (config, row) == ("documents", test_doc["sha256"]) and "listed in 'train' and again in 'test'" in message


@pytest.mark.slow
def test_unreadable_card_and_missing_data_fail(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    (folder / "README.md").write_text("---\nconfigs: [unclosed\n---\n")
    report = validate_dataset(str(folder))
    assert report.failure_counts["card"] == 1 and not report.ok
    assert validate_dataset(str(tmp_path / "nothing-here")).failure_counts.get("card") == 1


@pytest.mark.slow
def test_failures_are_capped_per_kind_but_all_counted(sample: Sample, tmp_path: Path) -> None:
    from rich.console import Console

    folder = copy_sample(sample, tmp_path / "ds")
    edit_card(folder, lambda h: h["longdocvqa"].update(max_tokens=1000))
    report = validate_dataset(str(folder), max_per_kind=2)
    assert report.failure_counts["token_window"] == 9  # the short-data row (~400 tokens) stays inside
    assert len([f for f in report.failures if f.kind == "token_window"]) == 2
    console = Console(record=True, width=160)
    render_report(report, console)
    text = console.export_text()
    assert "token_window" in text and "... 7 more" in text and "FAILED: 9 failures" in text


def test_token_bounds_without_a_tokenizer() -> None:
    messages = [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "abcd"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
    ]
    low, high = token_bounds([(56, 56)], messages, 3136, 12845056)
    assert (low, high) == (4 + 2 + 8, 4 + 2 + 6 + 16 + 64)


@pytest.mark.slow
def test_truncated_shard_is_a_load_failure(sample: Sample, tmp_path: Path) -> None:
    folder = copy_sample(sample, tmp_path / "ds")
    shard = sorted((folder / "data" / "qa").glob("train-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    report = validate_dataset(str(folder))
    [failure] = [f for f in report.failures if f.kind == "load"]
    assert failure.config == "qa" and failure.message.startswith("load_dataset('qa') failed")
