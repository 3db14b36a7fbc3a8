"""The repository is self-contained and its docs are true.

Citations take the form `docs/design.md §3` or `docs/research/infra.md §4`; a citation of a file outside the
repository (the bare design file or research folder the project started from) fails here with the fix.

The docs-truth check (`doc_errors`) reads README.md and every docs/*.md and reports each name that does not exist:
- a module path: `longdocvqa/x/y.py`, a folder `longdocvqa/x/`, a package-relative `stages/plan.py` (first folder
  a sub-package), a bare `loop.py` (some file of the repository has that name), or a dotted `longdocvqa.x.y`
  (optionally ending in one name defined in that module), read from the files, not imported; a repository path
  under docs/, tests/, bench/, train/, scripts/ or recipes/ (globs aside);
- a CLI option: in code (inline or fenced), `longdocvqa COMMAND ... --option` must name a command of the Typer app
  and an option of that command (`typer.main.get_command`); a code span that is only options (`--dry-run`) must
  name options of some command (or of a bench/ or scripts/ argparse script);
- a recipe key: a dotted name in code whose first part is a recipe section or nested setting (`plan.overdraw`,
  `generate.verify.enabled`, `endpoint.base_url`) must resolve through the Pydantic `Recipe` model's fields.
"""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from functools import cache
from pathlib import Path

import pydantic
import typer

from longdocvqa.cli import app
from longdocvqa.core.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("longdocvqa", "train", "bench", "scripts", "tests", "recipes", "README.md", "cli.py")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".json"}
CITED = re.compile(r"docs/[A-Za-z0-9_./-]*[A-Za-z0-9_]\.(?:md|png|json|yaml)")
# a design or research file cited without its docs/ folder
OUTSIDE = re.compile(
    r"(?<![\w/])(?:" + "DESIGN" + r"\.md|research/\w+\.md|(?:paper|infra|training|anchors|aesthetics)\.md)"
)


def _files() -> list[Path]:
    out = []
    for name in SCANNED:
        path = ROOT / name
        found = [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in SUFFIXES]
        out += [p for p in found if "__pycache__" not in p.parts and p != Path(__file__).resolve()]
    return sorted(out)


def test_every_cited_doc_exists() -> None:
    cited = {
        (path.relative_to(ROOT).as_posix(), match)
        for path in _files()
        for match in CITED.findall(path.read_text(encoding="utf-8", errors="replace"))
    }
    assert {match for _, match in cited} >= {"docs/design.md", "docs/research/infra.md"}  # the scan finds them
    missing = sorted((where, match) for where, match in cited if not (ROOT / match).exists())
    assert missing == [], f"cited but not in the repository (add the file under docs/ or drop the citation): {missing}"


def test_no_citation_points_outside_the_repository() -> None:
    outside = [
        f"{path.relative_to(ROOT)}: {match}"
        for path in _files()
        for match in OUTSIDE.findall(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert outside == [], f"cite the copies under docs/ (docs/design.md, docs/research/...): {outside}"


def test_top_level_cli_is_an_entry_point(tmp_path: Path) -> None:
    run = [sys.executable, str(ROOT / "cli.py")]
    help_text = subprocess.run([*run, "--help"], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert all(command in help_text for command in ("build", "validate", "push", "inspect", "eval"))
    out = tmp_path / "run"
    plan = subprocess.run(
        [*run, "build", str(ROOT / "recipes" / "demo.yaml"), "--out", str(out), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert plan.returncode == 0, plan.stderr
    assert "pool documents" in plan.stdout and not out.exists()  # the plan is printed, nothing is built


# ---- docs truth: module paths, CLI options and recipe keys named in README.md and docs/*.md ------------------------

PKG = ROOT / "longdocvqa"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
PKG_PATH = re.compile(r"(?<![\w./-])longdocvqa/((?:\w+/)*)(\w+\.py)?")
DOTTED = re.compile(r"(?<![\w./-])longdocvqa((?:\.\w+)+)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|tests|bench|train|scripts|recipes)/[\w./*{}-]*\w)")
COMMAND = re.compile(r"(?<![\w.-])longdocvqa[ \t]+([a-z][\w-]*)([^\n]*)")
COMMAND_END = re.compile(r" #|&&|;| \| |\)")
OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*(?![\w*-])")  # `--judge-*` is a family, not an option
KEY = re.compile(r"(?<![\w./$-])([a-z_]+(?:\.[a-z_0-9]+)+)(?![\w(/-])")
BARE_MODULE = re.compile(r"(?<![\w./-])(\w+\.py)\b")
EXTERNAL_SCRIPTS = {"eval_score.py"}  # MMLongBench-Doc's scorer, which eval/score.py follows
FILE_EXTS = {"py", "md", "json", "jsonl", "yaml", "yml", "png", "sqlite", "lock", "tar", "txt", "parquet", "sh", "gz"}


def _code(text: str) -> list[str]:
    """Fenced blocks (shell continuations joined) and the inline code spans outside them."""
    blocks = [block.replace("\\\n", " ") for block in FENCE.findall(text)]
    return blocks + SPAN.findall(FENCE.sub("", text))


def _defines(module: Path, name: str) -> bool:
    source = module.read_text(encoding="utf-8")
    return (
        re.search(rf"^(?:async def|def|class)\s+{name}\b|^{name}\s*[:=]|[\"\']{name}[\"\']", source, re.M) is not None
    )


def _module_exists(parts: list[str]) -> bool:
    """`["runner", "loop"]` -> longdocvqa/runner/loop.py; a last part may be a name that module defines."""
    path = PKG
    for i, part in enumerate(parts):
        if (path / part).is_dir():
            path = path / part
        elif (path / f"{part}.py").is_file():
            rest = parts[i + 1 :]
            return not rest or (len(rest) == 1 and _defines(path / f"{part}.py", rest[0]))
        else:
            init = path / "__init__.py"
            return i == len(parts) - 1 and path != PKG and init.is_file() and _defines(init, part)
    return True


def _path_errors(text: str) -> list[str]:
    errors = [
        f"module path longdocvqa/{d}{f or ''}" for d, f in PKG_PATH.findall(text) if not (PKG / d / (f or "")).exists()
    ]
    subpackages = "|".join(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())
    relative = re.compile(rf"(?<![\w./-])((?:{subpackages})/(?:\w+/)*\w+\.py)")
    errors += [f"module path {p}" for p in relative.findall(text) if not (PKG / p).is_file()]
    errors += [f"module longdocvqa{d}" for d in DOTTED.findall(text) if not _module_exists(d.split(".")[1:])]
    repo = [p for p in REPO_PATH.findall(text) if not re.search(r"[*{}]|/X", p)]
    known = {p.name for p in ROOT.rglob("*.py") if ".venv" not in p.parts} | EXTERNAL_SCRIPTS
    errors += [f"module {name}" for name in BARE_MODULE.findall(text) if name not in known]
    return errors + [f"file {p}" for p in repo if not (ROOT / p).exists()]


@cache
def cli_options() -> dict[str, frozenset[str]]:
    """Every command of the Typer app and its options (`--help` included)."""
    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    return {
        name: frozenset(
            {"--help", *(o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--"))}
        )
        for name, cmd in commands.items()
    }


@cache
def script_options() -> frozenset[str]:
    """The options of the bench/ and scripts/ argparse scripts (docs quote them with their figures) and the flags
    the scripts/*.sh scripts compare an argument with (`[ "${1:-}" = "--fast" ]`)."""
    sources = [p.read_text(encoding="utf-8") for folder in ("bench", "scripts") for p in (ROOT / folder).glob("*.py")]
    shells = [p.read_text(encoding="utf-8") for p in (ROOT / "scripts").glob("*.sh")]
    argparse = {o for s in sources for o in re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", s)}
    return frozenset(argparse | {o for s in shells for o in re.findall(r'= "(--[\w-]+)" \]', s)})


def _option_errors(code: list[str]) -> list[str]:
    options, errors = cli_options(), []
    for snippet in code:
        for command, rest in COMMAND.findall(snippet):
            if command not in options:
                errors.append(f"command `longdocvqa {command}`")
                continue
            rest = COMMAND_END.split(rest)[0]
            errors += [
                f"option {o} of `longdocvqa {command}`" for o in OPTION.findall(rest) if o not in options[command]
            ]
    every = frozenset().union(*options.values(), script_options())
    alone = [s for s in code if s.startswith("--")]
    return errors + [f"option {o}" for s in alone for o in OPTION.findall(s) if o not in every]


def _models(annotation: object) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


@cache
def recipe_roots() -> dict[str, tuple[type[pydantic.BaseModel], ...]]:
    """Names a dotted recipe key may start with: the sections, and every setting that is itself a model
    (`endpoint`, `verify`, `short_data` ...), each with the models it can be."""
    roots: dict[str, tuple[type[pydantic.BaseModel], ...]] = {}
    todo: list[type[pydantic.BaseModel]] = [Recipe]
    while todo:
        model = todo.pop()
        for name, field in model.model_fields.items():
            found = [m for m in _models(field.annotation) if m not in roots.get(name, ())]
            roots[name] = (*roots.get(name, ()), *found)
            todo += found
    return {name: models for name, models in roots.items() if models}


def _resolves(models: tuple[type[pydantic.BaseModel], ...], parts: list[str]) -> bool:
    if not parts:
        return True
    for model in models:
        field = model.model_fields.get(parts[0])
        if field is None:
            continue
        if _resolves(tuple(_models(field.annotation)), parts[1:]) or typing.get_origin(field.annotation) is dict:
            return True
    return False


def _key_errors(code: list[str]) -> list[str]:
    roots, errors = recipe_roots(), []
    for key in (k for snippet in code for k in KEY.findall(snippet)):
        first, *rest = key.split(".")
        if first in roots and rest[-1] not in FILE_EXTS and not _resolves(roots[first], rest):
            errors.append(f"recipe key {key}")
    return errors


def doc_errors(text: str) -> list[str]:
    """Every module path, CLI option and recipe key `text` names that does not exist (empty when all do)."""
    code = _code(text)
    return _path_errors(text) + _option_errors(code) + _key_errors(code)


def test_docs_name_only_modules_options_and_recipe_keys_that_exist() -> None:
    assert len(DOCS) > 5 and "generate" in recipe_roots() and "--dry-run" in cli_options()["build"]
    errors = {doc.relative_to(ROOT).as_posix(): doc_errors(doc.read_text(encoding="utf-8")) for doc in DOCS}
    assert {doc: found for doc, found in errors.items() if found} == {}


def test_docs_truth_check_catches_planted_names() -> None:
    real = (
        "The loop is longdocvqa/runner/loop.py (`longdocvqa.runner.loop`), the plan `stages/plan.py`; run\n"
        "`longdocvqa build recipes/demo.yaml --out runs/x --dry-run` or `longdocvqa eval D --judge-model M`;\n"
        "set `plan.overdraw`, `generate.verify.enabled` and `endpoint.base_url`; keep `--no-resume` for later.\n"
        "```bash\nlongdocvqa push runs/x \\\n    --repo ORG/NAME --tag v1.0.0  # private\n```\n"
    )
    assert doc_errors(real) == []
    planted = (
        "See longdocvqa/runner/ghost.py and `longdocvqa.core.ghost`; `stages/render.py` renders; runner.py loops.\n"
        "```bash\nlongdocvqa build recipes/demo.yaml \\\n    --turbo\n```\n"
        "`longdocvqa teleport` and `--warp-speed` exist; set `plan.overspend` or `generate.verify.endpoint.colour`.\n"
    )
    assert doc_errors(planted) == [
        "module path longdocvqa/runner/ghost.py",
        "module path stages/render.py",
        "module longdocvqa.core.ghost",
        "module runner.py",
        "option --turbo of `longdocvqa build`",
        "command `longdocvqa teleport`",
        "option --warp-speed",
        "recipe key plan.overspend",
        "recipe key generate.verify.endpoint.colour",
    ]
