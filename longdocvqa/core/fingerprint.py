"""Canonical JSON and content hashes: ids, cache keys and stage fingerprints.

Everything that must be stable across runs and machines is hashed from canonical JSON
(sorted keys, no whitespace, UTF-8), never from `repr` or pickles.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK_BYTES = 1 << 20


def canonical_json(obj: Any) -> str:
    """Serialise `obj` deterministically (pydantic models are dumped in JSON mode first)."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(obj: Any, length: int = 64) -> str:
    """SHA-256 hex digest of the canonical JSON of `obj`, truncated to `length` characters."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def stage_fingerprint(stage: str, version: int, config: Any, inputs: list[str] | tuple[str, ...] = ()) -> str:
    """Fingerprint of a stage's output: stage name + version + its config + its inputs' fingerprints."""
    return content_hash({"stage": stage, "version": version, "config": config, "inputs": list(inputs)}, length=16)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, streamed in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """SHA-256 hex digest of bytes."""
    return hashlib.sha256(data).hexdigest()


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
