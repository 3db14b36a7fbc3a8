#!/usr/bin/env bash
# Create .venv and install what the demo build needs: the base package, no torch, no model (README command 1).
# The test setup (scripts/test.sh) adds the train, fast and test extras on top of this.
# Safe to rerun: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-compile)  # .pyc on first import only
"${PIP[@]}" --upgrade pip
"${PIP[@]}" -e .
# Data-only wheel, installed without its (heavy, unused) dependencies: dashscope ships qwen.tiktoken, the Qwen2/2.5
# BPE vocabulary, for exact offline token counts (Apache-2.0; converted with `tokenizers` alone, see tokens.py).
# Without it a build downloads the model's tokenizer.json from the Hub (or reads it from the Hugging Face cache).
"${PIP[@]}" --no-deps "dashscope==2.0.2"
echo "longdocvqa installed in .venv ($(.venv/bin/python -c 'import longdocvqa; print(longdocvqa.__version__)'))"
