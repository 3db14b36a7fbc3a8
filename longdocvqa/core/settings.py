"""The base of every settings model and the bounds of every number in them (recipe, command line, eval options).

`Strict`: unknown keys are errors, assignments are validated, no NaN or infinity. The bounds are far above any real
use and low enough that no count, size or allocation derived from them overflows, exhausts memory or loops for hours.
Does not own: the settings themselves (recipe.py, recipe_generate.py).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

# Upper bounds of numeric settings: far above any real use, low enough that no count, size or allocation derived
# from them overflows, exhausts memory or loops for hours (num_perm feeds a linear LSH parameter search).
MAX_PAGES = 100_000  # pages of one document
MAX_PIXELS = 1 << 28  # one page image: 16384 x 16384, about 0.8 GB as RGB
MAX_TOKENS = 1 << 24  # one example or reply: 16,777,216 tokens
MAX_COUNT = 1_000_000  # retries, concurrency, rounds, per-segment and per-document counts
MAX_SECONDS = 7 * 86_400.0  # a week
MAX_MEMORY_MB = 1 << 24  # 16 TiB
MAX_NUM_PERM = 8192
MAX_SEED = (1 << 63) - 1
# Request fields the client sets from the recipe's own settings: extra_body must not override them.
CLIENT_OWNED_KEYS = frozenset(
    {"model", "messages", "stream", "stream_options", "n", "response_format", "max_tokens", "temperature", "seed"}
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def finite(value: object) -> bool:
    """No NaN or infinity anywhere inside `value` (free-form mappings such as extra_body)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True
