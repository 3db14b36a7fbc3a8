"""Imports point one way (docs/design.md §2): every module of the package sits in a layer given by its folder, and
imports only its own layer or those below it, with no cycle between modules nor between folders, function-local,
relative and `TYPE_CHECKING` imports included.

Layers, lowest first (a module is mapped by its top folder, `core.*`; a top-level module by its name):

    floor     core/ (records, recipe, errors, fingerprint, store, safe text, contract, history), the package itself
    domain    documents/ (sources, pool rules, render, text, layout, segment), decontamination/, assembly/, llm/
    services  generate/, hub/ (publish, card, push, load, validate), eval/, audit/ (beside the pipeline: never the
              stages, the runner or the CLI)
    runner    runner/: the per-document loop once, guarded workers, where jobs run (the stages call it)
    stages    stages/: one module per stage, wiring rules to the runner
    wiring    pipeline: the stages in order, the run lock, the manifest
    entry     cli/ (the command line: one module per group of commands), __main__

`check_layers` takes a {module: imported modules} graph and returns every violation (upward import, cycle,
unmapped module), so the rule is tested on the real package and on the real graph with a planted violation.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "longdocvqa"
PACKAGE = "longdocvqa"
ROOT_MODULE = "__init__"  # the package's own __init__.py (`from longdocvqa import __version__`)
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("floor", (ROOT_MODULE, "core.*")),
    ("domain", ("documents.*", "decontamination.*", "assembly.*", "llm.*")),
    ("services", ("generate.*", "hub.*", "eval.*", "audit.*")),
    # The per-document loop and where its jobs run sit under the stages, which call them (docs/design.md §2).
    ("runner", ("runner.*",)),
    ("stages", ("stages.*",)),
    ("wiring", ("pipeline",)),
    ("entry", ("cli.*", "__main__")),
)
# The one module (or folder) allowed to import each outside library.
OWNER = {
    "pymupdf": "documents.render",
    "fitz": "documents.render",
    "openai": "llm",
    "datasets": "hub",
    "huggingface_hub": "hub",
    "ray": "runner.ray",
    "matplotlib": "core.charts",
    "starlette": "audit",  # the audit page's web stack (the `audit` extra)
    "uvicorn": "audit",
}
MAX_MODULE_LINES = 500
MAX_TOP_LEVEL_ENTRIES = 13  # modules and sub-packages of longdocvqa/, dunder files and data folders aside
MIN_STAGE_MODULES = 6


# ---- the graph ----------------------------------------------------------------------------------------------------


def module_name(path: Path, pkg: Path = PKG) -> str:
    """`hub/card.py` -> `hub.card`; `hub/__init__.py` -> `hub`; the package's own `__init__.py` -> `__init__`."""
    parts = list(path.relative_to(pkg).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or ROOT_MODULE


def package_modules(pkg: Path = PKG) -> dict[str, Path]:
    """Every module of the package, subpackages included."""
    return {module_name(path, pkg): path for path in sorted(pkg.rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(name: str, known: Iterable[str]) -> str:
    """A dotted name inside the package (`hub.card.write_card`) -> the longest known module that holds it."""
    known = set(known)
    parts = name.split(".") if name else []
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return ROOT_MODULE


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The absolute module of a `from ... import` (relative ones resolved against the importing module's package)."""
    if node.level == 0:
        return node.module or ""
    package = [] if module == ROOT_MODULE else module.split(".")
    if not _is_package(path):
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([PACKAGE, *base, *([node.module] if node.module else [])])


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks (they never run)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith("TYPE_CHECKING"):
            found.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return found


def imports_of(path: Path, module: str, known: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
    """(modules of the package imported at run time, modules imported for type checking only, outside top-level
    packages) of `path`, anywhere in its body: top level, inside functions, under `if TYPE_CHECKING:`."""
    known = set(known)
    runtime: set[str] = set()
    typing_only: set[str] = set()
    external: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_checking = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path)
            targets = [f"{base}.{alias.name}" for alias in node.names] if base.split(".")[0] == PACKAGE else [base]
        else:
            continue
        for target in targets:
            top, _, rest = target.partition(".")
            if top != PACKAGE:
                external.add(top)
            else:
                (typing_only if id(node) in type_checking else runtime).add(_resolve(rest, known))
    return runtime - {module}, typing_only - {module}, external


def import_graph(pkg: Path = PKG, type_only: bool = False) -> dict[str, set[str]]:
    """{module: modules of the package it imports at run time} (`type_only`: those under `if TYPE_CHECKING:`)."""
    modules = package_modules(pkg)
    return {name: imports_of(path, name, modules)[1 if type_only else 0] for name, path in modules.items()}


def full_import_graph() -> dict[str, set[str]]:
    """{module: modules it imports}, run-time and TYPE_CHECKING imports together (each module parsed twice, not
    once per module of the package: building the typing graph inside the comprehension made this quadratic)."""
    typing_only = import_graph(type_only=True)
    return {module: imported | typing_only[module] for module, imported in import_graph().items()}


# ---- the checker --------------------------------------------------------------------------------------------------


def layer_of(module: str) -> int | None:
    """Index of the module's layer in LAYERS (exact name first, then the longest `pkg.*` prefix), or None."""
    for index, (_, members) in enumerate(LAYERS):
        if module in members:
            return index
    best: tuple[int, int] | None = None
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            prefix = member.removesuffix("*")
            inside = module.startswith(prefix) or module == prefix[:-1]  # `core.*` holds core/__init__.py too
            if member.endswith(".*") and inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(_cycle_path(graph, sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _cycle_path(graph: Mapping[str, Iterable[str]], component: list[str]) -> list[str]:
    """A closed path through the component, from its first module back to it (breadth-first)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if nxt in members and nxt not in previous:
                previous[nxt] = node
                frontier.append(nxt)
    return [*component, start]


def check_layers(
    graph: Mapping[str, Iterable[str]], type_only: Mapping[str, Iterable[str]] | None = None
) -> list[str]:
    """Every violation of the layering: unmapped modules, upward imports and cycles, run-time and `type_only`
    imports alike (a cycle through an `if TYPE_CHECKING:` import is still two modules that need each other)."""
    problems = []
    edges = {module: {*graph.get(module, ()), *(type_only or {}).get(module, ())} for module in graph}
    for module in sorted(graph):
        if layer_of(module) is None:
            names = ", ".join(name for name, _ in LAYERS)
            problems.append(
                f"unmapped module {module}: add it (or its package as `pkg.*`) to one of the layers ({names}) "
                "in LAYERS of tests/test_layering.py"
            )
    for module, imported in sorted(edges.items()):
        own = layer_of(module)
        for target in sorted(imported):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                problems.append(f"upward import: {module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in find_cycles(edges)]
    return problems


# ---- the tests ----------------------------------------------------------------------------------------------------


def test_the_package_follows_the_layers() -> None:
    assert check_layers(import_graph(), import_graph(type_only=True)) == []


def test_a_type_only_import_may_not_point_upward() -> None:
    problems = check_layers(import_graph(), {"core.contract": {"eval.score"}})  # eval.score reaches no floor module
    assert problems == ["upward import: core.contract (floor) imports eval.score (services)"]


def test_a_planted_upward_import_is_reported() -> None:
    graph = import_graph()
    graph["core.records"] = {*graph["core.records"], "cli"}
    problems = check_layers(graph)
    assert "upward import: core.records (floor) imports cli (entry)" in problems
    assert any(p.startswith("import cycle: ") and "core.records" in p for p in problems)  # cli reaches records


def test_a_planted_cycle_is_reported() -> None:
    graph = import_graph()
    dedup, minhash = "decontamination.dedup", "decontamination.minhash"
    assert minhash in graph[dedup]
    graph[minhash] = {*graph[minhash], dedup}  # same layer: only the cycle is wrong
    problems = check_layers(graph)
    assert len(problems) == 1 and problems[0].startswith("import cycle: ")
    cycle = problems[0].removeprefix("import cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1] and {minhash, dedup} <= set(cycle)
    assert all(b in graph[a] for a, b in zip(cycle, cycle[1:], strict=False))  # a real path through the graph


def test_a_planted_type_only_cycle_is_reported() -> None:
    graph = import_graph()
    dedup, minhash = "decontamination.dedup", "decontamination.minhash"
    problems = check_layers(graph, {minhash: {dedup}})  # under `if TYPE_CHECKING:` only
    assert len(problems) == 1 and problems[0].startswith("import cycle: ")
    assert {minhash, dedup} <= set(problems[0].removeprefix("import cycle: ").split(" -> "))


def test_an_unmapped_module_is_reported_with_the_fix() -> None:
    problems = check_layers({**import_graph(), "newthing": {"core.records"}})
    assert problems == [
        "unmapped module newthing: add it (or its package as `pkg.*`) to one of the layers (floor, domain, services, "
        "runner, stages, wiring, entry) in LAYERS of tests/test_layering.py"
    ]


def test_modules_are_mapped_by_their_folder() -> None:
    expected = {
        "core": "floor",
        "core.store": "floor",
        "documents.render": "domain",
        "assembly.tokens": "domain",
        "llm.ledger": "domain",
        "stages.pool": "stages",
        "runner.loop": "runner",
        "runner.local": "runner",
        "generate.openai": "services",
        "hub.card": "services",
        "eval.score": "services",
        "pipeline": "wiring",
        "cli": "entry",
        "cli.build": "entry",
    }
    assert {module: LAYERS[layer_of(module) or 0][0] for module in expected} == expected


def folder_graph(graph: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """{top folder (or top-level module): the other top folders its modules import}."""
    folders: dict[str, set[str]] = {}
    for module, imported in graph.items():
        own = module.split(".")[0]
        folders.setdefault(own, set()).update(t.split(".")[0] for t in imported if t.split(".")[0] != own)
    return folders


def test_folders_import_each_other_without_a_cycle() -> None:
    graph = full_import_graph()
    assert find_cycles(folder_graph(graph)) == []


def test_a_planted_folder_cycle_is_reported() -> None:
    graph = import_graph()
    graph["assembly.tokens"] = {*graph["assembly.tokens"], "documents.text"}  # documents already imports assembly
    assert any({"assembly", "documents"} <= set(cycle) for cycle in find_cycles(folder_graph(graph)))


def test_the_top_level_is_a_short_list_of_folders() -> None:
    entries = [p for p in PKG.iterdir() if not p.name.startswith(("_", ".")) and p.name != "py.typed"]
    code = [p.name for p in entries if p.suffix == ".py" or (p / "__init__.py").exists()]
    assert len(code) <= MAX_TOP_LEVEL_ENTRIES, sorted(code)


def test_function_local_and_relative_imports_are_edges(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "hub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""x"""\n')
    (pkg / "core").mkdir()
    (pkg / "core" / "__init__.py").write_text('"""x"""\n')
    (pkg / "core" / "records.py").write_text('"""x"""\n')
    (pkg / "cli.py").write_text('"""x"""\n')
    (pkg / "hub" / "__init__.py").write_text('"""x"""\n')
    (pkg / "hub" / "card.py").write_text("def f():\n    from .. import cli\n    from . import push\n")
    (pkg / "hub" / "push.py").write_text(
        "def g():\n    from longdocvqa.core.records import X\n    import longdocvqa\n"
    )
    (pkg / "hub" / "load.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..cli import X\n"
    )
    graph = import_graph(pkg)
    assert import_graph(pkg, type_only=True)["hub.load"] == {"cli"} and graph["hub.load"] == set()
    assert graph["hub.card"] == {"cli", "hub.push"}
    assert graph["hub.push"] == {"core.records", ROOT_MODULE}
    assert check_layers(graph) == ["upward import: hub.card (services) imports cli (entry)"]


def test_outside_libraries_have_one_owner() -> None:
    modules = package_modules()
    for name, path in modules.items():
        for top in imports_of(path, name, modules)[2]:
            if top in OWNER:
                owner = OWNER[top]
                assert name == owner or name.startswith(owner + "."), f"{name} imports {top}; only {owner} may"


def test_train_imports_nothing_from_the_package() -> None:
    for path in (ROOT / "train").rglob("*.py"):
        _, _, external = imports_of(path, "train", ())
        assert PACKAGE not in external, path


def test_eval_sits_beside_the_pipeline() -> None:
    """`longdocvqa eval` reuses the floor and the adapters but never the stages, the runner or the CLI."""
    graph = full_import_graph()
    assert {"eval.data", "eval.prompt", "eval.score", "eval.report", "eval.run"} <= graph.keys()
    stages = {name for name, _ in LAYERS}.difference(("floor", "domain", "services"))
    for module, imported in graph.items():
        if module.startswith("eval."):
            bad = {target for target in imported if LAYERS[layer_of(target) or 0][0] in stages}
            assert not bad, f"{module} imports {bad}"


def test_no_module_exceeds_the_line_limit() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in package_modules().items()}
    limits = dict.fromkeys(sizes, MAX_MODULE_LINES)
    assert {name: lines for name, lines in sizes.items() if lines > limits[name]} == {}


def test_stages_hold_one_module_per_stage() -> None:
    stages = [name for name in package_modules() if name.startswith("stages.")]
    assert len(stages) >= MIN_STAGE_MODULES, stages
