"""One tokenizer on both sides: the build's Qwen2 tokenizer (longdocvqa.assembly.tokens, `tokenizers` only) and the
trainer's (train/processor.py, converted with transformers' TikTokenConverter) agree token for token
on the demo's real rows.

train/ may not import the package, so the conversion exists twice; the dataset's `num_tokens` (counted by the build)
drives the trainer's packing, so this test proves the two give the same ids on every `sft` row of the demo build,
and that the trainer's processor gives each row exactly its recorded `num_tokens`, images included.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from train_helpers import count_tokens

from longdocvqa.assembly import tokens
from longdocvqa.core.contract import CARD_KEY
from longdocvqa.hub.card import split_card
from longdocvqa.hub.load import load_config

ROWS_WITH_IMAGES = 2  # rows recounted with images through the trainer's processor (the smallest documents)


@pytest.fixture(scope="module")
def demo(demo_build: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the card's longdocvqa block, every `sft` row with its images as bytes) of the demo build."""
    dataset = demo_build / "dataset"
    header, _ = split_card((dataset / "README.md").read_text(encoding="utf-8"))
    rows = [row for split in load_config(dataset, "sft", decode_images=False).values() for row in split]
    assert rows
    return header[CARD_KEY], rows


@pytest.fixture(scope="module")
def trainer_processor(demo: tuple[dict[str, Any], list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory):
    from train.processor import build_offline_processor

    meta, _ = demo
    return build_offline_processor(meta["min_pixels"], meta["max_pixels"], tmp_path_factory.mktemp("tok"))


@pytest.mark.slow
def test_build_and_trainer_tokenizers_give_the_same_ids(demo, trainer_processor) -> None:
    meta, rows = demo
    build_tokenizer = tokens.TokenCounter.load(meta["tokenizer"], meta["min_pixels"], meta["max_pixels"]).tokenizer
    texts = [tokens.render_chat(row["messages"]) for row in rows]
    texts += [block["text"] for row in rows for m in row["messages"] for block in m["content"] if block["text"]]
    for text in texts:
        ours = build_tokenizer.encode(text, add_special_tokens=False).ids
        theirs = trainer_processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ours == theirs, text[:200]


@pytest.mark.slow
def test_trainer_processor_counts_each_rows_num_tokens(demo, trainer_processor) -> None:
    from PIL import Image

    _, rows = demo
    for row in sorted(rows, key=lambda r: (r["num_pages"], r["id"]))[:ROWS_WITH_IMAGES]:
        images = [Image.open(io.BytesIO(image["bytes"])).convert("RGB") for image in row["images"]]
        assert count_tokens(trainer_processor, row["messages"], images) == row["num_tokens"], row["id"]
