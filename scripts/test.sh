#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow end-to-end tests included, plus lint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check longdocvqa cli.py train bench tests
.venv/bin/ruff format --check longdocvqa cli.py train bench tests
.venv/bin/mypy longdocvqa
# the hostile PDF corpus of tests/test_robust.py (PyPI sdists + Debian packages; once, then a no-op)
.venv/bin/python scripts/fetch_hostile_corpus.py
export TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q "$@"
