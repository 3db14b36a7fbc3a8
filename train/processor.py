"""Build the Qwen2.5-VL processor (tokenizer + image processor + chat template).

Owns: loading the processor of a real checkpoint, and building an exact Qwen2/2.5 processor fully offline for
tiny random models (CI, CPU smoke tests): the tokenizer is converted from the `qwen.tiktoken` BPE file that the
`dashscope` wheel ships (docs/research/training.md §2.8), the chat template is TRL's bundled `qwen2_5_vl.jinja`.
Does not own: the model, the data, or training.

Without torchvision, transformers does not export `VideoProcessorMixin` and `Qwen2_5_VLProcessor(...)` crashes
("VIDEO_PROCESSOR_MAPPING has no attribute _extra_content"); `install_video_processor_shim` works around that.
"""

from __future__ import annotations

import base64
import importlib.util
import logging
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TINY_MODEL_NAME = "tiny-random"
# Qwen2 pre-tokenizer regex and the special tokens appended after the 151,643 BPE ranks (ids 151643..151656).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TOKENIZER_CACHE_DIR = Path.home() / ".cache" / "longdocvqa-train" / "qwen2-tokenizer"


def install_video_processor_shim() -> type:
    """Export `VideoProcessorMixin` from transformers when torchvision is missing; return a no-op subclass."""
    import transformers
    import transformers.processing_utils
    from transformers.video_processing_utils import VideoProcessorMixin

    # the processor's class check looks the name up on its own handle of the package too
    transformers.VideoProcessorMixin = VideoProcessorMixin
    transformers.processing_utils.transformers_module.VideoProcessorMixin = VideoProcessorMixin

    class NoVideoProcessor(VideoProcessorMixin):
        """Placeholder video processor: the `sft` data holds page images only."""

    return NoVideoProcessor


def qwen_tiktoken_path() -> Path:
    """Locate `qwen.tiktoken` inside the installed dashscope package without importing it."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The offline Qwen2 tokenizer needs dashscope's qwen.tiktoken: `pip install --no-deps dashscope==2.0.2`."
        )
    path = Path(spec.submodule_search_locations[0]) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed dashscope package.")
    return path


def _convert_tiktoken(vocab_file: Path) -> Any:
    """Convert a tiktoken BPE file to a `tokenizers.Tokenizer` (no tiktoken package needed)."""
    from tokenizers import normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _FileTikTokenConverter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(path: str) -> dict[bytes, int]:
            with open(path, "rb") as handle:
                lines = handle.read().splitlines()
            return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines if line)}

    converter = _FileTikTokenConverter(
        vocab_file=str(vocab_file), pattern=QWEN2_PATTERN, extra_special_tokens=QWEN2_SPECIAL_TOKENS
    )
    tokenizer = converter.converted()
    tokenizer.normalizer = normalizers.NFC()
    return tokenizer


def build_offline_tokenizer(cache_dir: Path = TOKENIZER_CACHE_DIR) -> Any:
    """Return the exact Qwen2/2.5 tokenizer, converted once from qwen.tiktoken and cached in `cache_dir`."""
    from transformers import PreTrainedTokenizerFast

    if (cache_dir / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(cache_dir))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_convert_tiktoken(qwen_tiktoken_path()), eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = trl_chat_template()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(cache_dir))
    logger.info("Converted qwen.tiktoken to %s", cache_dir)
    return tokenizer


def trl_chat_template(name: str = "qwen2_5_vl") -> str:
    """Return a chat template bundled with TRL (`qwen2_5_vl` is the official Qwen2.5-VL template)."""
    return (resources.files("trl") / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")


def _image_processor(min_pixels: int, max_pixels: int, path: str | None = None, revision: str | None = None) -> Any:
    """Pillow-backed Qwen2-VL image processor (needs no torchvision) with the pixel budget set."""
    from transformers import Qwen2VLImageProcessorPil

    kwargs = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    if path is None:
        return Qwen2VLImageProcessorPil(**kwargs)
    return Qwen2VLImageProcessorPil.from_pretrained(path, revision=revision, **kwargs)


def build_offline_processor(min_pixels: int, max_pixels: int, cache_dir: Path = TOKENIZER_CACHE_DIR) -> Any:
    """Build a Qwen2.5-VL processor with no network access: exact tokenizer, official chat template."""
    from transformers import Qwen2_5_VLProcessor

    video_processor_cls = install_video_processor_shim()
    return Qwen2_5_VLProcessor(
        image_processor=_image_processor(min_pixels, max_pixels),
        tokenizer=build_offline_tokenizer(cache_dir),
        video_processor=video_processor_cls(),
        chat_template=trl_chat_template(),
    )


def _processor_from_parts(path: str, min_pixels: int, max_pixels: int, revision: str | None) -> Any:
    """Assemble the processor of a saved checkpoint by hand (the AutoProcessor path needs torchvision)."""
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor

    video_processor_cls = install_video_processor_shim()
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    return Qwen2_5_VLProcessor(
        image_processor=_image_processor(min_pixels, max_pixels, path, revision),
        tokenizer=tokenizer,
        video_processor=video_processor_cls(),
        chat_template=tokenizer.chat_template or trl_chat_template(),
    )


def load_processor(
    model_name_or_path: str,
    min_pixels: int,
    max_pixels: int,
    revision: str | None = None,
    cache_dir: Path = TOKENIZER_CACHE_DIR,
) -> Any:
    """Return the processor for `model_name_or_path` (or the offline one for `tiny-random`) with the pixel budget."""
    if model_name_or_path == TINY_MODEL_NAME:
        return build_offline_processor(min_pixels, max_pixels, cache_dir)
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(
            model_name_or_path, revision=revision, min_pixels=min_pixels, max_pixels=max_pixels
        )
    except (ImportError, ValueError, AttributeError) as err:  # torchvision missing: build from the saved parts
        logger.warning("AutoProcessor failed (%s); assembling the processor from its saved parts.", err)
        return _processor_from_parts(model_name_or_path, min_pixels, max_pixels, revision)


def pixel_budget(processor: Any) -> tuple[int, int]:
    """Return the processor's (min_pixels, max_pixels) as its image processor will apply them."""
    size = processor.image_processor.size
    return int(size["shortest_edge"]), int(size["longest_edge"])
