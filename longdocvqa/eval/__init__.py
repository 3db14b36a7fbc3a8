"""`longdocvqa eval`: score an OpenAI-compatible model on full long documents at chosen context lengths.

- `data`: the questions and their documents, from a built dataset (folder or Hub repo: `qa`, `documents`, `sft`
  configs) or from a benchmark folder in MMLongBench-Doc's layout (PDFs plus a JSON/JSONL of questions).
- `prompt`: length-controlled prompts: the whole relevant document, padded with other documents' pages of the same
  split to a target length counted exactly with assembly/tokens.py, the relevant document at a recorded depth.
- `score`: MMLongBench-Doc's rule-based scoring per answer format, its "Not answerable" F1, and answer extraction
  (rules, or a judge model).
- `run`: asking the model through llm's client and call ledger (a rerun sends nothing, a killed run resumes).
- `report`: scores.json, predictions.jsonl, the accuracy-vs-length plot.

This package sits beside the pipeline: it imports the floor, the adapters (llm, render, tokens, hub) and assemble's
answer instruction, never the pipeline or the CLI.
"""
