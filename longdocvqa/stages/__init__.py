"""The build's stages, one module per stage: pool, decontaminate, plan (plan_rounds: its rounds over layout,
segment and generate), layout, segment, generate, assemble, publish.

Each holds its per-document function(s) and its stage runner, which runs them through the per-document loop of
runner.py (on an executor of executors/). stages/plan.py is pure (decisions from records and recipe settings);
the rules of the others live in the lower-level modules they import (pool.py, layout.py, segment.py,
assemble.py, dedup.py, qa.py) and the adapters (render, llm, hub).
"""
