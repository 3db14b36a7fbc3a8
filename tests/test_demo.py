"""The README's demo, end to end: build, validate, load like a user, train a few steps on it."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from longdocvqa.hub.validate import validate_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_build_has_segments_qa_and_a_valid_dataset(demo_build: Path) -> None:
    manifest = json.loads((demo_build / "manifest.json").read_text())
    assert manifest["documents"] == 8  # the 8 bundled PDFs of 32-50 pages
    plan = manifest["stages"]["plan"]  # segmented: only the documents the budget and mixture need
    assert plan["seen"] == 8 and manifest["segments"] == plan["kept"] <= 8
    assert set(manifest["stages"]["generate"]["by_task"]) == {"extract-single", "extract-multi", "reasoning"}
    assert manifest["examples"] > 0
    report = validate_dataset(str(demo_build / "dataset"))
    assert report.ok, report.to_json()
    sft = load_dataset(str(demo_build / "dataset"), "sft", split="train")
    docs = {r["sha256"]: r for r in load_dataset(str(demo_build / "dataset"), "documents", split="train")}
    row = sft[0]
    assert len(row["images"]) == docs[row["doc_id"]]["num_pages"]
    assert 1_024 <= row["num_tokens"] <= 4_096  # CPU-sized: the window of train/configs/cpu-smoke.yaml


@pytest.mark.slow
@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packing_vlm"])
def test_trainer_runs_on_the_demo_build(demo_build: Path, tmp_path: Path, packing: bool) -> None:
    """The README's training step on the demo build, and the same with packing_vlm: the build's real `sft` rows
    (2K-3K tokens) packed by their `num_tokens` into 6,144-token rows, two examples to most rows."""
    out = tmp_path / "model"
    accelerate = Path(sys.executable).with_name("accelerate")  # as the README runs it: accelerate launch
    launcher = [str(accelerate), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    command = [*launcher, "train/sft.py", "--config", "train/configs/cpu-smoke.yaml",
               "--dataset_name", str(demo_build / "dataset"), "--output_dir", str(out), "--max_steps", "1",
               "--per_device_train_batch_size", "1"]  # fmt: skip
    if packing:
        command += ["--packing_vlm", "true", "--max_length", "6144"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "num_tokens will be wrong" not in result.stderr  # the demo card's pixel budget is cpu-smoke.yaml's
    assert "not dropped by length" not in result.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 1 and state["global_step"] == 1  # --max_steps 1, logged once
    # a finite cross-entropy below 15 nats: ln(vocabulary) ~ 12 is the uniform guess, a broken loss is far off
    assert all(math.isfinite(loss) and 0 < loss < 15 for loss in losses), losses
    if packing:
        examples, rows = map(int, re.search(r"packing_vlm: (\d+) examples -> (\d+) rows", result.stderr).groups())
        sft = load_dataset(str(demo_build / "dataset"), "sft", split="train")
        assert examples == len(sft) and 0 < rows < examples  # several examples share a row
        assert rows >= math.ceil(sum(sft["num_tokens"]) / 6144)  # no row holds more than its 6,144 tokens
