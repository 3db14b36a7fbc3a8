"""Shared fixtures: the bundled real PDFs, a copy of the demo recipe, and bad inputs made on the fly."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from recipe_helpers import recipe_file

ROOT = Path(__file__).resolve().parents[1]
PDFS = ROOT / "tests" / "data" / "pdfs"


@pytest.fixture(scope="session")
def pdf_dir() -> Path:
    return PDFS


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write a recipe YAML (demo settings updated by `overrides`) and return its path."""

    def _write(pool_paths: list[str], **overrides: dict) -> Path:
        return recipe_file(tmp_path, pool_paths, **overrides)

    return _write


def make_bad_pdfs(folder: Path) -> dict[str, str]:
    """One file per bad-input kind; returns file name -> expected reject reason."""
    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    src = PDFS / "R-data.pdf"
    data = src.read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 3])
    (folder / "notes.pdf").write_text("this is a text file with a .pdf name\n")
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "zero-pages.pdf").write_bytes(_zero_page_pdf())
    doc = pymupdf.open(src)
    doc.save(folder / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="secret")
    tiny = pymupdf.open()
    for _ in range(40):
        tiny.new_page(width=30, height=30)
    tiny.save(folder / "tiny-pages.pdf")
    broken_xref = data.replace(b"startxref", b"startxreX")
    (folder / "broken-xref.pdf").write_bytes(broken_xref)
    return {
        "truncated.pdf": "corrupt",
        "notes.pdf": "not_pdf",
        "empty.pdf": "not_pdf",
        "zero-pages.pdf": "no_pages",
        "encrypted.pdf": "encrypted",
        "tiny-pages.pdf": "absurd_page_size",
        "broken-xref.pdf": "mupdf_warnings",
    }


def _zero_page_pdf() -> bytes:
    """A well-formed PDF (valid xref) whose page tree is empty."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 3\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<</Size 3/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % xref


@pytest.fixture
def mixed_pool(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A pool folder with three good real PDFs and one file of every bad kind."""
    folder = tmp_path / "pool"
    expected = make_bad_pdfs(folder)
    for name in ("R-data.pdf", "latexbug.pdf", "etoolbox.pdf"):
        shutil.copy(PDFS / name, folder / name)
    return folder, expected


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's demo build (recipes/demo.yaml on the bundled PDFs), made once per test run: under
    pytest-xdist the first worker that needs it builds it in the run's shared temporary folder, under a file
    lock, and the others wait and read it (a `.done` marker says the build finished)."""
    from filelock import FileLock

    from longdocvqa.core.recipe import load_recipe
    from longdocvqa.pipeline import build

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # every worker's basetemp sits in this run's one folder
    out = shared / "demo-build"
    with FileLock(str(shared / "demo-build.lock")):
        if not (shared / "demo-build.done").is_file():
            shutil.rmtree(out, ignore_errors=True)  # a build cut off by an earlier failure starts afresh
            build(load_recipe(ROOT / "recipes" / "demo.yaml"), out, workers=2)
            (shared / "demo-build.done").touch()
    return out


# Under pytest-xdist (scripts/test.sh runs `-n 2 --dist loadfile`) a test module runs on one worker, so its
# module-scoped fixtures (servers, clusters, builds) start once. (`--dist loadgroup` would split a group here:
# pytest-xdist 3.8 under pytest 9 leaves the group out of the node id.)
# Fixtures that run a build or start a server: a test using one must be marked `slow`, so that
# `scripts/test.sh --fast` stays the quick loop (checked at collection, not left to memory).
HEAVY_FIXTURES = {"server", "serve", "demo_build", "built", "reference", "cluster", "base_url", "hub", "sample"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        f"{item.nodeid} uses {sorted(HEAVY_FIXTURES.intersection(item.fixturenames))}"  # type: ignore[attr-defined]
        for item in items
        if item.get_closest_marker("slow") is None and HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    ]
    if unmarked:
        raise pytest.UsageError("mark these @pytest.mark.slow (they build or start a server):\n" + "\n".join(unmarked))
    # longest first, so no long module starts last (scripts/test.sh passes --no-loadscope-reorder to keep this order)
    items.sort(key=lambda item: LONGEST_FIRST.get(item.path.name, len(LONGEST_FIRST)))


@pytest.fixture(scope="module")
def ray_turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One Ray cluster at a time on the machine: a module that starts one waits for the other worker's to end."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    with FileLock(str(shared / "ray.lock")):
        yield


# Modules by their measured time under xdist, longest first (pytest --durations=0, summed per module, at ccdc45b);
# test_ray_faults.py is moved down so that it does not start while test_ray.py's cluster runs.
LONGEST_FIRST = {name: rank for rank, name in enumerate((
    "test_ray.py", "test_demo.py", "test_cli_features.py", "test_train_smoke.py", "test_ray_faults.py",
    "test_hostile_input.py", "test_push.py", "test_run_dir_safety.py", "test_exits.py", "test_robust.py",
    "test_plan.py", "test_build.py", "test_artifacts.py", "test_real_model.py", "test_isolated_reads.py",
    "test_eval.py", "test_train_packing.py", "test_pool_shards.py", "test_package.py", "test_interrupt.py",
))}  # fmt: skip
