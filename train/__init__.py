"""Training side of longdocvqa: a thin TRL SFT script for Qwen2.5-VL on the published `sft` dataset config.

This package owns the trainer glue (processor, model, packed collator, bin-packing sampler, attention backend).
It imports nothing from `longdocvqa`: it depends only on the published dataset format (docs/design.md §4).
"""
