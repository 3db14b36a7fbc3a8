"""Imports point one way (DESIGN.md §2): adapters own their library; stages do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "longdocvqa"
# The one module (or package) allowed to import each external library.
OWNER = {"pymupdf": "render", "fitz": "render", "openai": "llm", "datasets": "hub", "huggingface_hub": "hub"}
PURE = {
    "layout",
    "segment",
    "dedup",
    "assemble",
    "tokens",
    "records",
    "recipe",
    "errors",
    "fingerprint",
    "store",
    "chart",
    "text",
}
PURE_PACKAGES = ("stages",)  # every module in these packages is pure


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _modules() -> dict[str, Path]:
    mods = {p.stem: p for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__")}
    mods.update({f"hub.{p.stem}": p for p in (PKG / "hub").glob("*.py")})
    mods.update({f"eval.{p.stem}": p for p in (PKG / "eval").glob("*.py")})
    for package in PURE_PACKAGES:
        mods.update({f"{package}.{p.stem}": p for p in (PKG / package).glob("*.py")})
    return mods


def test_external_libraries_have_one_owner() -> None:
    for name, path in _modules().items():
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top in OWNER:
                assert name.split(".")[0] == OWNER[top], f"{name} imports {top}; only {OWNER[top]} may"


def test_pure_stages_import_no_adapter_or_pipeline() -> None:
    forbidden = {"longdocvqa.render", "longdocvqa.llm", "longdocvqa.pipeline", "longdocvqa.cli", "longdocvqa.hub"}
    for name, path in _modules().items():
        if name in PURE or name.split(".")[0] in PURE_PACKAGES:
            bad = {m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden)}
            assert not bad, f"{name} imports {bad}"


def test_stage_packages_are_mapped() -> None:
    assert "stages.plan" in _modules()


def test_train_imports_nothing_from_the_package() -> None:
    for path in (ROOT / "train").rglob("*.py"):
        assert not any(m.split(".")[0] == "longdocvqa" for m in _imports(path)), path


def test_eval_sits_beside_the_pipeline() -> None:
    """`longdocvqa eval` reuses the floor and the adapters but never the build pipeline or the CLI."""
    forbidden = ("longdocvqa.pipeline", "longdocvqa.cli")
    modules = {name: path for name, path in _modules().items() if name.startswith("eval.")}
    assert {"eval.data", "eval.prompt", "eval.score", "eval.report", "eval.run"} <= modules.keys()
    for name, path in modules.items():
        bad = {m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden)}
        assert not bad, f"{name} imports {bad}"
