"""The published dataset format as train/ sees it: `train/dataset_schema.json`, exported from longdocvqa's contract.

train/ imports nothing from `longdocvqa`; the JSON file is its one copy of the contract (configs, columns and their
types), and tests/test_contract.py keeps it equal to what `longdocvqa.core.contract.schema_json()` produces. The
trainer checks the columns it reads against it, and the tests build their `sft` folders with `features("sft")`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("dataset_schema.json")
TRAINER_COLUMNS = ("images", "messages", "num_tokens")  # what the collator and the packing sampler read


@cache
def schema() -> dict[str, Any]:
    """The exported contract (schema_version, configs, splits, columns per config)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def columns(config: str = "sft") -> dict[str, Any]:
    """Column name -> type of one config, in the published order."""
    return dict(schema()["columns"][config])


def feature(column: Any) -> Any:
    """A column type of the schema as a `datasets` feature (Value, Image, List, or a dict of fields)."""
    from datasets import Image, List, Pdf, Value

    if isinstance(column, list):
        return List(feature(column[0]))
    if isinstance(column, dict):
        return {name: feature(inner) for name, inner in column.items()}
    if column == "pdf":
        return Pdf()  # bytes + file name; `load_dataset` decodes it with pdfplumber (the viewer shows page 1)
    return Image() if column == "image" else Value(column)


def features(config: str = "sft") -> Any:
    """The `datasets.Features` of one published config."""
    from datasets import Features

    return Features({name: feature(column) for name, column in columns(config).items()})


def check_columns(column_names: list[str] | None, config: str = "sft") -> None:
    """Raise ValueError naming the columns the trainer reads that the loaded dataset lacks (None: not known yet)."""
    if column_names is None:  # an IterableDataset before its first row: nothing to check
        return
    published = columns(config)
    missing = [name for name in TRAINER_COLUMNS if name in published and name not in column_names]
    if missing:
        raise ValueError(
            f"the dataset lacks the `{config}` column(s) {', '.join(missing)} of the published format "
            f"(schema_version {schema()['schema_version']}, train/dataset_schema.json)"
        )
