"""The recipes that ship inside the package: the repository's recipes/ folder, packaged as `longdocvqa.recipes`.

One copy: pyproject.toml maps the package `longdocvqa.recipes` onto recipes/, so a wheel carries the same files a
clone has (as longdocvqa/recipes/); a source checkout reads the repository's folder directly.
Owns: listing them, finding a recipe by name or path (a path wins when both exist), and writing a starter recipe
with the user's pool, endpoint URL and model (`longdocvqa recipe new`), comments kept.
Does not own: parsing or validating a recipe (recipe.py), which it calls.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe import Recipe, load_recipe, parse_recipe

SUFFIX = ".yaml"
# The keys whose values are paths, resolved against the recipe's folder (recipe.resolve_paths).
_PATH_LINE = re.compile(
    r"^(?P<indent>\s*)(?P<key>paths|licences|exemplars|path):\s*(?P<value>[^#\n]*?)(?P<note>\s+#.*)?$"
)


def bundled_dir() -> Path:
    """The folder of the bundled recipes: longdocvqa/recipes/ in an installed wheel, else (a source checkout, an
    editable install) the repository's recipes/ beside the package."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "recipes"
    return installed if installed.is_dir() else package.parent / "recipes"


def bundled_names() -> list[str]:
    """The bundled recipes' names, sorted (`demo`, `mmprolong-128k`, `ablation-...`)."""
    return sorted(path.name.removesuffix(SUFFIX) for path in bundled_dir().glob(f"*{SUFFIX}"))


def summary(name: str) -> str:
    """A bundled recipe's one-line description (its `description` field)."""
    data = yaml.safe_load(bundled_path(name).read_text(encoding="utf-8"))
    return " ".join(str(data.get("description", "")).split())


def bundled_path(name: str) -> Path:
    """The file of the bundled recipe `name` (with or without `.yaml`); RecipeError naming the choices."""
    stem = name.removesuffix(SUFFIX)
    path = bundled_dir() / f"{stem}{SUFFIX}"
    if stem != Path(stem).name or not path.is_file():
        raise RecipeError(f"{name}: no such bundled recipe (bundled: {', '.join(bundled_names())})")
    return path


def locate(recipe: str | Path) -> tuple[Path, bool]:
    """(file, bundled?) for a recipe given as a path or as a bundled recipe's name; an existing path wins."""
    path = Path(recipe)
    if path.exists() or path.parent != Path("."):  # a path, or a name with a folder: never a bundled recipe
        return path, False
    if path.name.removesuffix(SUFFIX) in bundled_names():
        return bundled_path(path.name), True
    raise RecipeError(f"{recipe}: recipe file not found, and no bundled recipe has that name (longdocvqa recipe list)")


def load(recipe: str | Path) -> Recipe:
    """Load a recipe by path or bundled name; a bundled recipe whose pool is not there says where to get one."""
    path, bundled = locate(recipe)
    loaded = load_recipe(path)
    missing = [
        p for p in loaded.pool.paths if "://" not in p and not any(c in p for c in "*?[") and not Path(p).exists()
    ]
    if bundled and missing:
        stem = path.name.removesuffix(SUFFIX)
        raise RecipeError(
            f"bundled recipe {stem!r} reads its PDFs from {missing[0]}, which is not here (the demo's sample PDFs "
            f"ship with the source repository, tests/data/pdfs): clone the repository and build recipes/{path.name},"
            f" or write your own with `longdocvqa recipe new my-recipe --from {stem} --pool PATH`"
        )
    return loaded


def starter(
    name: str,
    *,
    dataset_name: str | None = None,
    pool: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
) -> str:
    """The text of bundled recipe `name` made ready to edit elsewhere: comments kept, its relative paths made
    absolute (or commented out when they point nowhere outside the repository), the given settings filled in."""
    source = bundled_path(name)
    lines = [_anchor_path(line, source.parent) for line in source.read_text(encoding="utf-8").splitlines()]
    if dataset_name is not None:
        lines = [f"name: {dataset_name}" if line.startswith("name:") else line for line in lines]
    if pool is not None:
        lines = _set_value(
            lines, "pool", "paths", yaml.safe_dump([str(Path(pool).resolve())], default_flow_style=True).strip()
        )
    if base_url is not None:
        lines = _set_endpoint(lines, "base_url", base_url, drop="base_url_env")
    if model is not None:
        lines = _set_endpoint(lines, "model", model)
    text = "\n".join(lines) + "\n"
    parse_recipe(yaml.safe_load(text), source=f"recipe new --from {name}")  # never write a recipe that fails
    return text


def write_new(dest: Path, text: str) -> Path:
    """Write a starter recipe to `dest`, refusing to overwrite anything there."""
    try:
        with open(dest, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise RecipeError(f"{dest}: already exists; choose another name or remove it first") from None
    except OSError as exc:
        raise RecipeError(f"{dest}: cannot write the recipe ({exc.strerror})") from None
    return dest


def _anchor_path(line: str, base: Path) -> str:
    """A path line of a bundled recipe, usable from another folder: relative paths absolute when they exist."""
    match = _PATH_LINE.match(line)
    if not match or not match["value"].strip():
        return line
    value = yaml.safe_load(match["value"])
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items) or all(_absolute(item) for item in items):
        return line
    anchored = [item if _absolute(item) else str((base / item).resolve()) for item in items]
    if all(Path(item).exists() for item in anchored):
        dumped = yaml.safe_dump(anchored if isinstance(value, list) else anchored[0], default_flow_style=True)
        return f"{match['indent']}{match['key']}: {dumped.strip().removesuffix('...').strip()}{match['note'] or ''}"
    return f"{match['indent']}# {match['key']}: {match['value'].strip()}   # relative to the bundled recipe: set yours"


def _absolute(path: str) -> bool:
    return "://" in path or os.path.isabs(path)


def _set_value(lines: list[str], section: str, key: str, value: str) -> list[str]:
    """Set `section.key` (a direct key of a top-level section, commented out or not) to `value`."""
    inside, pattern = False, re.compile(rf"^  (# )?{key}:")
    for index, line in enumerate(lines):
        if re.match(r"^[^\s#]", line):
            inside = line.split(":")[0] == section
        elif inside and pattern.match(line):
            match = _PATH_LINE.match(line)
            lines[index] = f"  {key}: {value}{(match and match['note']) or ''}"
            return lines
    raise RecipeError(f"the recipe has no {section}.{key} to set")


def _set_endpoint(lines: list[str], key: str, value: str, drop: str | None = None) -> list[str]:
    """Set `generate.generator.endpoint.key`, dropping the `drop` key (e.g. base_url_env when base_url is given)."""
    start = next((i for i, line in enumerate(lines) if line.strip() == "endpoint:"), None)
    if start is None:
        flag = "--" + key.replace("_", "-")
        raise RecipeError(f"this recipe calls no model endpoint (its generator is offline), so {flag} does not apply")
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) < indent
        ),
        len(lines),
    )
    body = [line for line in lines[start + 1 : end] if not (drop and line.strip().startswith(f"{drop}:"))]
    body = [line for line in body if not line.strip().startswith(f"{key}:")]
    quoted = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return [*lines[: start + 1], f"{' ' * indent}{key}: {quoted}", *body, *lines[end:]]
