"""The published `sft` config goes into TRL's SFTTrainer as loaded: no conversion, one real training step on CPU.

A tiny random Qwen2.5-VL is built from a config and its processor in code (docs/research/training.md §2.2-2.3: no
torchvision on CI, so the VideoProcessorMixin shim and an empty video processor), with TRL's bundled official
Qwen2.5-VL chat template. The dataset is the sample build of test_publish (real PDF pages) loaded with
`load_dataset(folder, "sft")`, exactly what a user's training script does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from test_publish import Sample, cached_sample

from train.modeling import TINY_VISION_CONFIG

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TINY_MAX_PIXELS = 28 * 28 * 16  # 16 image tokens per page keeps a 33-page document cheap on CPU


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return cached_sample(tmp_path_factory)


def build_processor() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil

    from train.processor import install_video_processor_shim

    NoVideoProcessor = install_video_processor_shim()  # VideoProcessorMixin is exported only with torchvision
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = ["Page 12: What does page 3 begin with? The answer is the first line of the page."] * 50
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=SPECIALS[1:]
    )
    images = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=TINY_MAX_PIXELS)
    return Qwen2_5_VLProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=NoVideoProcessor(),
        chat_template=official_template(),
    )


def official_template() -> str:
    import importlib.util

    folder = Path(importlib.util.find_spec("trl").submodule_search_locations[0])  # type: ignore[index,union-attr]
    return (folder / "chat_templates" / "qwen2_5_vl.jinja").read_text()


def build_model(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": None,
        },
        vision_config=dict(TINY_VISION_CONFIG),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config)


@pytest.mark.slow
def test_sft_config_trains_one_step_in_trl_without_conversion(sample: Sample, tmp_path: Path) -> None:
    import torch
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    dataset = load_dataset(str(sample.dataset), "sft", split="test", cache_dir=str(tmp_path / "hf-cache"))
    processor = build_processor()
    args = SFTConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        per_device_train_batch_size=1,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        use_cpu=True,
        max_length=None,
        dataloader_num_workers=0,
        gradient_checkpointing=False,
        assistant_only_loss=True,
    )
    trainer = SFTTrainer(
        model=build_model(processor.tokenizer), args=args, train_dataset=dataset, processing_class=processor
    )

    row = dataset[0]
    batch = trainer.data_collator([{"images": row["images"], "messages": row["messages"]}])
    assert batch["image_grid_thw"].shape[0] == row["num_pages"] == 33  # every page became an image
    image_tokens = int((batch["image_grid_thw"].prod(dim=1) // 4).sum())
    assert (
        int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum()) == image_tokens
    )
    trained = batch["labels"][batch["labels"] != -100]
    assert 0 < trained.numel() < batch["input_ids"].shape[1] / 10  # only the answer turn is trained

    result = trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(result.training_loss)
    assert torch.isfinite(next(trainer.model.parameters())).all()
