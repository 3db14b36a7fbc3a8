"""The build's stages, one thin module per stage: pool, decontaminate, plan, layout, segment, generate, assemble,
publish.

Each wires its rules to the runner: it builds typed jobs, runs them through the per-document loop of
runner/loop.py (on an executor of runner/local.py or runner/ray.py), and returns a `StageResult` whose outputs
pipeline.py passes to the next stage. The rules live in the domain folders they import: documents/ (pool, layout,
segment), decontamination/, assembly/ (assembly, sampling, the plan's rules in planning.py), generate/, hub/.
"""
