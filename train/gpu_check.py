"""One-GPU check of the 128K training path: packed == unpacked loss, then tokens/s, peak memory and MFU.

    python train/gpu_check.py                     # on one GPU (H100/H200), < 8 min, installs nothing
    python train/gpu_check.py --cpu-dry-run       # same logic at tiny sizes on CPU

The model is Qwen2.5-VL at real width (hidden 3584, 28 heads / 4 KV heads, MLP 18944, vocab 152064, ViT width
1280) with fewer layers (default 4 text, 4 vision), random init, bf16, mRoPE base 4e6. The data is generated at
the token level (no tokenizer or PDF needed): documents of A4 pages at 144 dpi (a 120 x 84 patch grid, 2,520
image tokens per page) with "Page N:" text, a question and an answer; rows are packed with the same
`example_positions` / `concatenate_examples` code as the training collator.
Checks:
1. packing: the packed row's loss equals the token-weighted mean of per-example losses (fp32, the attention
   backend's exact path), and also in bf16 on the backend's fast path; dropping the text-position row breaks it;
2. throughput at 32K and 128K rows: forward + backward + AdamW with gradient checkpointing and TRL's fused LM
   head; tokens/s, peak memory, MFU (model FLOPs 6*N*T + causal attention, over the GPU's bf16 dense peak).
Needs torch, transformers, trl (and its datasets dependency) and accelerate; it says which are missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REQUIRED = ("torch", "transformers", "trl", "datasets", "accelerate")
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}  # dense bf16 datasheet numbers
PATCH_DIM = 3 * 2 * 14 * 14  # channels x temporal patch x 14 x 14 = 1176


@dataclass
class Sizes:
    """Model and data sizes of one run."""

    text_layers: int
    vision_layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    page_grid: tuple[int, int]  # patches (h, w) per page; tokens per page = h * w / 4
    row_lengths: tuple[int, ...]
    check_pages: int
    special_ids: tuple[int, int, int, int]  # <|image_pad|>, <|vision_start|>, <|vision_end|>, <|im_end|>


QWEN_SPECIAL_IDS = (151655, 151652, 151653, 151645)
REAL = Sizes(4, 4, 3584, 18944, 28, 4, 152064, 1280, 3420, 16, (120, 84), (32768, 131072), 2, QWEN_SPECIAL_IDS)
# Tiny: a 512-token vocabulary keeps TRL's chunked LM head cheap on CPU.
TINY = Sizes(2, 2, 64, 128, 4, 2, 512, 32, 64, 2, (8, 8), (512, 1024), 2, (500, 501, 502, 503))


def missing_packages() -> list[str]:
    """Required packages that are not importable here."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def build_model(sizes: Sizes, attn: str, dtype: Any, device: str) -> Any:
    """Random Qwen2.5-VL with real-width layers (or tiny ones), built directly on `device`."""
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLConfig

    head_dim = sizes.hidden // sizes.heads
    section = [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]  # 128 -> [16, 24, 24] as in Qwen2.5-VL
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": sizes.hidden,
            "intermediate_size": sizes.intermediate,
            "num_hidden_layers": sizes.text_layers,
            "num_attention_heads": sizes.heads,
            "num_key_value_heads": sizes.kv_heads,
            "vocab_size": sizes.vocab,
            "bos_token_id": None,
            "eos_token_id": sizes.special_ids[3],
            "pad_token_id": None,
            "max_position_embeddings": 131072,
            "rope_parameters": {"rope_type": "default", "rope_theta": 4_000_000.0, "mrope_section": section},
        },
        vision_config={
            "depth": sizes.vision_layers,
            "hidden_size": sizes.vision_hidden,
            "intermediate_size": sizes.vision_intermediate,
            "num_heads": sizes.vision_heads,
            "out_hidden_size": sizes.hidden,
            "fullatt_block_indexes": [sizes.vision_layers - 1],
            "window_size": 112,
        },
        image_token_id=sizes.special_ids[0],
        video_token_id=sizes.special_ids[0] + 1,
        vision_start_token_id=sizes.special_ids[1],
        vision_end_token_id=sizes.special_ids[2],
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation=attn)
    return model


def synthetic_example(pages: int, sizes: Sizes, generator: Any, device: str, dtype: Any) -> dict:
    """One document: per page "Page N:" + an image span, then a question; the answer is the trained span."""
    import torch

    image_pad, vision_start, vision_end, im_end = sizes.special_ids

    def text(n: int) -> list[int]:
        return torch.randint(0, min(sizes.special_ids) - 8, (n,), generator=generator).tolist()

    h, w = sizes.page_grid
    ids: list[int] = text(24)  # system prompt and user header
    for _ in range(pages):
        ids += text(4) + [vision_start] + [image_pad] * (h * w // 4) + [vision_end]
    ids += text(40)  # question and assistant header
    answer_start = len(ids)
    ids += text(16) + [im_end]
    input_ids = torch.tensor([ids], device=device)
    labels = torch.full_like(input_ids, -100)
    labels[:, answer_start:] = input_ids[:, answer_start:]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "mm_token_type_ids": (input_ids == image_pad).int(),
        "pixel_values": torch.randn(pages * h * w, PATCH_DIM, generator=generator).to(device, dtype),
        "image_grid_thw": torch.tensor([[1, h, w]] * pages, device=device),
    }


def encode(example: dict, model: Any) -> dict:
    """The collator's per-example encoding: (4, 1, n) positions from the model's get_rope_index."""
    from train.collator import example_positions

    positions = example_positions(
        example["input_ids"], example["mm_token_type_ids"], example["image_grid_thw"], model.model.get_rope_index
    )
    keys = ("input_ids", "labels", "pixel_values", "image_grid_thw")
    return {**{key: example[key] for key in keys}, "position_ids": positions}


def loss_of(model: Any, batch: dict) -> float:
    """TRL's fused-LM-head loss of one batch, without gradients."""
    import torch

    with torch.no_grad():
        return float(model(**batch, use_cache=False, fused_lm_head=True).loss)


def reference_loss(model: Any, examples: list[dict]) -> float:
    """Token-weighted mean of per-example losses, each example alone with model-computed positions."""
    total, count = 0.0, 0
    for example in examples:
        n_tokens = int((example["labels"][:, 1:] != -100).sum())
        inputs = {key: value for key, value in example.items()}
        inputs["attention_mask"] = inputs["input_ids"].new_ones(inputs["input_ids"].shape)
        total += loss_of(model, inputs) * n_tokens
        count += n_tokens
    return total / count


def packing_check(sizes: Sizes, attn: str, dtype: Any, device: str) -> dict:
    """Packed vs per-example loss (and the 3-row leak) for 3 documents of different lengths."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from train.collator import concatenate_examples

    model = build_model(sizes, attn, dtype, device).eval()
    add_fused_lm_head(model)
    generator = torch.Generator().manual_seed(1)
    examples = [synthetic_example(p, sizes, generator, device, dtype) for p in (1, sizes.check_pages, 1)]
    batch = concatenate_examples([encode(example, model) for example in examples])
    result = {
        "attn": attn,
        "dtype": str(dtype),
        "tokens": int(batch["input_ids"].shape[1]),
        "per_example": reference_loss(model, examples),
        "packed": loss_of(model, batch),
        "packed_3row": loss_of(model, {**batch, "position_ids": batch["position_ids"][1:]}),
    }
    del model
    return result


def model_flops(model: Any, doc_lengths: list[int], n_patches: int) -> float:
    """Training FLOPs of one row: 6 x params x tokens (text and ViT) + causal attention 6 x layers x d x sum L^2."""
    text = model.model.language_model
    text_params = sum(p.numel() for p in text.layers.parameters())
    vision_params = sum(p.numel() for p in model.model.visual.parameters())
    hidden, layers = text.config.hidden_size, text.config.num_hidden_layers
    attention = 6 * layers * hidden * sum(n * n for n in doc_lengths)
    return 6 * text_params * sum(doc_lengths) + 6 * vision_params * n_patches + attention


def throughput_row(sizes: Sizes, row_length: int, device: str, dtype: Any, generator: Any, model: Any) -> tuple:
    """Packed row of documents filling `row_length` tokens: (batch, doc lengths, patches)."""
    from train.collator import concatenate_examples

    h, w = sizes.page_grid
    page_tokens = h * w // 4 + 6
    docs = 1 if row_length <= 32768 else 2
    pages = max(1, (row_length // docs - 100) // page_tokens)
    examples = [synthetic_example(pages, sizes, generator, device, dtype) for _ in range(docs)]
    batch = concatenate_examples([encode(example, model) for example in examples])
    return batch, [int(e["input_ids"].shape[1]) for e in examples], docs * pages * h * w


def throughput(sizes: Sizes, attn: str, dtype: Any, device: str, steps: int, peak_tflops: float | None) -> list:
    """Train steps on packed rows of each length: tokens/s, peak memory, MFU."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    model = build_model(sizes, attn, dtype, device).train()
    add_fused_lm_head(model)
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed gradient checkpointing
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
    generator = torch.Generator().manual_seed(2)
    results = []
    for row_length in sizes.row_lengths:
        batch, doc_lengths, n_patches = throughput_row(sizes, row_length, device, dtype, generator, model)
        results.append(timed_steps(model, optimizer, batch, steps, device))
        results[-1].update(row_tokens=sum(doc_lengths), documents=len(doc_lengths), pages_patches=n_patches)
        flops = model_flops(model, doc_lengths, n_patches)
        achieved = flops / results[-1]["step_s"]
        results[-1]["model_tflops_per_s"] = achieved / 1e12
        results[-1]["mfu"] = achieved / (peak_tflops * 1e12) if peak_tflops else None
        results[-1]["tokens_per_s"] = sum(doc_lengths) / results[-1]["step_s"]
        print(json.dumps(results[-1]), flush=True)
    return results


def timed_steps(model: Any, optimizer: Any, batch: dict, steps: int, device: str) -> dict:
    """One warm-up step, then `steps` timed steps; losses and peak memory."""
    import torch

    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    losses, start = [], 0.0
    for step in range(steps + 1):
        if step == 1:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = model(**batch, use_cache=False, fused_lm_head=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    if cuda:
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / max(steps, 1)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {"step_s": step_s, "losses": losses, "peak_memory_gib": peak}


def environment(device: str) -> dict:
    """What this machine offers for the check."""
    import torch
    import transformers

    from train.attention import _torch_varlen, flash_attn_available

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "device": device}
    info.update(flash_attn=flash_attn_available(), torch_varlen_attn=_torch_varlen() is not None)
    info["liger_kernel"] = importlib.util.find_spec("liger_kernel") is not None
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_for(gpu: str | None, override: float | None) -> float | None:
    """The GPU's dense bf16 peak in TFLOP/s (datasheet), if known."""
    if override is not None:
        return override
    return next((value for name, value in PEAK_BF16_TFLOPS.items() if gpu and name in gpu), None)


def run(args: argparse.Namespace) -> dict:
    """All checks; returns the report."""
    import torch

    from train.attention import resolve_attn_implementation

    device = "cpu" if args.cpu_dry_run else "cuda"
    sizes = TINY if args.cpu_dry_run else REAL
    sizes = replace(
        sizes,
        text_layers=args.text_layers or sizes.text_layers,
        vision_layers=args.vision_layers or sizes.vision_layers,
        row_lengths=tuple(args.row_lengths or sizes.row_lengths),
    )
    report: dict[str, Any] = {"environment": environment(device), "sizes": asdict(sizes)}
    attn = resolve_attn_implementation(args.attn, packing=True)
    report["attn_implementation"] = attn
    print(json.dumps(report), flush=True)
    fast_dtype = torch.float32 if args.cpu_dry_run else torch.bfloat16
    dtypes = () if args.skip_packing_check else (torch.float32, fast_dtype)
    report["packing"] = [packing_check(sizes, attn, dtype, device) for dtype in dtypes]
    for check in report["packing"]:
        print(json.dumps(check), flush=True)
    peak = peak_for(report["environment"].get("gpu"), args.peak_tflops)
    report["throughput"] = throughput(sizes, attn, fast_dtype, device, args.steps, peak)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on CPU, to test the logic")
    parser.add_argument("--attn", default="flash_attention_2", help="attention backend to request")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row length (after one warm-up)")
    parser.add_argument("--text-layers", type=int, default=None, help="text decoder layers (default 4)")
    parser.add_argument("--vision-layers", type=int, default=None, help="ViT blocks (default 4)")
    parser.add_argument("--row-lengths", type=int, nargs="+", default=None, help="packed row lengths to time")
    parser.add_argument("--skip-packing-check", action="store_true", help="only time the rows")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak for MFU")
    parser.add_argument("--json-out", default=None, help="write the report here (default: $OUT/gpu_check.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Check dependencies and the device, run, write the report."""
    args = parse_args(argv)
    missing = missing_packages()
    if missing:
        print(f"gpu_check: missing packages: {', '.join(missing)} (pip install them; nothing is installed here)")
        return 2
    import torch

    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --cpu-dry-run to test the logic on CPU")
        return 2
    report = run(args)
    out = args.json_out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
