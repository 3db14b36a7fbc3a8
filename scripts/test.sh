#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow end-to-end tests included, plus lint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check longdocvqa cli.py train bench tests
.venv/bin/ruff format --check longdocvqa cli.py train bench tests
.venv/bin/mypy longdocvqa
export TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q "$@"
