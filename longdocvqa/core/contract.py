"""The published dataset contract: configs, splits, columns, row converters and the card metadata it promises.

Everything that reads or writes the published format takes it from here: hub/publish.py writes the shards,
hub/card.py the card, hub/validate.py checks both, eval/ reads qa rows, and train/ reads `train/dataset_schema.json`,
the JSON export of `COLUMNS` (train/ may not import this package; a test keeps the file equal to `schema_export()`).

The columns are plain data (`COLUMNS`: a type name, a list `[inner]`, or a mapping of field -> type), not
`datasets.Features`: the contract is a floor-level description that the card, the validator and the trainer read,
and only the hub package imports `datasets` (hub/features.py turns `COLUMNS` into Features). So this module
imports no third-party library beyond pydantic and is cheap to import anywhere.

Layout of `OUT/dataset/` (docs/design.md §4):

    README.md                                       card: YAML header (configs, dataset_info, longdocvqa) + body
    assets/length_histogram.png, pages_histogram.png
    data/<config>/<split>-00000-of-00003.parquet        configs: sft (default), qa, documents; splits: train [, test]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from longdocvqa.core.records import PdfDoc, QARecord
from longdocvqa.core.safetext import clean

CONFIGS: tuple[str, ...] = ("sft", "qa", "documents")
DEFAULT_CONFIG = "sft"
SPLITS: tuple[str, ...] = ("train", "test")
SHORT_SPLIT = "train"  # short-data rows have no document: they are training mix
CARD_KEY = "longdocvqa"  # the card's YAML block that the trainer and `validate` read
REQUIRED_HEADER_KEYS = ("configs", "dataset_info", "license", "task_categories", "size_categories", "tags")
SCHEMA_VERSION = 3  # 2: documents.pdf; 3: qa judge columns; bump when a column changes (train/dataset_schema.json)
_HASH_SPACE = 16**16  # the first 16 hex digits of a sha256, as an integer, are uniform on [0, 16**16)
# Outcomes of the checks recorded in a qa row's `verification` ("evidence_text=...;answerability=..."):
# found / not_applicable (reasoning asks for no literal quote); exact / judge (verifier agreed) / not_run (off).
_PASSED = {"evidence_text": {"found", "not_applicable"}, "answerability": {"exact", "judge", "not_run"}}

# A column type: "string" / "int32" / "int64" / "float64" (a value), "image", [inner] (a list), {field: type}.
ColumnType = str | list[Any] | dict[str, Any]
_STRINGS: ColumnType = ["string"]
_BLOCK: ColumnType = {"type": "string", "text": "string"}  # text is null for {"type": "image"} placeholders

COLUMNS: dict[str, dict[str, ColumnType]] = {
    # TRL's conversational vision format plus ids and lengths
    "sft": {
        "id": "string",
        "task": "string",
        "doc_id": "string",
        "qa_id": "string",
        "num_pages": "int32",
        "num_tokens": "int64",
        "images": ["image"],
        "messages": [{"role": "string", "content": [_BLOCK]}],
        "licence": "string",
        "source": "string",
    },
    # one row per QA; `answer_list` holds the items of List answers (`answer` their JSON text)
    "qa": {
        "id": "string",
        "task": "string",
        "doc_sha256": "string",
        "segment_id": "string",
        "segment_start": "int32",
        "segment_end": "int32",
        "segment_sections": _STRINGS,
        "question": "string",
        "answer": "string",
        "answer_list": _STRINGS,
        "answer_format": "string",
        "evidence_pages": ["int32"],
        "evidence_sources": _STRINGS,
        "evidence_description": "string",
        "generator": "string",
        "prompt_version": "string",
        "call_id": "string",
        "verification": "string",
        "judge_score": "float64",  # the rubric judge's weighted 1-5 score; null when no judge ran
        "judge_rubrics": [{"rubric": "string", "score": "int32"}],  # per-rubric 1-5 scores; null when no judge ran
        "num_tokens": "int64",
        "licence": "string",
        "source": "string",
    },
    # one row per document: its page images are in the `sft` rows; `pdf` is the source file itself (a `datasets.Pdf`,
    # bytes embedded; null when the recipe sets `publish.include_pdf: false`)
    "documents": {
        "sha256": "string",
        "file_name": "string",
        "num_pages": "int32",
        "page_sizes_pt": [["float64"]],
        "size_bytes": "int64",
        "title": "string",
        "producer": "string",
        "licence": "string",
        "source": "string",
        "pdf": "pdf",
    },
}


_JSON_TYPES = {"string": "string", "int32": "integer", "int64": "integer", "float64": "number"}


def row_json_schema(config: str) -> dict[str, Any]:
    """JSON Schema of one published row of `config` as a reader gets it (every column present, each nullable;
    images and PDFs as their {bytes, path} structs), derived from `COLUMNS` (`longdocvqa schema qa-row`)."""
    columns = COLUMNS[config]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"a published `{config}` row",
        "type": "object",
        "properties": {name: _column_schema(column) for name, column in columns.items()},
        "required": list(columns),
        "additionalProperties": False,
    }


def _column_schema(column: ColumnType) -> dict[str, Any]:
    if isinstance(column, list):
        return {"type": ["array", "null"], "items": _column_schema(column[0])}
    if isinstance(column, dict):
        fields = {name: _column_schema(inner) for name, inner in column.items()}
        return {"type": ["object", "null"], "properties": fields, "additionalProperties": False}
    if column in ("image", "pdf"):
        return {"type": ["object", "null"], "properties": {"bytes": {}, "path": {"type": ["string", "null"]}}}
    return {"type": [_JSON_TYPES[column], "null"]}


class QARow(QARecord):
    """A `qa` config row as a record: the QA with its provenance plus the token length of its example."""

    num_tokens: int
    licence: str | None = None
    source: str | None = None


class CardMeta(BaseModel):
    """The card's `longdocvqa:` block, as hub/card.py writes it (what validate and the trainer read)."""

    model_config = ConfigDict(extra="allow")

    version: str
    recipe_fingerprint: str
    min_pixels: int
    max_pixels: int
    min_tokens: int
    max_tokens: int
    tokenizer: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    mixture_unit: str = "tokens"
    task_shares: dict[str, float]
    counts: dict[str, dict[str, int]]
    task_counts: dict[str, dict[str, int]]
    task_tokens: dict[str, dict[str, int]]
    num_tokens_total: int


def schema_export() -> dict[str, Any]:
    """The contract as JSON-ready data, for readers that may not import this package (train/)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "configs": list(CONFIGS),
        "default_config": DEFAULT_CONFIG,
        "splits": list(SPLITS),
        "card_key": CARD_KEY,
        "card_fields": list(CardMeta.model_fields),
        "columns": COLUMNS,
    }


def schema_json() -> str:
    """`schema_export()` as the text of train/dataset_schema.json (sorted by the contract's order, 2-space indent)."""
    return json.dumps(schema_export(), indent=2) + "\n"


def split_for(doc_sha256: str, test_share: float) -> str:
    """`test` for a deterministic `test_share` of documents (by their sha256), else `train`."""
    return "test" if int(doc_sha256[:16], 16) < test_share * _HASH_SPACE else "train"


def ordered_splits(names: Iterable[str]) -> list[str]:
    """Split names with `train` first, then `test`, then any others alphabetically."""
    return sorted(names, key=lambda name: (SPLITS.index(name) if name in SPLITS else len(SPLITS), name))


def shard_name(split: str, index: int, total: int) -> str:
    """`train-00000-of-00003.parquet`, the Hub's naming."""
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def configs_yaml(rows: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """The card's `configs:` entries from rows per config and split: data files per split, `sft` first and default."""
    out = []
    for config in CONFIGS:
        splits = ordered_splits(s for s, n in rows[config].items() if n)
        files = [{"split": s, "path": f"data/{config}/{s}-*"} for s in splits]
        entry: dict[str, Any] = {"config_name": config, "data_files": files}
        if config == DEFAULT_CONFIG:
            entry["default"] = True
        out.append(entry)
    return out


# ---- row converters ---------------------------------------------------------------------------------------------


def qa_row(record: BaseModel | Mapping[str, Any], num_tokens: int | None = None) -> dict[str, Any]:
    """A `qa` Parquet row from a QARecord (or its dict) and the token length of its example.

    Raises pydantic.ValidationError when the record does not fit `QARow`.
    """
    data = dict(record.model_dump(mode="json") if isinstance(record, BaseModel) else record)
    if num_tokens is not None:
        data["num_tokens"] = num_tokens
    data = QARow.model_validate(data).model_dump(mode="json")  # fills defaults, checks types
    answer = data["answer"]
    listed = isinstance(answer, list)
    data["answer"] = json.dumps(answer, ensure_ascii=False) if listed else answer
    data["answer_list"] = list(answer) if listed else []
    rubrics = data["judge_rubrics"]
    data["judge_rubrics"] = None if rubrics is None else [{"rubric": k, "score": v} for k, v in rubrics.items()]
    return data


def qa_record_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `qa_row`: the QARow-shaped dict (list answers restored), for schema checks and consumers."""
    data = {k: v for k, v in row.items() if k != "answer_list"}
    if row.get("answer_format") == "List":
        data["answer"] = list(row.get("answer_list") or [])
    if row.get("judge_rubrics") is not None:
        data["judge_rubrics"] = {item["rubric"]: item["score"] for item in row["judge_rubrics"]}
    return data


def passed_checks(row: Mapping[str, Any]) -> bool:
    """Whether a qa row passed every check that ran (its answer found on an evidence page, the verifier agreed)."""
    outcomes = dict(part.partition("=")[::2] for part in str(row.get("verification") or "").split(";") if part)
    return all(outcomes.get(check) in allowed for check, allowed in _PASSED.items())


def source_of(doc: PdfDoc) -> str:
    """Where a document came from, as known: the licence file's source (package or URL), else its file name."""
    return doc.source or Path(doc.path).name


def document_row(doc: PdfDoc, pdf: bytes | None = None) -> dict[str, Any]:
    """A `documents` Parquet row; the local path is reduced to its file name (no machine paths in the dataset), the
    PDF's bytes (when given) are embedded under that name."""
    return {
        "sha256": doc.sha256,
        "file_name": clean(Path(doc.path).name),  # names and metadata come from outside: no control characters
        "num_pages": doc.num_pages,
        "page_sizes_pt": [list(size) for size in doc.page_sizes_pt],
        "size_bytes": doc.size_bytes,
        "title": clean(doc.title),
        "producer": clean(doc.producer),
        "licence": clean(doc.licence),
        "source": clean(source_of(doc)),
        "pdf": None if pdf is None else {"bytes": pdf, "path": clean(Path(doc.path).name)},
    }


def normalise_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages with every content as typed blocks {type, text}; text is None for image placeholders."""
    out = []
    for message in messages:
        content = message["content"]
        blocks: list[dict[str, Any]]
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}]
        else:
            blocks = [{"type": b["type"], "text": b.get("text") if b["type"] == "text" else None} for b in content]
        out.append({"role": message["role"], "content": blocks})
    return out


def count_image_placeholders(messages: Sequence[Mapping[str, Any]]) -> int:
    """Number of {"type": "image"} blocks across all turns."""
    return sum(
        1 for m in messages if not isinstance(m["content"], str) for b in m["content"] if b.get("type") == "image"
    )
