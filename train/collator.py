"""Padding-free packing collator for Qwen2.5-VL: several `sft` examples in one row, documents kept apart.

Owns: turning a list of `sft` rows (`images`, `messages`) into one packed training row:
- `input_ids`, `labels` of shape (1, L), the examples concatenated with no padding;
- `position_ids` of shape (4, 1, L): row 0 holds text positions restarting at 0 for every example (the model derives
  the block-diagonal mask / varlen boundaries from it), rows 1-3 the M-RoPE t/h/w positions from the model's own
  `get_rope_index`, computed per example;
- `labels` = -100 on each example's first token (no prediction across a document boundary) and, with
  assistant-only loss, outside assistant turns;
- `pixel_values` and `image_grid_thw` concatenated in example order; no `attention_mask` (its presence would turn
  the packed mask off).
Does not own: choosing which examples share a row (train/sampler.py). Verified on CPU: the packed loss equals the
token-weighted mean of the per-example losses (tests/test_train_packing.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from trl.chat_template_utils import get_training_chat_template, has_generation_markers
from trl.data_utils import prepare_multimodal_messages

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
RopeIndexFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def training_chat_template(processor: Any, assistant_only_loss: bool) -> str | None:
    """The chat template to tokenize with: one with `{% generation %}` markers when assistant-only loss is on."""
    if assistant_only_loss and not has_generation_markers(processor.chat_template):
        return get_training_chat_template(processor)
    return None


@dataclass
class PackedVLMCollator:
    """Collate `sft` examples into one padding-free row with per-document positions (see module docstring)."""

    processor: Any
    rope_index_fn: RopeIndexFn  # `model.model.get_rope_index` of a Qwen2.5-VL model
    assistant_only_loss: bool = True
    max_length: int | None = None
    chat_template: str | None = field(default=None)

    def __post_init__(self) -> None:
        if self.chat_template is None:
            self.chat_template = training_chat_template(self.processor, self.assistant_only_loss)

    def encode(self, example: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Tokenize one example alone and attach its (4, 1, n) positions and its labels."""
        messages = prepare_multimodal_messages(example["messages"], images=example.get("images") or [])
        out = self.processor.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            return_assistant_tokens_mask=self.assistant_only_loss,
            processor_kwargs={"add_special_tokens": False},
        )
        input_ids = out["input_ids"]
        positions = example_positions(
            input_ids, out["mm_token_type_ids"], out.get("image_grid_thw"), self.rope_index_fn
        )
        labels = input_ids.clone()
        if self.assistant_only_loss:
            labels[out["assistant_masks"] == 0] = IGNORE_INDEX
        labels[:, 0] = IGNORE_INDEX
        encoded = {"input_ids": input_ids, "labels": labels, "position_ids": positions}
        for key in ("pixel_values", "image_grid_thw"):
            if key in out:
                encoded[key] = out[key]
        return encoded

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pack `examples` into one row."""
        return concatenate_examples([self.encode(example) for example in examples], self.max_length)


def example_positions(
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None,
    rope_index_fn: RopeIndexFn,
) -> torch.Tensor:
    """(4, 1, n) positions of one example: text positions from 0, then the model's M-RoPE t/h/w rows."""
    mrope, _ = rope_index_fn(input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw)
    text_positions = torch.arange(input_ids.shape[1], device=mrope.device).view(1, 1, -1)
    return torch.cat([text_positions, mrope])


def concatenate_examples(
    parts: list[dict[str, torch.Tensor]], max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Concatenate encoded examples along the sequence (ids, labels, positions) and image axes."""
    batch = {
        "input_ids": torch.cat([p["input_ids"] for p in parts], dim=1),
        "labels": torch.cat([p["labels"] for p in parts], dim=1),
        "position_ids": torch.cat([p["position_ids"] for p in parts], dim=2),
    }
    for key in ("pixel_values", "image_grid_thw"):
        tensors = [p[key] for p in parts if key in p]
        if tensors:
            batch[key] = torch.cat(tensors, dim=0)
    length = batch["input_ids"].shape[1]
    if max_length is not None and length > max_length:
        logger.warning(
            "Packed row has %d tokens > max_length %d: the dataset's num_tokens disagree with this processor "
            "(check max_pixels against the dataset card).",
            length,
            max_length,
        )
    return batch
