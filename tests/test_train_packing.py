"""Packing for Qwen2.5-VL (train/collator.py, train/sampler.py, train/attention.py) on a tiny random model.

The packed row's loss must equal the token-weighted mean of the per-example losses, where each example runs alone
through the model's own position computation; dropping the text-position row must break that equality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from train_helpers import make_sft_folder

from train.attention import PACKED_SDPA, document_bounds, register_packed_sdpa
from train.collator import IGNORE_INDEX, PackedVLMCollator
from train.modeling import tiny_config
from train.processor import build_offline_processor
from train.sampler import PackedBatchSampler, best_fit_decreasing, packing_efficiency, sequential_greedy

N_EXAMPLES = 4


@pytest.fixture(scope="module")
def tokenizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizer")


@pytest.fixture(scope="module")
def processor(tokenizer_cache: Path):
    return build_offline_processor(28 * 28 * 4, 28 * 28 * 64, tokenizer_cache)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory, tokenizer_cache: Path) -> list[dict]:
    from datasets import load_dataset

    folder = make_sft_folder(tmp_path_factory.mktemp("sft"), N_EXAMPLES, 3, 20, tokenizer_cache_dir=tokenizer_cache)
    dataset = load_dataset(str(folder), "sft", split="train")
    return [dataset[i] for i in range(N_EXAMPLES)]


def tiny_model(processor, attn_implementation: str):
    from transformers import AutoModelForImageTextToText

    register_packed_sdpa()
    torch.manual_seed(0)
    config = tiny_config(processor.tokenizer)
    model = AutoModelForImageTextToText.from_config(config, attn_implementation=attn_implementation)
    return model.eval()


def reference_loss(model, processor, collator: PackedVLMCollator, examples: list[dict]) -> float:
    """Token-weighted mean of each example's loss, each run alone with the model computing its own positions."""
    from trl.data_utils import prepare_multimodal_messages

    total, count = 0.0, 0
    for example in examples:
        messages = prepare_multimodal_messages(example["messages"], images=example["images"])
        inputs = processor.apply_chat_template(
            messages, chat_template=collator.chat_template, tokenize=True, return_dict=True, return_tensors="pt"
        )
        labels = collator.encode(example)["labels"]
        n_tokens = int((labels[:, 1:] != IGNORE_INDEX).sum())
        with torch.no_grad():
            loss = model(**inputs, labels=labels, use_cache=False).loss
        total += float(loss) * n_tokens
        count += n_tokens
    return total / count


def packed_loss(model, batch: dict) -> float:
    with torch.no_grad():
        return float(model(**batch, use_cache=False).loss)


@pytest.mark.parametrize("attn", ["sdpa", PACKED_SDPA])
@pytest.mark.parametrize("assistant_only", [False, True])
def test_packed_loss_equals_per_example_losses(processor, examples, attn: str, assistant_only: bool) -> None:
    model = tiny_model(processor, attn)
    collator = PackedVLMCollator(processor, model.model.get_rope_index, assistant_only_loss=assistant_only)
    batch = collator(examples)
    assert batch["position_ids"].shape == (4, 1, batch["input_ids"].shape[1])
    assert "attention_mask" not in batch
    reference = reference_loss(model, processor, collator, examples)
    assert packed_loss(model, batch) == pytest.approx(reference, abs=1e-5)


def test_fused_head_on_cpu_scores_only_labelled_positions_with_the_same_loss_and_gradients(
    processor, examples, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train/sft.py's `score_supervised_positions_on_cpu`: TRL's fused LM head, as the trainer calls it on a packed
    row, projects only the positions that carry a label, and gives the loss, gradients and metrics it gave when it
    projected every position; the loss is also the model's own (unfused) cross-entropy."""
    from trl.trainer import utils as trl_utils

    from train.trainer import score_supervised_positions_on_cpu

    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # put back after the test
    kernel, projected = trl_utils._ChunkedLogProbFunction, []
    apply = kernel.apply

    def counting_apply(hidden: torch.Tensor, *args):
        projected.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(kernel, "apply", staticmethod(counting_apply))
    model = tiny_model(processor, "sdpa")
    batch = PackedVLMCollator(processor, model.model.get_rope_index, assistant_only_loss=True)(examples)
    unfused = packed_loss(model, batch)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))

    def step() -> tuple[Any, list[torch.Tensor]]:
        model.zero_grad()
        out = model(**batch, use_cache=False, fused_lm_head=True)
        out.loss.backward()
        return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    every, every_grads = step()
    assert score_supervised_positions_on_cpu()
    labelled, labelled_grads = step()
    supervised = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert projected == [batch["input_ids"].shape[1] - 1, supervised] and 0 < supervised < projected[0] / 10
    assert float(labelled.loss.detach()) == pytest.approx(float(every.loss.detach()), rel=1e-6)
    assert float(labelled.loss.detach()) == pytest.approx(unfused, rel=1e-5)
    assert float(labelled.entropy.sum()) == pytest.approx(float(every.entropy.sum()), rel=1e-5)
    assert int(labelled.is_top1.sum()) == int(every.is_top1.sum())
    assert len(labelled_grads) == len(every_grads) > 0
    for new, old in zip(labelled_grads, every_grads, strict=True):
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-6)


def test_three_row_positions_leak_across_documents(processor, examples) -> None:
    model = tiny_model(processor, "sdpa")
    collator = PackedVLMCollator(processor, model.model.get_rope_index, assistant_only_loss=False)
    batch = collator(examples)
    reference = reference_loss(model, processor, collator, examples)
    leaky = packed_loss(model, {**batch, "position_ids": batch["position_ids"][1:]})
    assert abs(leaky - reference) > 1e-4


def test_labels_mask_document_starts_and_prompts(processor, examples) -> None:
    model = tiny_model(processor, "sdpa")
    collator = PackedVLMCollator(processor, model.model.get_rope_index, assistant_only_loss=True)
    batch = collator(examples)
    starts = (batch["position_ids"][0, 0] == 0).nonzero().flatten()
    assert len(starts) == N_EXAMPLES
    assert (batch["labels"][0, starts] == IGNORE_INDEX).all()
    first = collator.encode(examples[0])
    trained = first["labels"][first["labels"] != IGNORE_INDEX]
    answer = examples[0]["messages"][1]["content"][0]["text"]
    assert processor.tokenizer.decode(trained) == f"{answer}<|im_end|>\n"


def test_document_bounds_from_text_positions() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert document_bounds(positions).tolist() == [0, 3, 5, 9]


def test_bfd_respects_capacity_and_beats_sequential_greedy() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(100, 1000, (500,), generator=generator).tolist() + [5000]
    bins = best_fit_decreasing(lengths, 1024)
    packed = sorted(i for b in bins for i in b)
    assert packed == list(range(500))  # the 5000-token example cannot fit and is left out
    assert all(sum(lengths[i] for i in b) <= 1024 for b in bins)
    greedy = sequential_greedy(lengths, 1024)
    assert packing_efficiency(bins, lengths, 1024) > packing_efficiency(greedy, lengths, 1024)


def test_batch_sampler_reshuffles_rows_per_epoch() -> None:
    lengths = [300, 700, 200, 800, 500, 500, 1000] * 4  # packs into exactly 16 full rows
    sampler = PackedBatchSampler(lengths, max_length=1000, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(first) == len(sampler) == 16 and sampler.efficiency == 1.0
    assert sorted(map(sorted, first)) == sorted(map(sorted, second)) and first != second
