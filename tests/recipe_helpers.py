"""The demo recipe pointed at other PDFs, with settings overridden: the one helper the tests write recipes with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT / "tests" / "data" / "pdfs"


def recipe_file(folder: Path, pool_paths: list[str], text: str = "", **overrides: Any) -> Path:
    """Write `folder/recipe.yaml`: the demo recipe on `pool_paths`, `overrides` merged per section, `text` appended
    verbatim (for YAML a mapping cannot hold, such as a duplicate key)."""
    data = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    data["pool"]["paths"] = pool_paths
    data["pool"]["licences"] = str(PDFS / "SOURCES.tsv")
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data) + text)
    return path
