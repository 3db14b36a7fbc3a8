"""Benchmark: model requests per kept example for the demo recipe on the 67 shared PDFs, at several budgets.

    .venv/bin/python bench/plan_requests.py [--pdfs ../shared/pdfs] [--budgets 300000 3000000]

The demo recipe (recipes/demo.yaml) with its generator pointed at the scripted loopback OpenAI-compatible server
(tests/openai_server.py, text input, no latency) and `assemble.budget_tokens` set to each budget; each budget
builds into its own temporary run directory. It prints, per budget, the HTTP requests the server received, the
examples kept, the documents the plan used and the generate-everything path's calls for the same pool.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from openai_server import ScriptedOpenAI  # noqa: E402

from longdocvqa.core.recipe import load_recipe  # noqa: E402
from longdocvqa.pipeline import build  # noqa: E402


def recipe_file(folder: Path, pdfs: Path, base_url: str, budget: int) -> Path:
    data = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    data["pool"]["paths"] = [str(pdfs)]
    data["pool"]["licences"] = str(ROOT / "tests" / "data" / "pdfs" / "SOURCES.tsv")
    endpoint = {"base_url": base_url, "model": "scripted", "api_key_env": None}
    data["generate"].update(generator={"kind": "openai", "endpoint": endpoint}, input_mode="text")
    data["assemble"]["budget_tokens"] = budget
    path = folder / f"recipe-{budget}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=Path, default=ROOT.parent / "shared" / "pdfs")
    parser.add_argument("--budgets", type=int, nargs="+", default=[300_000, 3_000_000])
    args = parser.parse_args()
    server = ScriptedOpenAI().start()
    try:
        with tempfile.TemporaryDirectory(prefix="plan-requests-") as tmp:
            for budget in args.budgets:
                before = server.requests
                path = recipe_file(Path(tmp), args.pdfs, server.base_url, budget)
                manifest = build(load_recipe(path), Path(tmp) / f"out-{budget}", workers=2)
                plan = manifest["stages"]["plan"]
                print(f"budget {budget:>10,}: {server.requests - before:>3} requests, {manifest['examples']:>3} "
                      f"examples kept, plan uses {plan['kept']} of {plan['seen']} documents "
                      f"({plan['units']} units); generate-everything: {plan['generate_everything_calls']} calls",
                      flush=True)  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
