"""Chat messages for the OpenAI-compatible API: text and image content parts, page images as JPEG data URLs.

Owns: `Message`, `ImageInput` (hashed from the caller's bytes, encoded once to a compact JPEG data URL only when
sent), and the two renderings of a conversation: for the wire (data URLs) and for the ledger key (image hashes).
Does not own: sending (client.py), what the prompts say (generate/prompts.py).
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from longdocvqa.core.fingerprint import bytes_sha256

Message = dict[str, Any]
_JPEG_QUALITY = 85


@dataclass(eq=False)
class ImageInput:
    """An image for a prompt: hashed from the caller's bytes, sent as a JPEG data URL of at most `max_pixels`."""

    data: bytes
    max_pixels: int
    quality: int = _JPEG_QUALITY
    _url: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def sha256(self) -> str:
        return bytes_sha256(self.data)

    @property
    def key(self) -> str:
        """What the ledger key holds instead of the bytes."""
        return f"sha256:{self.sha256}@{self.max_pixels}px/q{self.quality}"

    @property
    def data_url(self) -> str:
        """Encoded once per instance (the tasks of a segment share their page images), thread-safe."""
        with self._lock:
            if self._url is None:
                jpeg = encode_jpeg(self.data, self.max_pixels, self.quality)
                self._url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
            return self._url


def encode_jpeg(data: bytes, max_pixels: int, quality: int = _JPEG_QUALITY) -> bytes:
    """Re-encode any Pillow-readable image as RGB JPEG, downscaled (aspect kept) to at most `max_pixels`."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    if width * height > max_pixels:
        scale = (max_pixels / (width * height)) ** 0.5
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def text_part(text: str) -> dict[str, Any]:
    """A text content part."""
    return {"type": "text", "text": text}


def image_part(image: ImageInput) -> dict[str, Any]:
    """An image content part (rendered to a data URL only when actually sent)."""
    return {"type": "image_url", "image_url": {"url": image}}


def render_messages(messages: Sequence[Message], for_wire: bool) -> list[Message]:
    """Replace ImageInput placeholders by data URLs (wire) or by their hashes (ledger key)."""

    def convert(value: Any) -> Any:
        if isinstance(value, ImageInput):
            return value.data_url if for_wire else value.key
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return [convert(m) for m in messages]


def has_images(messages: Sequence[Message]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )
