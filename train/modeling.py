"""Build the Qwen2.5-VL model for training: a real checkpoint, or a tiny random one from a config.

Owns: the model config edits of the recipe (mRoPE base override 1e6 -> 4e6, optional YaRN), dtype and attention
backend, freezing the vision tower (optionally keeping the 2x2 merger trainable) and optional Liger kernels.
Does not own: the processor (train/processor.py) or the training loop (train/sft.py).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch

from train.processor import TINY_MODEL_NAME

logger = logging.getLogger(__name__)

# A tiny Qwen2.5-VL that keeps every structural feature of the 7B (GQA, M-RoPE sections, windowed ViT with
# full-attention blocks, 2x2 merger) at CPU-test size: head_dim 16, so mrope_section sums to 16 / 2 = 8.
TINY_TEXT_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
}
TINY_VISION_CONFIG = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "out_hidden_size": 64,
    "fullatt_block_indexes": [1],
    "window_size": 56,
}


def torch_dtype(name: str | None) -> torch.dtype:
    """Map a config dtype name to torch (None/'auto': bf16 on CUDA, fp32 on CPU)."""
    if name in (None, "auto"):
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def tiny_config(tokenizer: Any, text: dict | None = None, vision: dict | None = None) -> Any:
    """Qwen2.5-VL config sized for tests, wired to the special-token ids of `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in ("<|im_end|>", "<|endoftext|>")}
    text_config = {**TINY_TEXT_CONFIG, **(text or {})}
    text_config.update(vocab_size=len(tokenizer), eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    return Qwen2_5_VLConfig(
        text_config={**text_config, "bos_token_id": None},
        vision_config={**TINY_VISION_CONFIG, **(vision or {})},
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )


def load_config(model_name_or_path: str, tokenizer: Any, revision: str | None = None) -> Any:
    """The model config to train: the tiny one, or the checkpoint's."""
    if model_name_or_path == TINY_MODEL_NAME:
        return tiny_config(tokenizer)
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_name_or_path, revision=revision)


def apply_rope(config: Any, rope_theta: float | None, yarn_factor: float | None, yarn_original_max: int) -> dict:
    """Edit the text config's `rope_parameters` in place (base override, optional YaRN); return the result."""
    text_config = config.get_text_config()
    params = dict(text_config.rope_parameters)
    if rope_theta is not None:
        logger.info("rope_theta %s -> %s", params.get("rope_theta"), rope_theta)
        params["rope_theta"] = float(rope_theta)
    if yarn_factor is not None:
        params.update(rope_type="yarn", factor=float(yarn_factor), original_max_position_embeddings=yarn_original_max)
    text_config.rope_parameters = params
    return params


def build_model(
    model_name_or_path: str, config: Any, dtype: torch.dtype, attn_implementation: str, revision: str | None = None
) -> Any:
    """Instantiate the model: random weights for `tiny-random`, else the checkpoint with `config`'s edits."""
    from transformers import AutoModelForImageTextToText

    if model_name_or_path == TINY_MODEL_NAME:
        return AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return AutoModelForImageTextToText.from_pretrained(
        model_name_or_path, config=config, revision=revision, dtype=dtype, attn_implementation=attn_implementation
    )


def freeze_vision_tower(model: Any, train_merger: bool) -> int:
    """Freeze the ViT (optionally keeping its 2x2 merger trainable); return the number of trainable parameters."""
    visual = model.model.visual
    visual.requires_grad_(False)
    if train_merger:
        visual.merger.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def apply_liger_kernels(model: Any) -> bool:
    """Apply Liger's RoPE/RMSNorm/SwiGLU kernels to Qwen2.5-VL when liger-kernel and CUDA are present.

    Fused linear cross-entropy stays off: TRL 1.16 computes the loss with its own fused LM head.
    """
    if not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None:
        logger.warning("Liger kernels requested but liger-kernel or CUDA is missing; continuing without them.")
        return False
    from liger_kernel.transformers import apply_liger_kernel_to_qwen2_5_vl

    apply_liger_kernel_to_qwen2_5_vl(
        rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False, model=model
    )
    return True
