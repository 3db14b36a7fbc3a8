"""Long-context SFT / continued pre-training of Qwen2.5-VL on a longdocvqa `sft` dataset (TRL SFTTrainer).

Shaped like TRL's `trl/scripts/sft.py`: parse (ScriptArguments, SFTConfig, ModelConfig) with `TrlParser`
(defaults < `--config train/configs/<run>.yaml` < flags), load the dataset, build model and processor, train, save.

    python train/sft.py --config train/configs/cpu-smoke.yaml --dataset_name path/or/org/name
    accelerate launch --config_file train/configs/accelerate-fsdp2-8gpu.yaml \\
        train/sft.py --config train/configs/qwen2.5-vl-7b-128k-fsdp2.yaml --dataset_name org/name

What it adds to TRL's script, all switchable from the YAML:
- `model_name_or_path: tiny-random` builds a tiny random Qwen2.5-VL and an exact offline processor (CPU tests);
- min/max pixels on the processor, checked against the dataset card's `max_pixels`/`min_pixels`;
- mRoPE base override (rope_theta 1e6 -> 4e6, the paper's), optional YaRN, frozen ViT (trainable merger optional);
- `packing_vlm`: padding-free packing for Qwen2.5-VL (train/collator.py + best-fit-decreasing rows of `max_length`
  tokens from the `num_tokens` column, train/sampler.py); TRL's own `packing` stays False (it refuses vision data);
- `global_batch_tokens`: gradient accumulation from world size and max_length (4M-token batches in the paper);
- GPU-only memory savers (checkpoint offload, activation offloading, Liger) are switched off with a warning on CPU.
It imports nothing from `longdocvqa`: it depends only on the published dataset format.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python train/sft.py`: make `import train.*` resolve to this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("train.sft")


@dataclass
class ScriptArguments:
    """Arguments of this script (the dataset, packing, the processor's pixel budget and the model edits)."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub repo id or local folder of the dataset."})
    dataset_config: str = field(default="sft", metadata={"help": "Dataset config name (`sft`)."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Dataset revision (a version tag)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_streaming: bool = field(default=False, metadata={"help": "Stream the dataset (no packing_vlm)."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Keep only the first N examples."})
    packing_vlm: bool = field(default=False, metadata={"help": "Pack examples into max_length rows (Qwen2.5-VL)."})
    global_batch_tokens: int | None = field(
        default=None, metadata={"help": "Tokens per optimizer step; sets gradient_accumulation_steps."}
    )
    min_pixels: int = field(default=3136, metadata={"help": "Processor min_pixels (4 x 28 x 28)."})
    max_pixels: int = field(default=12845056, metadata={"help": "Processor max_pixels (Hub default 16384 x 28 x 28)."})
    rope_theta: float | None = field(default=None, metadata={"help": "Override the mRoPE base (paper: 4e6)."})
    yarn_factor: float | None = field(default=None, metadata={"help": "Apply YaRN with this factor (off by default)."})
    yarn_original_max_position_embeddings: int = field(default=32768, metadata={"help": "YaRN original context."})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Freeze the ViT."})
    train_merger: bool = field(default=True, metadata={"help": "Keep the ViT's 2x2 merger trainable when frozen."})
    liger_kernels: bool = field(default=False, metadata={"help": "Liger RoPE/RMSNorm/SwiGLU kernels (CUDA only)."})
    offload_checkpoints: bool = field(default=False, metadata={"help": "Keep checkpointed activations on the host."})
    tokenizer_cache_dir: str | None = field(default=None, metadata={"help": "Cache of the offline Qwen2 tokenizer."})


def dataset_card_text(dataset_name: str, revision: str | None) -> str | None:
    """The dataset card (README.md) of a local folder or Hub repo, or None if it cannot be read."""
    local = Path(dataset_name) / "README.md"
    if local.is_file():
        return local.read_text(encoding="utf-8")
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(dataset_name, "README.md", repo_type="dataset", revision=revision)
    except Exception as err:  # offline or no card: the check is advisory only
        logger.info("No dataset card read for %s (%s).", dataset_name, err)
        return None
    return Path(path).read_text(encoding="utf-8")


def card_pixel_budget(card: str) -> dict[str, int]:
    """`min_pixels` / `max_pixels` recorded in a dataset card (YAML `key: N` or JSON `"key": N`)."""
    found = {}
    for key in ("min_pixels", "max_pixels"):
        match = re.search(rf"""["']?\b{key}["']?\s*[:=]\s*(\d+)""", card)
        if match:
            found[key] = int(match.group(1))
    return found


def check_pixel_budget(card: str | None, min_pixels: int, max_pixels: int) -> list[str]:
    """Warn (and return the messages) when the card's pixel budget differs from the processor's."""
    if card is None:
        return []
    ours = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    messages = [
        f"dataset card records {key}={value} but the processor uses {key}={ours[key]}: num_tokens will be wrong"
        for key, value in card_pixel_budget(card).items()
        if value != ours[key]
    ]
    for message in messages:
        logger.warning(message)
    return messages


def gradient_accumulation_for(global_batch_tokens: int, world_size: int, per_device_rows: int, max_length: int) -> int:
    """Accumulation steps so that world_size x rows x max_length x steps ~= global_batch_tokens (at least 1)."""
    return max(1, round(global_batch_tokens / (world_size * per_device_rows * max_length)))


def load_sft_dataset(args: ScriptArguments) -> Any:
    """`load_dataset(name, "sft", revision, split)`, then drop what cannot train (counted, logged)."""
    from datasets import load_dataset

    from train.schema import check_columns

    dataset = load_dataset(
        args.dataset_name,
        args.dataset_config,
        revision=args.dataset_revision,
        split=args.dataset_train_split,
        streaming=args.dataset_streaming,
    )
    check_columns(dataset.column_names)  # the published format (train/dataset_schema.json)
    if args.max_train_examples is not None:
        dataset = dataset.take(args.max_train_examples)
    return dataset


def drop_overlong(dataset: Any, max_length: int | None) -> Any:
    """Remove examples whose `num_tokens` exceed max_length: image tokens cannot be truncated."""
    if max_length is None or "num_tokens" not in (dataset.column_names or []):
        return dataset
    keep = [i for i, n in enumerate(dataset["num_tokens"]) if n <= max_length]
    if len(keep) < len(dataset):
        dropped = len(dataset) - len(keep)
        logger.warning("Dropped %d of %d examples longer than %d tokens.", dropped, len(dataset), max_length)
        dataset = dataset.select(keep)
    return dataset


def gpu_only_settings(training_args: Any, args: ScriptArguments) -> None:
    """Enable offloads only with a GPU: both crash on CPU (docs/research/training.md §2.2, errors 7 and 9)."""
    import torch

    if torch.cuda.is_available():
        if args.offload_checkpoints and training_args.gradient_checkpointing:
            training_args.gradient_checkpointing_kwargs = {
                **(training_args.gradient_checkpointing_kwargs or {}),
                "offload": True,
            }
        return
    if training_args.activation_offloading or args.offload_checkpoints:
        logger.warning("No GPU: activation_offloading and offload_checkpoints are switched off.")
    training_args.activation_offloading = False


def configure_batch(training_args: Any, args: ScriptArguments) -> None:
    """Packing needs one row per device; `global_batch_tokens` sets gradient accumulation."""
    if args.packing_vlm and training_args.per_device_train_batch_size != 1:
        logger.warning("packing_vlm packs several examples per row: per_device_train_batch_size set to 1.")
        training_args.per_device_train_batch_size = 1
    if args.global_batch_tokens is None:
        return
    if training_args.max_length is None:
        raise ValueError("global_batch_tokens needs max_length (the tokens of one row).")
    world_size = training_args.world_size
    steps = gradient_accumulation_for(
        args.global_batch_tokens, world_size, training_args.per_device_train_batch_size, training_args.max_length
    )
    training_args.gradient_accumulation_steps = steps
    logger.info(
        "global_batch_tokens=%d: %d ranks x %d rows x %d tokens x %d accumulation steps",
        args.global_batch_tokens,
        world_size,
        training_args.per_device_train_batch_size,
        training_args.max_length,
        steps,
    )


def build_processor_and_model(args: ScriptArguments, training_args: Any, model_args: Any) -> tuple[Any, Any]:
    """Processor with the pixel budget; model with the recipe's config edits, dtype and attention backend."""
    from train.attention import resolve_attn_implementation
    from train.modeling import (
        apply_liger_kernels,
        apply_rope,
        build_model,
        freeze_vision_tower,
        load_config,
        torch_dtype,
    )
    from train.processor import TOKENIZER_CACHE_DIR, load_processor

    name = model_args.model_name_or_path
    cache_dir = Path(args.tokenizer_cache_dir) if args.tokenizer_cache_dir else TOKENIZER_CACHE_DIR
    processor = load_processor(name, args.min_pixels, args.max_pixels, model_args.model_revision, cache_dir)
    config = load_config(name, processor.tokenizer, model_args.model_revision)
    rope = apply_rope(config, args.rope_theta, args.yarn_factor, args.yarn_original_max_position_embeddings)
    attn = resolve_attn_implementation(model_args.attn_implementation, args.packing_vlm)
    model = build_model(name, config, torch_dtype(model_args.dtype), attn, model_args.model_revision)
    logger.info("model %s: attention=%s dtype=%s rope=%s", name, attn, model.dtype, rope)
    if args.freeze_vision_tower:
        trainable = freeze_vision_tower(model, args.train_merger)
        logger.info("vision tower frozen (merger trainable: %s); %d trainable params", args.train_merger, trainable)
    if args.liger_kernels:
        apply_liger_kernels(model)
    return processor, model


def make_trainer(args: ScriptArguments, training_args: Any, model_args: Any, dataset: Any) -> Any:
    """SFTTrainer, or its packed variant when `packing_vlm` is set."""
    from trl import SFTTrainer, get_peft_config

    from train.collator import PackedVLMCollator
    from train.sampler import PackedBatchSampler
    from train.trainer import PackedSFTTrainer, score_supervised_positions_on_cpu

    if not score_supervised_positions_on_cpu():
        logger.warning("this TRL scores every position on CPU: training on CPU is slow")
    processor, model = build_processor_and_model(args, training_args, model_args)
    peft_config = get_peft_config(model_args)
    if not args.packing_vlm:
        return SFTTrainer(
            model=model, args=training_args, train_dataset=dataset, processing_class=processor, peft_config=peft_config
        )
    if args.dataset_streaming:
        raise ValueError("packing_vlm needs every example's num_tokens up front: set dataset_streaming to false.")
    sampler = PackedBatchSampler(dataset["num_tokens"], training_args.max_length, seed=training_args.seed)
    logger.info("packing_vlm: %d examples -> %d rows, efficiency %.4f", len(dataset), len(sampler), sampler.efficiency)
    collator = PackedVLMCollator(
        processor, model.model.get_rope_index, training_args.assistant_only_loss, training_args.max_length
    )
    return PackedSFTTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config,
        batch_sampler=sampler,
    )


def main(args: ScriptArguments, training_args: Any, model_args: Any) -> None:
    """Load, build, train, save (and optionally push)."""
    if not args.dataset_name:
        raise ValueError("--dataset_name is required (a Hub repo id or a local dataset folder).")
    if training_args.packing or training_args.padding_free:
        raise ValueError("TRL packing/padding_free refuse vision datasets: set them false and use packing_vlm.")
    gpu_only_settings(training_args, args)
    configure_batch(training_args, args)
    card = dataset_card_text(args.dataset_name, args.dataset_revision)
    mismatch = check_pixel_budget(card, args.min_pixels, args.max_pixels)
    if mismatch and args.packing_vlm:
        raise ValueError("packing_vlm packs by the dataset's num_tokens: use the card's min_pixels/max_pixels.")
    dataset = load_sft_dataset(args)
    if mismatch:
        logger.warning("num_tokens describe other pixel settings: examples are not dropped by length.")
    elif not args.dataset_streaming:
        dataset = drop_overlong(dataset, training_args.max_length)
    if not args.packing_vlm:
        training_args.max_length = None  # TRL would truncate through image tokens; over-long rows were dropped
    trainer = make_trainer(args, training_args, model_args, dataset)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()  # trainer_state.json: the log history (losses) next to the weights
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=args.dataset_name)
    trainer.end()


def make_parser() -> Any:
    """TrlParser over (ScriptArguments, SFTConfig, ModelConfig)."""
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((ScriptArguments, SFTConfig, ModelConfig))


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    script_args, sft_args, model_config = make_parser().parse_args_and_config()
    main(script_args, sft_args, model_config)
