"""CPU smoke test of train/sft.py through its own entry point, and fast checks of its helpers.

The slow test runs `python train/sft.py --config train/configs/cpu-smoke.yaml` on a small `sft` folder (rendered
from a real PDF), without and with `packing_vlm`; the loss must go down and the saved checkpoint must reload.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import REPO_ROOT, make_sft_folder

from train.processor import build_offline_processor, load_processor
from train.sft import ScriptArguments, card_pixel_budget, check_pixel_budget, gradient_accumulation_for, make_parser

SMOKE_CONFIG = REPO_ROOT / "train" / "configs" / "cpu-smoke.yaml"
N_EXAMPLES = 16


@pytest.fixture(scope="module")
def tokenizer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizer")


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory: pytest.TempPathFactory, tokenizer_cache: Path) -> Path:
    return make_sft_folder(tmp_path_factory.mktemp("sft"), N_EXAMPLES, 3, 20, tokenizer_cache_dir=tokenizer_cache)


def run_sft(output_dir: Path, dataset: Path, tokenizer_cache: Path, *extra: str) -> list[float]:
    """Run the script as a user would; return the logged training losses."""
    command = [sys.executable, "train/sft.py", "--config", str(SMOKE_CONFIG), "--dataset_name", str(dataset)]
    command += ["--output_dir", str(output_dir), "--tokenizer_cache_dir", str(tokenizer_cache), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def assert_reloads(output_dir: Path, rope_theta: float) -> None:
    """The saved model and processor load back and run a forward pass."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(output_dir)
    assert model.config.get_text_config().rope_parameters["rope_theta"] == rope_theta
    processor = load_processor(str(output_dir), 3136, 50176)
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}], tokenize=True, return_dict=True
    )
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(inputs["input_ids"]).view(1, -1)).logits
    assert torch.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("packing", [False, True])
def test_sft_script_trains_and_saves(tmp_path: Path, sft_folder: Path, tokenizer_cache: Path, packing: bool) -> None:
    # Packed: ~200-token examples into 800-token rows, 4 examples per row and step.
    extra = ["--packing_vlm", "true", "--max_length", "800"] if packing else []
    losses = run_sft(tmp_path / "out", sft_folder, tokenizer_cache, *extra)
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < losses[0] - 0.3, losses
    assert_reloads(tmp_path / "out", 4_000_000.0)


@pytest.mark.slow
def test_offline_tokenizer_matches_official_qwen_ids(tokenizer_cache: Path) -> None:
    processor = build_offline_processor(3136, 50176, tokenizer_cache)
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n"
    expected = [151644, 872, 198, 151652, 151655, 151653, 3838, 374, 419, 30, 151645, 198]
    assert processor.tokenizer(text)["input_ids"] == expected


def test_config_file_parses_with_paper_optimiser() -> None:
    path = REPO_ROOT / "train" / "configs" / "qwen2.5-vl-7b-128k-fsdp2.yaml"
    args, sft, model = make_parser().parse_args_and_config(
        ["--config", str(path), "--output_dir", "/tmp/unused", "--bf16", "false"]
    )
    assert isinstance(args, ScriptArguments) and args.rope_theta == 4e6 and args.packing_vlm
    assert (sft.adam_beta1, sft.adam_beta2, sft.weight_decay, sft.learning_rate) == (0.9, 0.95, 0.1, 1e-5)
    assert sft.lr_scheduler_type == "cosine_with_min_lr" and sft.lr_scheduler_kwargs == {"min_lr": 1e-6}
    assert sft.max_length == 131072 and sft.warmup_steps == 0.1 and not sft.packing
    assert model.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_gradient_accumulation_gives_4m_token_batches() -> None:
    assert gradient_accumulation_for(4_194_304, world_size=8, per_device_rows=1, max_length=131_072) == 4
    assert gradient_accumulation_for(4_194_304, world_size=64, per_device_rows=1, max_length=131_072) == 1


def test_dataset_card_pixel_budget_check() -> None:
    card = "---\nconfigs: []\n---\n```yaml\nrender:\n  dpi: 144\n  max_pixels: 1003520\n```\n"
    assert card_pixel_budget(card) == {"max_pixels": 1003520}
    assert card_pixel_budget('{"min_pixels": 3136, "max_pixels": 50176}') == {"min_pixels": 3136, "max_pixels": 50176}
    assert check_pixel_budget(card, 3136, 1003520) == []
    assert len(check_pixel_budget(card, 3136, 12845056)) == 1


def test_help_lists_script_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "train/sft.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--packing_vlm" in result.stdout


@pytest.mark.slow
def test_gpu_check_cpu_dry_run(tmp_path: Path) -> None:
    command = [sys.executable, "train/gpu_check.py", "--cpu-dry-run", "--steps", "1", "--row-lengths", "512"]
    command += ["--json-out", str(tmp_path / "report.json")]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    exact = report["packing"][0]
    assert exact["packed"] == pytest.approx(exact["per_example"], abs=1e-5)
    assert abs(exact["packed_3row"] - exact["per_example"]) > 1e-4
    [row] = report["throughput"]  # one row length asked for: one row, filled to at most its 512 tokens
    assert 0 < row["row_tokens"] <= 512 and row["documents"] == 1
    assert len(row["losses"]) == 2 and all(math.isfinite(loss) and loss > 0 for loss in row["losses"])  # warm-up + 1
    assert math.isfinite(row["step_s"]) and row["step_s"] > 0
    assert row["tokens_per_s"] == pytest.approx(row["row_tokens"] / row["step_s"])
