"""A killed build leaves nothing running, and Ctrl-C stops it cleanly (exit 130, one line, work kept).

Real builds through the CLI in a subprocess: its main process is killed with SIGKILL during layout (per-document
worker processes) and during generation (client processes talking to the loopback OpenAI-compatible server);
10 s later no process of that build may be alive, and a resumed build gives the same dataset as an uninterrupted
one. Processes of a build are found twice: as descendants of the main process (from /proc, before the kill) and
by their command line, which names the build's unique run directory (forked workers keep it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)

from longdocvqa.core.recipe import load_recipe
from longdocvqa.pipeline import build

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
NAMES = ["R-data.pdf", "etoolbox.pdf", "mathtools.pdf", "R-FAQ.pdf"]
GRACE_S = 10.0
ROOT = Path(__file__).resolve().parents[1]


def _ppids() -> dict[int, int]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # a zombie has exited; only its exit status is left
                table[int(entry.name)] = int(fields[1])
    return table


def _descendants(pid: int) -> set[int]:
    table, found, frontier = _ppids(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive_naming(marker: str) -> set[int]:
    alive = set()
    for pid in _ppids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and pid != os.getpid():
            alive.add(pid)
    return alive


def _start(recipe: Path, out: Path | None, workers: int = 2, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """`longdocvqa build RECIPE [--out OUT]` in a child process (no --out: the default folder, under `cwd`)."""
    where = ["--out", str(out)] if out is not None else []
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # this tree, from any cwd
    cmd = [sys.executable, "-m", "longdocvqa", "build", str(recipe), *where, "--workers", str(workers)]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_sigint_default,
        cwd=cwd, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip


def _sigint_default() -> None:
    """Give the build Ctrl-C as a terminal would. A test run in the background of a non-interactive shell (as CI
    may run it) inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored, so the build never saw it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition, what: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _kill_and_check(proc: subprocess.Popen[bytes], out: Path) -> None:
    """SIGKILL the main process mid-stage; GRACE_S later, nothing of the build may be alive."""
    children = _descendants(proc.pid)
    assert children, "the build had started worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + GRACE_S
    left = (children & set(_ppids())) | _alive_naming(str(out))
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = (children & set(_ppids())) | _alive_naming(str(out))
    assert not left, f"processes of the killed build still alive after {GRACE_S:g} s: {sorted(left)}"
    assert not (out / "manifest.json").exists(), "killed before finishing"


def _dataset(out: Path) -> dict[str, bytes]:
    root = out / "dataset"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _layout_running(out: Path, proc: subprocess.Popen[bytes]) -> bool:
    done = list((out / "stages" / "layout").glob("*/*/*.json"))
    return len(done) >= 1 and bool(_descendants(proc.pid))


@pytest.mark.slow
def test_sigkill_during_layout_leaves_no_process_and_resume_matches(write_recipe, pdf_dir, tmp_path) -> None:
    recipe = write_recipe([str(pdf_dir / n) for n in NAMES], decontaminate={"within_pool": False})
    build(load_recipe(recipe), tmp_path / "reference", workers=2)
    out = tmp_path / "killed-in-layout"
    proc = _start(recipe, out)
    _wait_for(lambda: _layout_running(out, proc), "layout workers")
    _kill_and_check(proc, out)
    manifest = build(load_recipe(recipe), out, workers=2)
    assert manifest["stages"]["layout"]["reused"] >= 1
    assert _dataset(out) == _dataset(tmp_path / "reference") and _dataset(out)


def _generation_recipe(write_recipe, pdf_dir, server):
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 30.0,
                "max_retries": 1, "max_concurrency": 2}  # fmt: skip
    return write_recipe(
        [str(pdf_dir / n) for n in NAMES],
        decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "text", "processes": 2},
    )


@pytest.mark.slow
def test_sigkill_during_generation_leaves_no_process_and_resume_matches(
    server, write_recipe, pdf_dir, tmp_path
) -> None:
    recipe = _generation_recipe(write_recipe, pdf_dir, server)
    build(load_recipe(recipe), tmp_path / "reference", workers=2)
    out = tmp_path / "killed-in-generation"
    server.latency_s = 0.5  # slow replies: the kill lands while client processes wait on the endpoint
    before = server.requests
    proc = _start(recipe, out)
    _wait_for(lambda: server.requests > before + 2 and bool(_descendants(proc.pid)), "generation requests")
    _kill_and_check(proc, out)
    server.latency_s = 0.0
    build(load_recipe(recipe), out, workers=2)
    assert _dataset(out) == _dataset(tmp_path / "reference") and _dataset(out)


@pytest.mark.slow
@pytest.mark.parametrize("given_out", [True, False], ids=["--out", "default folder"])
def test_ctrl_c_exits_130_with_one_line_naming_the_run_folder_and_no_process_left(
    server, write_recipe, pdf_dir, tmp_path, given_out: bool
) -> None:
    recipe = _generation_recipe(write_recipe, pdf_dir, server)
    name, version = load_recipe(recipe).name, load_recipe(recipe).version
    shown = tmp_path / "interrupted" if given_out else Path("runs") / f"{name}-{version}"  # as the user named it
    out = tmp_path / shown  # the default folder is relative to where the build runs
    server.latency_s = 2.0  # slow replies: Ctrl-C lands while client processes wait (layout alone is too quick now)
    proc = _start(recipe, out if given_out else None, cwd=tmp_path)
    _wait_for(lambda: server.requests >= 1 and bool(_descendants(proc.pid)), "generation requests")
    children = _descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    text = stderr.decode()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    bars = ("pool", "plan", "layout", "segment", "generate", "assemble", "publish", "decontaminate", "rejected")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(bars)]
    assert lines == [f"interrupted: finished work is kept in {shown}; run the same command again to resume"], text
    assert not (children & set(_ppids())) and not _alive_naming(str(recipe))  # every process names the recipe
    assert list((out / "stages" / "layout").glob("*/*/*.json")), "finished documents are kept"
