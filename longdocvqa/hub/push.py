"""Publishing a built dataset folder to the Hugging Face Hub: validate, one commit, one tag.

`push_dataset` refuses a folder that fails validation (the caller passes the check as `failures`: validate.py
sits above the hub adapter, so this module does not import it), creates the dataset repo if needed (private by
default), uploads every file of the folder, removes files of an older version from the branch, makes ONE commit
whose message names the recipe version and fingerprint, and tags it (default `v` + version).

Resumable: each file's large-object upload (LFS, or Xet on the real Hub) is finished before the next starts, and
the Hub answers "already stored" for objects it holds, so a push rerun after an interruption uploads only what is
missing and still ends in a single commit (huggingface_hub's `upload_large_folder` resumes too, but commits in
batches under its own message, which would break "one commit per version").

The commit is retried when the Hub answers 429 (after its Retry-After, capped) or 5xx (backing off), at most
COMMIT_ATTEMPTS times; any other refusal (412: the branch moved meanwhile) and the last failure end the push with
one line. The tag is created only after the commit succeeded, so a failed push leaves no new commit and no tag.

Tags are immutable here: pushing a version whose tag exists with other content is refused; the same content is a
no-op. The token comes from `token`, else HF_TOKEN or the standard `huggingface_hub` login; it is never printed,
logged or written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from longdocvqa.core.contract import CARD_KEY
from longdocvqa.core.errors import ExternalServiceError, LongDocVQAError, RecipeError
from longdocvqa.core.fingerprint import file_sha256
from longdocvqa.core.safetext import printable, register_secret
from longdocvqa.hub.card import split_card
from longdocvqa.hub.load import unreachable

if TYPE_CHECKING:
    from huggingface_hub import HfApi

REPO_TYPE = "dataset"
IGNORED_REMOTE = (".gitattributes",)
_GIT_HASH_MAX_BYTES = 10_000_000  # regular (non-LFS) files are at most 10 MB on the Hub
COMMIT_ATTEMPTS = 3
RETRY_STATUSES = (429, 500, 502, 503, 504)
_BACKOFF_BASE_S = 1.0
_RETRY_AFTER_MAX_S = 60.0


class PushRefused(LongDocVQAError):
    """Nothing was pushed: the folder fails validation, or the tag exists with different content."""


@dataclass
class PushResult:
    """What `push_dataset` did."""

    repo: str
    tag: str
    status: Literal["pushed", "unchanged"]
    commit: str
    files: int
    message: str


def dataset_folder(out_dir: str | Path) -> Path:
    """The dataset folder of a build: OUT/dataset/ when OUT is a run directory, else OUT itself."""
    out_dir = Path(out_dir)
    return out_dir / "dataset" if (out_dir / "dataset" / "README.md").is_file() else out_dir


def push_dataset(
    out_dir: str | Path,
    repo: str,
    tag: str | None = None,
    private: bool = True,
    token: str | None = None,
    *,
    failures: Callable[[Path], Mapping[str, int]],
    progress: Callable[[str], None] | None = None,
) -> PushResult:
    """Validate, upload (resumable) as one commit, and tag `repo`; `progress(path)` is called after each file.

    `failures(folder)` returns the failed checks by kind (validate.failure_counts); any failure refuses the push.
    """
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo)
    register_secret(token or os.environ.get("HF_TOKEN"))  # a Hub error that echoes the token shows it masked
    folder = dataset_folder(out_dir)
    meta = _validated_meta(folder, failures)
    tag = tag or f"v{meta['version']}"
    message = f"{meta.get('name', 'dataset')} {meta['version']} (recipe {meta['recipe_fingerprint']})"
    try:
        return _push(folder, repo, tag, private, token, message, progress)
    except HfHubHTTPError as exc:
        status = _status(exc)
        hint = "; the branch moved during the push, rerun it" if status == 412 else ""
        raise ExternalServiceError(f"{repo}: Hub request failed (HTTP {status}): {_first_line(exc)}{hint}") from None
    except Exception as exc:  # a refused, reset or timed-out connection is one line, not a traceback
        error = unreachable(repo, exc)
        if error is None:
            raise
        raise error from None


def check_repo_id(repo: str) -> None:
    """RecipeError (exit 2) unless `repo` is a Hub repo id (`NAME` or `ORG/NAME`: letters, digits, `-_.`; no `..`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise RecipeError(
            f"--repo '{printable(repo)}': not a Hub repo id; write ORG/NAME (letters, digits, -_.)"
        ) from None


def _validated_meta(folder: Path, failures: Callable[[Path], Mapping[str, int]]) -> dict[str, Any]:
    counts = failures(folder)
    if counts:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in counts.items())
        raise PushRefused(f"{folder}: fails validation ({kinds}); run `longdocvqa validate {folder}` for details")
    header, _ = split_card((folder / "README.md").read_text(encoding="utf-8"))
    return dict(header[CARD_KEY])


def _push(
    folder: Path,
    repo: str,
    tag: str,
    private: bool,
    token: str | None,
    message: str,
    progress: Callable[[str], None] | None,
) -> PushResult:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    local = local_files(folder)
    api.create_repo(repo, repo_type=REPO_TYPE, private=private, exist_ok=True)
    tagged = tag_commit(api, repo, tag)
    if tagged is not None:
        if same_content(folder, local, remote_files(api, repo, tagged)):
            return PushResult(repo, tag, "unchanged", tagged, len(local), message)
        raise PushRefused(f"{repo}: tag {tag} already exists with different content; bump the recipe version")
    commit = upload(api, repo, folder, local, message, progress)
    api.create_tag(repo, tag=tag, revision=commit, tag_message=message, repo_type=REPO_TYPE)
    return PushResult(repo, tag, "pushed", commit, len(local), message)


def local_files(folder: Path) -> list[str]:
    """Repo paths of every file in the folder (POSIX, sorted); hidden files and folders are left out."""
    paths = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return sorted(p.as_posix() for p in paths if not any(part.startswith(".") for part in p.parts))


def tag_commit(api: HfApi, repo: str, tag: str) -> str | None:
    """The commit a tag points at, or None when the tag does not exist."""
    refs = api.list_repo_refs(repo, repo_type=REPO_TYPE)
    return next((ref.target_commit for ref in refs.tags if ref.name == tag), None)


def remote_files(api: Any, repo: str, revision: str) -> dict[str, Any]:
    """path -> RepoFile of every file at `revision`."""
    entries = api.list_repo_tree(repo, revision=revision, recursive=True, repo_type=REPO_TYPE)
    return {e.path: e for e in entries if hasattr(e, "blob_id") and e.path not in IGNORED_REMOTE}


def same_content(folder: Path, local: list[str], remote: dict[str, Any]) -> bool:
    """True when the remote files are exactly the local ones (LFS by sha256, regular files by git blob id)."""
    from huggingface_hub.utils.sha import git_hash

    if set(local) != set(remote):
        return False
    for path in local:
        entry, file = remote[path], folder / path
        if entry.size != file.stat().st_size:
            return False
        if entry.lfs is not None and entry.lfs.sha256 != file_sha256(file):
            return False
        if entry.lfs is None and (entry.size > _GIT_HASH_MAX_BYTES or entry.blob_id != git_hash(file.read_bytes())):
            return False
    return True


def upload(
    api: HfApi, repo: str, folder: Path, local: list[str], message: str, progress: Callable[[str], None] | None
) -> str:
    """Upload every file's content (skipping what the Hub holds), then make one commit; returns its oid."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    additions = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(folder / path)) for path in local]
    for addition in additions:
        api.preupload_lfs_files(repo, additions=[addition], repo_type=REPO_TYPE, free_memory=False)
        if progress is not None:
            progress(addition.path_in_repo)
    stale = sorted(set(remote_files(api, repo, "main")) - set(local))
    deletions = [CommitOperationDelete(path_in_repo=path) for path in stale]
    return commit_with_retry(api, repo, [*additions, *deletions], message)


def commit_with_retry(api: HfApi, repo: str, operations: list[Any], message: str) -> str:
    """`create_commit`, retried on 429 / 5xx (module docstring); returns the commit oid."""
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            info = api.create_commit(repo, operations=operations, commit_message=message, repo_type=REPO_TYPE)
            return str(info.oid)
        except HfHubHTTPError as exc:
            if attempt == COMMIT_ATTEMPTS or _status(exc) not in RETRY_STATUSES:
                raise
            time.sleep(_retry_wait_s(exc, attempt))
    raise AssertionError("unreachable")


def _status(exc: Any) -> int | str:
    response = getattr(exc, "response", None)
    return response.status_code if response is not None else "?"


def _retry_wait_s(exc: Any, attempt: int) -> float:
    """Seconds before the next try: the server's Retry-After (seconds form) when given, else 1, 2, 4 ... s."""
    header = exc.response.headers.get("Retry-After", "") if exc.response is not None else ""
    if header.strip().isdigit():
        return min(float(header), _RETRY_AFTER_MAX_S)
    return _BACKOFF_BASE_S * 2 ** (attempt - 1)


def _first_line(exc: Exception) -> str:
    server = getattr(exc, "server_message", None)
    lines = [line for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
    return (f"{lines[0]} {server}" if server else lines[0])[:300]
