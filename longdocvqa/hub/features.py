"""The contract's columns (contract.COLUMNS) as `datasets.Features`, the one place that turns one into the other.

Owns only the translation; the columns themselves are core/contract.py's. `datasets` is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from longdocvqa.core.contract import COLUMNS, ColumnType

if TYPE_CHECKING:
    from datasets import Features


def feature(column: ColumnType) -> Any:
    """One column type as a `datasets` feature: Value, Image, List of the inner type, or a dict of fields."""
    from datasets import Image, List, Pdf, Value

    if isinstance(column, list):
        return List(feature(column[0]))
    if isinstance(column, dict):
        return {name: feature(inner) for name, inner in column.items()}
    if column == "pdf":
        return Pdf()  # bytes + file name; `load_dataset` decodes it with pdfplumber (the viewer shows page 1)
    return Image() if column == "image" else Value(column)


def features_for(config: str) -> Features:
    """The Features of one config."""
    from datasets import Features

    return Features({name: feature(column) for name, column in COLUMNS[config].items()})
