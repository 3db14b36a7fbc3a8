"""What of a recipe may leave the machine: the published copy, with local paths and endpoints taken out.

The run directory keeps the resolved recipe (recipe.lock.yaml, absolute paths: it is what resumes a build). The
dataset card shows `public_recipe`: every local path made relative to the pool root (`<pool>/...`) or reduced to
`<local>/<file name>`, a pool URL's bucket or host replaced (`s3://<redacted>/<file name>`; `hf://` URLs are
public and stay), every endpoint URL, every `*_env` value (the names of environment variables) and every
`extra_body` value (free-form request fields, where a key may have been put) replaced by `<redacted>`. Nothing is
read from the environment here, so nothing from it can be written.
Does not own: the card text (card.py) or the rows (publish.py, which already keeps only file names).
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from longdocvqa.core.recipe import Recipe

REDACTED = "<redacted>"
POOL_ROOT = "<pool>"
LOCAL = "<local>"
_URL_KEYS = {"base_url"}


def pool_root(paths: list[str]) -> str | None:
    """The deepest folder that holds every pool path (globs cut at their first wildcard), or None."""
    folders = []
    for path in paths:
        cut = min((path.index(c) for c in "*?[" if c in path), default=len(path))
        head = path[:cut]
        folders.append(head if head.endswith(os.sep) or os.path.isdir(head) else os.path.dirname(head))
    folders = [f for f in folders if os.path.isabs(f)]
    if not folders:
        return None
    return os.path.commonpath(folders)


def public_path(path: str | None, root: str | None) -> str | None:
    """`<pool>/rel/path` under the pool root, `<local>/name` for another local path, `s3://<redacted>/name` for a
    URL (a bucket or host name may be private), except `hf://` URLs (public Hub ids); Hub ids unchanged."""
    if path is None:
        return path
    if "://" in path:
        scheme, rest = path.split("://", 1)
        return path if scheme == "hf" else f"{scheme}://{REDACTED}/{rest.rstrip('/').rsplit('/', 1)[-1]}"
    if not os.path.isabs(path):
        return path
    if root and (path == root or path.startswith(root.rstrip(os.sep) + os.sep)):
        rel = os.path.relpath(path, root)
        return POOL_ROOT if rel == "." else f"{POOL_ROOT}/{rel}"
    return f"{LOCAL}/{os.path.basename(path.rstrip(os.sep))}"


def public_recipe(recipe: Recipe) -> dict[str, Any]:
    """The recipe as the card shows it: no absolute local path, endpoint URL or environment variable name."""
    data = recipe.model_dump(mode="json")
    root = pool_root(recipe.pool.paths)
    pool = data["pool"]
    pool["paths"] = [public_path(p, root) for p in pool["paths"]]
    pool["licences"] = public_path(pool["licences"], root)
    data["generate"]["exemplars"] = public_path(data["generate"]["exemplars"], root)
    short = data["assemble"]["short_data"]
    short["path"] = public_path(short["path"], root)
    for bench in data["decontaminate"]["benchmarks"]:
        bench["path"] = public_path(bench["path"], root)
    return _redact_endpoints(data)


def _redact_endpoints(value: Any) -> Any:
    """Replace URL values and every `*_env` value, at any depth."""
    if isinstance(value, dict):
        return {k: _redact_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_endpoints(v) for v in value]
    return value


def _redact_value(key: str, value: Any) -> Any:
    if value is not None and (key in _URL_KEYS or key.endswith("_env")):
        return REDACTED
    if key == "extra_body" and isinstance(value, dict):  # free-form request fields: a key or token may sit here
        return {name: REDACTED for name in value}
    return _redact_endpoints(value)


def public_recipe_yaml(recipe: Recipe) -> str:
    """`public_recipe` as YAML, for the card."""
    return yaml.safe_dump(public_recipe(recipe), sort_keys=False, allow_unicode=True)
