"""push, end to end through the Hub protocol, against the project's loopback Hub (tests/fakehub.py).

huggingface_hub and datasets read HF_ENDPOINT, HF_HUB_DISABLE_XET and HF_HOME when they are imported, so every client
runs in a child process started with the FakeHub's environment (this file, run as a script: `python test_push.py
STEPS_JSON`), the way a user's `longdocvqa push` and `load_dataset` would run. The server runs in the test process,
so the tests can see what reached it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakehub import FakeHub
from test_publish import Sample, cached_sample

REPO = "org/name"
TOKEN = "hf_fake_token_for_tests"
INTERRUPTED_EXIT = 4


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return cached_sample(tmp_path_factory)


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    with FakeHub(tmp_path / "hub") as server:
        yield server


def run_client(hub: FakeHub, tmp_path: Path, steps: list[dict[str, Any]]) -> tuple[int, list[Any], str]:
    """Run `steps` in a child process pointed at `hub`; returns (exit code, step results, stdout + stderr)."""
    env = {**os.environ, **hub.client_env(tmp_path / "hf-home"), "HF_TOKEN": TOKEN}
    proc = subprocess.run(
        [sys.executable, __file__, json.dumps(steps)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    results = [json.loads(line[len("RESULT ") :]) for line in lines]
    return proc.returncode, results, proc.stdout + proc.stderr


def local_rows(folder: Path, config: str) -> dict[str, Any]:
    return _rows(folder, config)


def lfs_files(folder: Path) -> set[str]:
    """Files the Hub stores as LFS objects (Parquet and PNG), by sha256."""
    from longdocvqa.core.fingerprint import file_sha256

    return {file_sha256(p) for p in folder.rglob("*") if p.suffix in (".parquet", ".png")}


# ---- tests ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_push_then_load_by_tag_returns_the_same_rows(sample: Sample, hub: FakeHub, tmp_path: Path) -> None:
    code, results, output = run_client(
        hub,
        tmp_path,
        [
            {"op": "push", "out_dir": str(sample.out_dir)},
            {"op": "rows", "target": REPO, "revision": "v0.1.0", "config": "sft"},
            {"op": "rows", "target": REPO, "revision": "v0.1.0", "config": "qa"},
            {"op": "rows", "target": REPO, "revision": "v0.1.0", "config": "documents"},
            {"op": "stream_ids", "target": REPO, "revision": "v0.1.0", "config": "sft"},
            {"op": "validate", "target": REPO, "revision": "v0.1.0"},
        ],
    )
    assert code == 0, output
    pushed, sft, qa, documents, streamed, report = results
    assert pushed["status"] == "pushed" and pushed["tag"] == "v0.1.0"
    for config, got in (("sft", sft), ("qa", qa), ("documents", documents)):
        assert got == local_rows(sample.dataset, config), config
    assert streamed == {split: [r["id"] for r in rows] for split, rows in sft.items()}
    assert report["ok"] is True, report["failures"]
    repo = hub.repo(REPO)
    assert repo["private"] is True and list(repo["tags"]) == ["v0.1.0"]
    [commit] = [c for c in repo["commits"].values() if c["parent"] is not None]  # one commit for the version
    assert commit["message"] == f"sample 0.1.0 (recipe {sample.recipe.fingerprint()})"
    assert repo["tags"]["v0.1.0"] == repo["branches"]["main"]
    assert TOKEN not in output
    assert not any(TOKEN.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.slow
def test_interrupted_push_resumes_without_reuploading(sample: Sample, hub: FakeHub, tmp_path: Path) -> None:
    code, _, output = run_client(hub, tmp_path, [{"op": "push", "out_dir": str(sample.out_dir), "interrupt_after": 4}])
    assert code == INTERRUPTED_EXIT, output
    repo = hub.repo(REPO)
    assert repo is not None and repo["tags"] == {} and len(repo["commits"]) == 1  # nothing committed yet
    first = list(hub.lfs_puts)
    assert 0 < len(first) < len(lfs_files(sample.dataset))
    code, [pushed], output = run_client(hub, tmp_path, [{"op": "push", "out_dir": str(sample.out_dir)}])
    assert code == 0 and pushed["status"] == "pushed", output
    assert sorted(hub.lfs_puts) == sorted(lfs_files(sample.dataset))  # each object uploaded exactly once
    assert not set(first) & set(hub.lfs_puts[len(first) :])
    assert len(hub.repo(REPO)["commits"]) == 2


@pytest.mark.slow
def test_same_version_is_a_noop_and_changed_content_is_refused(sample: Sample, hub: FakeHub, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    (folder).mkdir()
    import shutil

    shutil.copytree(sample.dataset, folder / "dataset")
    (folder / "dataset" / "NOTES.txt").write_text("a file of the first version only\n")
    code, results, output = run_client(
        hub,
        tmp_path,
        [
            {"op": "push", "out_dir": str(folder)},
            {"op": "push", "out_dir": str(folder)},
            {"op": "append", "path": str(folder / "dataset" / "README.md"), "text": "\nAn edited card.\n"},
            {"op": "push", "out_dir": str(folder)},
            {"op": "delete", "path": str(folder / "dataset" / "NOTES.txt")},
            {"op": "push", "out_dir": str(folder), "tag": "v0.1.1", "public": True},
        ],
    )
    assert code == 0, output
    first, again, refused, other_tag = results[0], results[1], results[3], results[5]
    assert first["status"] == "pushed" and again == {**first, "status": "unchanged"}
    assert refused == {"refused": f"{REPO}: tag v0.1.0 already exists with different content; bump the recipe version"}
    assert other_tag["status"] == "pushed" and other_tag["commit"] != first["commit"]
    repo = hub.repo(REPO)
    assert repo["tags"] == {"v0.1.0": first["commit"], "v0.1.1": other_tag["commit"]}
    assert len(repo["commits"]) == 3  # initial, v0.1.0, v0.1.1: the no-op and the refusal made none
    head = repo["commits"][repo["branches"]["main"]]["files"]
    assert "NOTES.txt" not in head and "NOTES.txt" in repo["commits"][first["commit"]]["files"]


@pytest.mark.slow
def test_push_refuses_a_folder_that_fails_validation(sample: Sample, tmp_path: Path) -> None:
    import shutil

    from longdocvqa.hub.push import PushRefused, push_dataset
    from longdocvqa.hub.validate import failure_counts

    folder = tmp_path / "dataset"
    shutil.copytree(sample.dataset, folder)
    text = (folder / "README.md").read_text().replace("num_tokens_total:", "num_tokens_total: 1\n  old_total:")
    (folder / "README.md").write_text(text)
    with pytest.raises(PushRefused, match=r"fails validation \(card_counts: 1\); run `longdocvqa validate"):
        push_dataset(tmp_path, REPO, failures=failure_counts)  # refused before any Hub request: no server is running


def cli_push(
    hub: FakeHub, tmp_path: Path, out_dir: Path, *args: str, token: str = TOKEN
) -> subprocess.CompletedProcess:
    """`python -m longdocvqa push OUT --repo REPO ARGS` pointed at `hub`, as a user runs it."""
    env = {**os.environ, **hub.client_env(tmp_path / "hf-home"), "HF_TOKEN": token}
    command = [sys.executable, "-m", "longdocvqa", "push", str(out_dir), "--repo", REPO, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def version_commits(hub: FakeHub) -> list[str]:
    """Commits other than the repo's initial one."""
    repo = hub.repo(REPO) or {"commits": {}}
    return [oid for oid, commit in repo["commits"].items() if commit["parent"] is not None]


@pytest.mark.slow
@pytest.mark.parametrize("failures", [[429], [500, 500]], ids=["429-retry-after", "500-twice"])
def test_cli_push_retries_a_throttled_or_failing_commit(
    sample: Sample, hub: FakeHub, tmp_path: Path, failures: list[int]
) -> None:
    hub.commit_failures = list(failures)
    proc = cli_push(hub, tmp_path, sample.out_dir, "--tag", "v9", "--public")
    assert proc.returncode == 0, proc.stderr
    assert hub.commit_failures == []  # every injected failure was met, then the commit went through
    commit_posts = [r for r in hub.requests if r.startswith(f"POST /api/datasets/{REPO}/commit/")]
    assert len(commit_posts) == len(failures) + 1
    [commit] = version_commits(hub)  # one version commit, not one per try
    repo = hub.repo(REPO)
    assert repo["tags"] == {"v9": commit} and repo["private"] is False
    assert f"pushed: {REPO}@v9" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("failures", "status"), [([500, 500, 500], 500), ([412], 412)], ids=["persistent-500", "412-conflict"]
)
def test_cli_push_fails_in_one_line_and_publishes_nothing(
    sample: Sample, hub: FakeHub, tmp_path: Path, failures: list[int], status: int
) -> None:
    hub.commit_failures = list(failures)
    proc = cli_push(hub, tmp_path, sample.out_dir, "--tag", "v9")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert hub.commit_failures == []  # 412 is not retried; 500 is, until the attempts run out
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("uploaded ")]
    assert len(lines) == 1 and f"HTTP {status}" in lines[0] and REPO in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and TOKEN not in proc.stdout + proc.stderr
    repo = hub.repo(REPO)
    assert version_commits(hub) == [] and repo["tags"] == {}  # no partial version, no tag
    again = cli_push(hub, tmp_path, sample.out_dir, "--tag", "v9")  # the Hub recovered: a rerun publishes
    assert again.returncode == 0, again.stderr
    assert list(hub.repo(REPO)["tags"]) == ["v9"] and len(version_commits(hub)) == 1


@pytest.mark.slow
def test_cli_push_with_a_wrong_token_fails_in_one_line(sample: Sample, hub: FakeHub, tmp_path: Path) -> None:
    proc = cli_push(hub, tmp_path, sample.out_dir, token="hf_not_the_right_token")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "HTTP 401" in line and "hf_not_the_right_token" not in proc.stdout + proc.stderr
    assert hub.repo(REPO) is None


# ---- the child process ------------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def _rows(target: str | Path, config: str, revision: str | None = None) -> dict[str, Any]:
    """Every row of a config, JSON-comparable: page images and embedded PDFs by sha256 of their bytes."""
    import hashlib

    from datasets import Image, List, Pdf, load_dataset

    kwargs = {"revision": revision} if revision else {}
    data = load_dataset(str(target), config, **kwargs)
    out = {}
    for split in data:
        rows = data[split].cast_column("images", List(Image(decode=False))) if config == "sft" else data[split]
        rows = rows.cast_column("pdf", Pdf(decode=False)) if config == "documents" else rows
        out[split] = [_plain(row, hashlib) for row in rows]
    return out


def _plain(row: dict[str, Any], hashlib: Any) -> dict[str, Any]:
    if "images" in row:
        row = {**row, "images": [hashlib.sha256(image["bytes"]).hexdigest() for image in row["images"]]}
    if row.get("pdf"):
        row = {**row, "pdf": hashlib.sha256(row["pdf"]["bytes"]).hexdigest()}
    return row


def _step(step: dict[str, Any]) -> Any:
    from longdocvqa.hub.push import PushRefused, push_dataset
    from longdocvqa.hub.validate import failure_counts

    op = step["op"]
    if op == "push":
        counter = {"files": 0}

        def progress(path: str) -> None:
            counter["files"] += 1
            if counter["files"] == step.get("interrupt_after"):
                raise Interrupted(path)

        try:
            result = push_dataset(
                step["out_dir"],
                REPO,
                step.get("tag"),
                not step.get("public"),
                failures=failure_counts,
                progress=progress,
            )
        except PushRefused as exc:
            return {"refused": str(exc)}
        return {"status": result.status, "tag": result.tag, "commit": result.commit, "files": result.files}
    if op == "rows":
        return _rows(step["target"], step["config"], step["revision"])
    if op == "stream_ids":
        from datasets import load_dataset

        data = load_dataset(step["target"], step["config"], revision=step["revision"], streaming=True)
        return {split: [row["id"] for row in data[split]] for split in data}
    if op == "validate":
        from longdocvqa.hub.validate import validate_dataset

        return json.loads(validate_dataset(step["target"], step["revision"]).to_json())
    if op == "append":
        with open(step["path"], "a", encoding="utf-8") as handle:
            handle.write(step["text"])
        return None
    if op == "delete":
        os.remove(step["path"])
        return None
    raise ValueError(f"unknown step {op}")


def _main(steps: list[dict[str, Any]]) -> int:
    for step in steps:
        try:
            result = _step(step)
        except Interrupted:
            return INTERRUPTED_EXIT
        print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
