"""A run directory is only ever touched as one, and nothing in it is lost or trusted blindly (issue 29).

Every case drives the real CLI (`python -m longdocvqa build ...` in a child process) on real PDFs: a foreign
`--out` folder is refused and left byte for byte as it was; `--no-resume` interrupted by Ctrl-C keeps the published
dataset; symbolic links planted at `.dataset.partial` and `.dataset.old` are never written through; a full disk
during layout (a real tmpfs filled to the last byte, root only) stops the build without storing a reject, and the
rebuild after space returns publishes every document; stage records cut short or copied onto another document,
a garbage call ledger, a garbage MinHash cache and a tampered dataset are detected, discarded with a warning and
recomputed; a bad `--out` or HOME and a huge memory limit give one line, never a traceback; rejects a too-short
per-document time limit caused are tried again once the recipe is fixed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

NAMES = ["etoolbox.pdf", "mathtools.pdf"]
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`longdocvqa ARGS` in a child process; never a traceback, whatever the exit code."""
    proc = subprocess.run(
        [sys.executable, "-m", "longdocvqa", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def build(recipe: Path, out: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("build", recipe, "--out", out, "--workers", "2", *flags, env=env)


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def tree(root: Path) -> dict[str, Any]:
    """Every entry under `root`: file bytes, link targets, folders."""
    found: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_file():
            found[rel] = path.read_bytes()
        else:
            found[rel] = "dir"
    return found


def dataset(out: Path) -> dict[str, bytes]:
    root = out / "dataset"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def recipe(write_recipe, pdf_dir) -> Path:
    return write_recipe([str(pdf_dir / n) for n in NAMES])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pdf_dir) -> Path:
    """One complete build of NAMES, shared: the dataset every repaired build must reproduce."""
    import yaml

    folder = tmp_path_factory.mktemp("reference")
    data = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    data["pool"].update(paths=[str(pdf_dir / n) for n in NAMES], licences=str(pdf_dir / "SOURCES.tsv"))
    (folder / "recipe.yaml").write_text(yaml.safe_dump(data))
    proc = build(folder / "recipe.yaml", folder / "out")
    assert proc.returncode == 0, proc.stderr
    return folder


# ---------------------------------------------------------------- 1. a foreign folder is refused


def test_a_foreign_out_folder_is_refused_and_left_untouched(recipe, tmp_path) -> None:
    foreign = tmp_path / "mine"
    (foreign / "dataset" / "mydata").mkdir(parents=True)
    (foreign / "dataset" / "mydata" / "important.csv").write_text("id,value\n1,precious\n")
    (foreign / "manifest.json").write_text('{"mine": true}\n')
    (foreign / ".dataset.old").mkdir()
    (foreign / ".dataset.old" / "keep.txt").write_text("keep\n")
    before = tree(foreign)
    for flags in ((), ("--no-resume",)):
        proc = build(recipe, foreign, *flags)
        assert proc.returncode == 2, proc.stderr
        assert len(error_lines(proc)) == 1 and "not a run directory of this tool" in proc.stderr
        assert "--force" in proc.stderr
        assert tree(foreign) == before  # nothing deleted, overwritten or added


@pytest.mark.slow
def test_run_directories_are_marked_and_earlier_ones_still_resume(reference, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference / "out", out)
    marker = json.loads((out / ".longdocvqa-run").read_text())
    assert marker["tool"] == "longdocvqa" and marker["version"]
    (out / ".longdocvqa-run").unlink()  # as an earlier version left it: recipe.lock.yaml and stages/, no marker
    proc = build(reference / "recipe.yaml", out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["layout"]["reused"] == manifest["stages"]["layout"]["seen"] > 0
    assert (out / ".longdocvqa-run").is_file()


def test_out_that_is_a_file_or_under_one_is_one_line(recipe, tmp_path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    for out in (afile, afile / "below"):
        proc = build(recipe, out)
        assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
    assert afile.read_text() == "not a folder\n"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to bind-mount read-only")
def test_out_under_a_read_only_folder_is_one_line(recipe, tmp_path) -> None:
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(frozen), str(frozen)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(frozen)], check=True, capture_output=True)
        proc = build(recipe, frozen / "run")
        assert proc.returncode == 1 and len(error_lines(proc)) == 1, proc.stderr
        assert "Read-only file system" in proc.stderr
    finally:
        subprocess.run(["umount", str(frozen)], check=True)


# ---------------------------------------------------------------- 2. --no-resume swaps at the end


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal's Ctrl-C (see tests/test_interrupt.py)


def _written_since(stages: Path, since_ns: int) -> bool:
    """Whether layout has stored a document in this build (copied records keep their old times)."""
    found = []
    for path in stages.glob("layout/*/*/*.json"):
        try:
            found.append(path.stat().st_mtime_ns >= since_ns)
        except FileNotFoundError:  # removed by --no-resume meanwhile
            continue
    return any(found)


@pytest.mark.slow
def test_no_resume_interrupted_keeps_the_published_dataset(reference, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference / "out", out)
    published = dataset(out)
    cmd = [sys.executable, "-m", "longdocvqa", "build", str(reference / "recipe.yaml"), "--out", str(out),
           "--workers", "1", "--no-resume"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_sigint_default)  # fmt: skip
    deadline, started_ns = time.monotonic() + 300, time.time_ns()
    while not _written_since(out / "stages", started_ns) and proc.poll() is None:
        assert time.monotonic() < deadline, "layout never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    assert dataset(out) == published  # the old dataset, whole, until a new one is complete


# ---------------------------------------------------------------- 3. no write through a planted link


@pytest.mark.slow
def test_links_planted_at_the_staging_folders_are_never_followed(recipe, tmp_path) -> None:
    out, outside_partial, outside_old = tmp_path / "out", tmp_path / "elsewhere-1", tmp_path / "elsewhere-2"
    for folder in (out, outside_partial, outside_old):
        folder.mkdir()
        (folder / "sentinel.txt").write_text("untouched\n")
    (out / "sentinel.txt").unlink()
    (out / ".dataset.partial").symlink_to(outside_partial)
    (out / ".dataset.old").symlink_to(outside_old)
    (out / "dataset").mkdir()  # so that an old dataset is moved to .dataset.old
    (out / "dataset" / "old.txt").write_text("old\n")
    before = {p: tree(p) for p in (outside_partial, outside_old)}
    proc = build(recipe, out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert {p: tree(p) for p in (outside_partial, outside_old)} == before
    assert not (out / "dataset").is_symlink() and list((out / "dataset" / "data" / "sft").glob("*.parquet"))
    assert not (out / ".dataset.partial").exists() and not (out / ".dataset.old").exists()


# ---------------------------------------------------------------- 4. a full disk is transient


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0  # fmt: skip


def _fill(folder: Path) -> Path:
    """Fill `folder`'s file system but one page: room for the stage's small limits.json, none for a document."""
    reserve = folder / "reserve"
    reserve.write_bytes(b"\0" * 4096)
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    reserve.unlink()
    return filler


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a tmpfs")
def test_a_full_disk_during_layout_is_retried_after_space_returns(reference, tmp_path) -> None:
    out = tmp_path / "out"
    layout = out / "stages" / "layout"
    if not _mount_tmpfs(layout, "4m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        filler = _fill(layout)
        proc = build(reference / "recipe.yaml", out, "--force")  # --force: OUT holds the mount point
        assert proc.returncode == 1 and len(error_lines(proc)) == 1, proc.stderr
        assert "No space left on device" in proc.stderr and "nothing was stored" in proc.stderr
        assert "layout: stopped by the environment, not the document" in proc.stderr  # the worker's, read back
        rejects = out / "rejects.jsonl"
        assert not rejects.exists() or "layout" not in rejects.read_text()
        filler.unlink()  # space returns
        proc = build(reference / "recipe.yaml", out)
        assert proc.returncode == 0, proc.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["documents"] == len(NAMES) and not manifest["drops"].get("layout/layout_failed")
        assert dataset(out) == dataset(reference / "out")  # every document published, as an untroubled build
    finally:
        subprocess.run(["umount", "-l", str(layout)], check=False)


# ---------------------------------------------------------------- 5. nothing read back is trusted


def _records(out: Path, stage: str) -> list[Path]:
    return sorted((out / "stages" / stage).glob("*/*/*.json"))


@pytest.mark.slow
def test_tampered_records_caches_ledger_and_dataset_are_repaired(reference, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference / "out", out)
    layout, segments = _records(out, "layout"), _records(out, "segment")
    copied = json.loads(layout[0].read_text())
    del copied["key"]  # as records written before the key was stored: the payload's sha256 gives it away
    layout[1].write_text(json.dumps(copied))
    layout[0].write_text(layout[0].read_text()[:100])  # cut short
    shutil.copyfile(segments[0], segments[1])  # another document's segments under this document's key
    (out / "llm_calls.sqlite").write_bytes(b"garbage, not sqlite\n" * 100)
    signatures = sorted((out / "cache" / "decontaminate" / "signatures").rglob("*.npy"))
    assert signatures, "the reference build cached MinHash signatures"
    signatures[0].write_bytes(b"\x93NUMPY garbage")
    page = sorted((out / "cache" / "pages").rglob("*.jpg"))[0]
    page.write_bytes(page.read_bytes()[:-500])  # a cached page image cut short is rendered again, never republished
    shard = sorted((out / "dataset" / "data" / "sft").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    proc = build(reference / "recipe.yaml", out)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    for what in (
        "does not parse",
        "holds document",
        "belongs to",
        "call ledger",
        "MinHash",
        "differs from what was published",
        "cut short or not an image",
    ):
        assert any(what in line for line in warnings), (what, proc.stderr)
    assert dataset(out) == dataset(reference / "out")
    kept = [p.read_bytes() for p in out.glob("llm_calls.sqlite*") if p.is_file()]
    assert b"garbage, not sqlite\n" * 100 in kept  # read around, or set aside by a generator that opens it: kept


# ---------------------------------------------------------------- 6. one line for a bad environment


@pytest.mark.slow
def test_unwritable_home_is_one_line_or_works(recipe, tmp_path) -> None:
    proc = build(recipe, tmp_path / "out", env={"HOME": "/proc/version"})
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.returncode == 0 or len(error_lines(proc)) == 1


@pytest.mark.slow
def test_rejects_caused_by_a_bad_isolation_limit_are_not_permanent(write_recipe, pdf_dir, tmp_path) -> None:
    """A limit too small rejects every document (timeout); one past what the kernel takes (10**30 MB; d29a bounds
    the field, exit 2) must not crash the workers; once the recipe is fixed the build publishes every document."""
    pdfs, out = [str(pdf_dir / n) for n in NAMES], tmp_path / "out"
    tiny = build(write_recipe(pdfs, isolation={"seconds_per_document": 0.001}), out)
    assert tiny.returncode == 1 and len(error_lines(tiny)) == 1, tiny.stderr
    assert "timeout" in (out / "rejects.jsonl").read_text()
    huge = build(write_recipe(pdfs, isolation={"memory_mb_per_document": 10**30}), out)
    assert huge.returncode in (0, 2), huge.stderr
    assert huge.returncode == 0 or len(error_lines(huge)) == 1, huge.stderr
    proc = build(write_recipe(pdfs, isolation={"memory_mb_per_document": 4096}), out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"] == len(NAMES) and not any("timeout" in k for k in manifest["drops"])
