"""The build's stages, one module per stage: pool, decontaminate, plan (plan_rounds: its rounds over layout,
segment and generate), layout, segment, generate, assemble, publish.

Each holds its per-document function(s) and its stage runner, which runs them through the per-document loop of
runner/loop.py (on an executor of runner/). stages/plan.py is pure (decisions from records and recipe settings);
the rules of the others live in the domain folders they import (documents/, decontamination/, assembly/,
generate/) and the adapters (documents/render.py, llm/, hub/).
"""
