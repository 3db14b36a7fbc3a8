"""Recipe validation: strict keys with dotted paths, ranges, semver, path resolution, lock file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe import load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[1]


def _demo() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())


def test_unknown_key_names_its_dotted_path() -> None:
    data = _demo()
    data["render"]["dpii"] = 144
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, source="r.yaml")
    assert str(err.value) == "r.yaml: invalid recipe\n- render.dpii: unknown key"


def test_nested_unknown_key_inside_a_list() -> None:
    data = _demo()
    data["decontaminate"] = {"benchmarks": [{"name": "mmlb", "kind": "pdfs", "path": "x", "colour": "red"}]}
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, source="r.yaml")
    assert "- decontaminate.benchmarks.0.colour: unknown key" in str(err.value)


def test_bad_page_range_is_explained() -> None:
    data = _demo()
    data["pool"]["min_pages"], data["pool"]["max_pages"] = 60, 50
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, source="r.yaml")
    assert str(err.value) == "r.yaml: invalid recipe\n- pool: Value error, min_pages (60) must be <= max_pages (50)"


def test_out_of_bounds_value_and_bad_version() -> None:
    data = _demo()
    data["render"]["dpi"] = 5
    data["version"] = "1.0"
    with pytest.raises(RecipeError) as err:
        parse_recipe(data, source="r.yaml")
    lines = str(err.value).splitlines()
    assert "- version: Value error, version must be semantic (MAJOR.MINOR.PATCH), got '1.0'" in lines
    assert "- render.dpi: Input should be greater than or equal to 36" in lines


def test_paths_resolve_against_the_recipe_folder_and_fingerprint_is_stable() -> None:
    recipe = load_recipe(ROOT / "recipes" / "demo.yaml")
    assert recipe.pool.paths == [str(ROOT / "tests" / "data" / "pdfs")]
    assert recipe.fingerprint() == load_recipe(ROOT / "recipes" / "demo.yaml").fingerprint()
    changed = recipe.model_copy(deep=True)
    changed.render.dpi = 100
    assert changed.fingerprint() != recipe.fingerprint()


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping, got list"):
        load_recipe(bad)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name and recipe.version
