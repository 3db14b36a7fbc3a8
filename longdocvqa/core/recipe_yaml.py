"""Reading a recipe file's YAML, bounded: size, nesting depth, no aliases, no key given twice.

Owns the parse only (`read_recipe_yaml`: text -> plain Python values, or one RecipeError naming the file, the line
and the cause); the schema and its checks are recipe.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.safetext import printable

MAX_RECIPE_BYTES = 1_000_000  # a recipe is a page of settings; anything bigger is a mistake or an attack
MAX_RECIPE_DEPTH = 32  # nesting of mappings and lists


def read_recipe_yaml(path: Path) -> Any:
    """The YAML of a recipe, bounded: size, nesting depth, no aliases (an anchor bomb expands to gigabytes)."""
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: {size:,} bytes, over the {MAX_RECIPE_BYTES:,}-byte limit for a recipe")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        _check_events(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except _Unbounded as exc:
        raise RecipeError(f"{path}: {exc}") from None


class _Unbounded(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last value silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if isinstance(key, dict | list):
                continue  # unhashable: the SafeLoader reports it
            if key in seen:
                line = key_node.start_mark.line + 1
                raise _Unbounded(f"line {line}: key '{printable(key)}' is given twice in one mapping")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_events(text: str) -> None:
    """Refuse aliases and deep nesting from the parser's event stream, before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            raise _Unbounded(f"line {line}: YAML aliases (*{event.anchor}) are not allowed")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_RECIPE_DEPTH:
                raise _Unbounded(f"line {line}: nested deeper than {MAX_RECIPE_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
