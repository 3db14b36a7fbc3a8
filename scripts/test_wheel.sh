#!/usr/bin/env bash
# The package as an installed user meets it (scripts/test.sh runs this before pytest): build the wheel, install it
# into a fresh virtual environment outside the repository, and there list, show and start a recipe from the bundled
# ones, build that recipe on the test PDFs, validate the result, and check that `build demo` (whose sample PDFs
# ship only with the repository) ends in one line saying so. Catches missing package data and any dependence on
# the working directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PIP=(--quiet --disable-pip-version-check)
.venv/bin/python -m pip wheel "${PIP[@]}" --no-deps --no-build-isolation -w "$WORK/dist" .
PIP+=(--no-compile)
"$(.venv/bin/python -c 'import os, sys; print(os.path.join(sys.base_prefix, "bin", "python3"))')" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install "${PIP[@]}" "$WORK"/dist/longdocvqa-*.whl
"$WORK/venv/bin/python" -m pip install "${PIP[@]}" --no-deps "dashscope==2.0.2"  # the offline Qwen2 vocabulary
cd "$WORK"
longdocvqa=("$WORK/venv/bin/longdocvqa")
"${longdocvqa[@]}" recipe list >list.txt && grep -q '^mmprolong-128k ' list.txt
"${longdocvqa[@]}" recipe show mmprolong-128k >show.txt && grep -q '^name: mmprolong-128k$' show.txt
"${longdocvqa[@]}" recipe new wheel-check --from demo --pool "$ROOT/tests/data/pdfs"
"${longdocvqa[@]}" build wheel-check.yaml --out run --workers 2 >/dev/null
"${longdocvqa[@]}" validate run
set +e
"${longdocvqa[@]}" build demo --out demo-run 2>err.txt
code=$?
set -e
if [ "$code" -ne 2 ] || [ "$(wc -l <err.txt)" -ne 1 ] || ! grep -q 'tests/data/pdfs' err.txt; then
    echo "build demo from the wheel: expected exit 2 and one line naming tests/data/pdfs, got $code:" >&2
    cat err.txt >&2
    exit 1
fi
# the audit page's own files ship in the wheel (package data of longdocvqa.audit)
"$WORK/venv/bin/python" -c "from importlib.resources import files; s = files('longdocvqa.audit') / 'static'; \
assert all((s / n).is_file() for n in ('index.html', 'app.js', 'app.css')), 'audit/static missing from the wheel'"
echo "installed wheel: recipe list/show/new, build, validate and the demo's one-line error all as expected"
