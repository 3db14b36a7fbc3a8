"""Attention backend choice, and a packed-sequence SDPA backend for machines without flash-attn.

Owns: `resolve_attn_implementation` (flash_attention_2 when flash-attn imports, else a warned fallback) and the
`sdpa_varlen` backend registered with transformers' `AttentionInterface`.

Why `sdpa_varlen`: stock `sdpa` handles packed rows by materialising a block-diagonal (L x L) boolean mask from the
text position ids; at L = 131,072 that mask alone is 16 GiB per layer call. `sdpa_varlen` reads the document
boundaries from the text position ids (row 0 of Qwen2.5-VL's (4, 1, L) positions, which restart at 0 per document)
and runs causal attention per document: `torch.nn.attention.varlen.varlen_attn` (a FlashAttention kernel inside
PyTorch) on CUDA in bf16/fp16, else one `scaled_dot_product_attention(is_causal=True)` call per document. Because
transformers builds no mask for backends it does not know, unpacked rows (no text position row) get plain causal
SDPA; that is exact for right-padded batches, whose padding only ever follows real tokens.
Does not own: choosing the model or building inputs.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

PACKED_SDPA = "sdpa_varlen"


def flash_attn_available() -> bool:
    """True when the flash-attn package is importable (it needs a CUDA build)."""
    return importlib.util.find_spec("flash_attn") is not None


def _torch_varlen() -> Any:
    """Return PyTorch's `varlen_attn` if this torch build has it, else None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def document_bounds(text_position_ids: torch.Tensor) -> torch.Tensor:
    """Cumulative document offsets [0, ..., L] (int32) from text positions that restart at 0 per document."""
    starts = (text_position_ids.reshape(-1) == 0).nonzero().flatten()
    if starts.numel() == 0 or starts[0] != 0:
        starts = torch.cat([starts.new_zeros(1), starts])
    total = torch.tensor([text_position_ids.numel()], device=starts.device)
    return torch.cat([starts, total]).to(torch.int32)


def _varlen_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bounds: torch.Tensor, scale: float | None):
    """Causal varlen attention with PyTorch's flash kernel; q/k/v are (T, H, D)."""
    varlen_attn = _torch_varlen()
    params = inspect.signature(varlen_attn).parameters
    if "enable_gqa" not in params and k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    kwargs: dict[str, Any] = {"scale": scale}
    if "enable_gqa" in params:
        kwargs["enable_gqa"] = k.shape[1] != q.shape[1]
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)
    else:
        kwargs["is_causal"] = True
    max_len = int((bounds[1:] - bounds[:-1]).max())
    return varlen_attn(q, k, v, bounds, bounds, max_len, max_len, **kwargs)


def _per_document_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bounds: list[int], scale: float | None):
    """Causal SDPA run separately on each document; q/k/v are (1, H, L, D), the result (1, H, L, D)."""
    outputs = [
        F.scaled_dot_product_attention(
            q[:, :, start:end],
            k[:, :, start:end],
            v[:, :, start:end],
            is_causal=True,
            scale=scale,
            enable_gqa=k.shape[1] != q.shape[1],
        )
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(outputs, dim=2)


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: per-document causal attention for packed rows, plain SDPA otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    if not causal or position_ids is None or query.shape[0] != 1 or attention_mask is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=causal, **kwargs
        )
    bounds = document_bounds(position_ids)
    if query.is_cuda and query.dtype in (torch.bfloat16, torch.float16) and _torch_varlen() is not None:
        q, k, v = (tensor[0].transpose(0, 1) for tensor in (query, key, value))  # (T, H, D)
        out = _varlen_flash(q, k, v, bounds, scaling)
        return out.unsqueeze(0), None
    out = _per_document_sdpa(query, key, value, bounds.tolist(), scaling)
    return out.transpose(1, 2).contiguous(), None


def register_packed_sdpa() -> str:
    """Register `sdpa_varlen` with transformers (idempotent) and return its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    return PACKED_SDPA


def resolve_attn_implementation(requested: str | None, packing: bool) -> str:
    """Pick the attention backend: the request if usable, else the packed-SDPA fallback (with a warning)."""
    register_packed_sdpa()
    if requested is None:
        requested = "flash_attention_2" if torch.cuda.is_available() else "sdpa"
    if requested.startswith("flash_attention") and not flash_attn_available():
        logger.warning("%s requested but flash-attn is not importable; falling back to %s.", requested, PACKED_SDPA)
        return PACKED_SDPA
    if requested == "sdpa" and packing and torch.cuda.is_available():
        logger.warning("sdpa with packed rows builds an (L x L) mask per forward; %s avoids it.", PACKED_SDPA)
    return requested
