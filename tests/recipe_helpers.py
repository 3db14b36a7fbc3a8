"""The demo recipe pointed at other PDFs, with settings overridden: the one helper the tests write recipes with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT / "tests" / "data" / "pdfs"


# Test builds render pages at 72 DPI, not the demo's 144: a page still has more pixels than the demo's max_pixels
# (a US-letter page is 612 x 792 px), so token counts and examples do not change, and rendering, JPEG encoding and
# Parquet writing take about half the time (bench: a demo-recipe build 10-11 -> 7-8 CPU-s). A test that compares
# its Parquet with the demo build's passes render={"dpi": 144}; 144 DPI is tested by the demo build itself,
# tests/test_pool_render.py and bench/render.py.
TEST_DPI = 72


def recipe_file(folder: Path, pool_paths: list[str], text: str = "", **overrides: Any) -> Path:
    """Write `folder/recipe.yaml`: the demo recipe on `pool_paths` rendered at TEST_DPI, `overrides` merged per
    section, `text` appended verbatim (for YAML a mapping cannot hold, such as a duplicate key)."""
    data = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    data["pool"]["paths"] = pool_paths
    data["pool"]["licences"] = str(PDFS / "SOURCES.tsv")
    data["render"]["dpi"] = TEST_DPI
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data) + text)
    return path
