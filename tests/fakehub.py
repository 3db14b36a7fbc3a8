"""A loopback Hugging Face Hub for tests: the real `huggingface_hub` and `datasets` clients talk HTTP to it.

Nothing installable implements the Hub's HTTP API (docs/research/infra.md §3.1), so this is the project's own,
grown from the prototype in docs/research/infra.md Appendix B. State lives in a folder, so a server restarted on
the same folder sees the same repos (like an interrupted upload meeting the Hub again):

    ROOT/objects/<sha256>                        file contents (LFS objects and regular files alike)
    ROOT/repos/<type>/<namespace>/<name>.json    commits {oid: {files: {path: {sha256, size, lfs}}, parent, message,
                                                 date}}, branches, tags, private

Clients need `HF_ENDPOINT=<FakeHub.url>`, any `HF_TOKEN` and `HF_HUB_DISABLE_XET=1` (with hf_xet installed, LFS
uploads would otherwise go to the Xet CAS protocol). Parquet, PNG and binary files use LFS mode, as on the Hub
(`datasets.push_to_hub` deletes its temporary shards before committing, so it needs LFS). 404s carry
`X-Error-Code` (RepoNotFound / RevisionNotFound / EntryNotFound) because clients branch on it; HEAD answers
carry no body.

Endpoints implemented ({type} is datasets, models or spaces):

    GET  /api/whoami-v2
    POST /api/repos/create                              200, or 409 with "url" in the body (exist_ok)
    POST /api/validate-yaml                             always valid
    GET  /api/{type}/{ns}/{name}[/revision/{rev}]       repo info: sha, siblings, cardData, private
    GET  /api/{type}/{ns}/{name}/refs                   branches and tags
    GET  /api/{type}/{ns}/{name}/commits/{rev}          commit history (newest first)
    GET  /api/{type}/{ns}/{name}/tree/{rev}[/{path}]    ?recursive=; entries carry `lfs` {oid, size} for LFS files
    POST /api/{type}/{ns}/{name}/paths-info/{rev}
    POST /api/{type}/{ns}/{name}/preupload/{rev}        uploadMode (regular | lfs) and the current oid per path
    POST /{type-prefix}{ns}/{name}.git/info/lfs/objects/batch   upload actions only for objects not yet stored
    PUT  /_lfs/{sha256}                                 LFS object upload (sha256 checked)
    POST /api/{type}/{ns}/{name}/commit/{branch}        NDJSON: header, file (base64), lfsFile, deletedFile,
                                                        deletedFolder
    POST /api/{type}/{ns}/{name}/tag/{rev}              409 when the tag exists
    HEAD|GET /{type-prefix}{ns}/{name}/resolve/{rev}/{path}   file bytes (Range supported), X-Repo-Commit, ETag

Auth: a request that carries `Authorization: Bearer T` with T other than `FakeHub.token` gets 401; requests
without the header (anonymous reads, LFS uploads to the signed URL) are served. Failures on demand: each status
in `FakeHub.commit_failures` answers one commit POST (first in, first used, before the commit is applied), e.g.
`[429, 500]`; a 429 carries `Retry-After: FakeHub.retry_after_s`. A commit whose header names a `parentCommit`
other than the branch head gets 412, as on the Hub.

Not implemented: pull requests, branches other than those commits create, repo
deletion, Xet. `FakeHub.lfs_puts` and `FakeHub.requests` let tests see what the clients did.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LFS_SUFFIXES = (".parquet", ".png", ".jpg", ".jpeg", ".webp", ".arrow", ".bin", ".safetensors")
LFS_MIN_BYTES = 10_000_000  # the Hub refuses regular (non-LFS) files above 10 MB
TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}
PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}
_ERROR_CODES = {"repo": "RepoNotFound", "revision": "RevisionNotFound", "entry": "EntryNotFound"}


def git_blob_oid(data: bytes) -> str:
    """Git's object id of a blob: sha1 of "blob <size>\\0" + content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that a repo stores in place of an LFS object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


class HubState:
    """Repos and objects on disk; every method is called under the server's lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "objects").mkdir(parents=True, exist_ok=True)

    def _repo_path(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / f"{repo_id}.json"

    def load(self, repo_type: str, repo_id: str) -> dict[str, Any] | None:
        path = self._repo_path(repo_type, repo_id)
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, repo_type: str, repo_id: str, repo: dict[str, Any]) -> None:
        path = self._repo_path(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def put_object(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "objects" / sha
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha

    def has_object(self, sha256: str) -> bool:
        return (self.root / "objects" / sha256).is_file()

    def read_object(self, sha256: str) -> bytes:
        return (self.root / "objects" / sha256).read_bytes()

    def new_repo(self, private: bool) -> dict[str, Any]:
        attributes = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.png filter=lfs diff=lfs merge=lfs -text\n"
        files = {".gitattributes": {"sha256": self.put_object(attributes), "size": len(attributes), "lfs": False}}
        oid = _commit_oid(files, None, "initial commit")
        commit = {"files": files, "parent": None, "message": "initial commit", "date": _now()}
        return {"commits": {oid: commit}, "branches": {"main": oid}, "tags": {}, "private": private}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _commit_oid(files: dict[str, Any], parent: str | None, message: str) -> str:
    payload = json.dumps([sorted((p, f["sha256"]) for p, f in files.items()), parent, message])
    return hashlib.sha1(payload.encode()).hexdigest()


def resolve(repo: dict[str, Any], rev: str) -> str | None:
    """Commit oid of a branch, tag or commit id."""
    rev = urllib.parse.unquote(rev)
    return repo["branches"].get(rev) or repo["tags"].get(rev) or (rev if rev in repo["commits"] else None)


def file_oid(state: HubState, entry: dict[str, Any]) -> str:
    """The oid a client compares: sha256 for LFS files, git blob sha1 for regular ones."""
    return entry["sha256"] if entry["lfs"] else git_blob_oid(state.read_object(entry["sha256"]))


def tree_entry(state: HubState, path: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A file entry as the Hub's tree / paths-info endpoints return it."""
    if entry["lfs"]:
        pointer = lfs_pointer(entry["sha256"], entry["size"])
        lfs = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}
        return {"type": "file", "oid": git_blob_oid(pointer), "size": entry["size"], "path": path, "lfs": lfs}
    return {"type": "file", "oid": file_oid(state, entry), "size": entry["size"], "path": path}


class Handler(BaseHTTPRequestHandler):
    """Routes one request; `self.server.hub` is the FakeHub."""

    protocol_version = "HTTP/1.1"
    server: Any

    # ---- plumbing ----
    def log_message(self, format: str, *args: Any) -> None:
        self.server.hub.requests.append(f"{self.command} {self.path}")

    @property
    def state(self) -> HubState:
        return self.server.hub.state

    def send(self, code: int, body: Any = b"", ctype: str = "application/json", headers: dict | None = None) -> None:
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code: int, message: str, kind: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if kind:
            headers["X-Error-Code"] = _ERROR_CODES[kind]
        self.send(code, {"error": message}, headers=headers)

    def body(self) -> bytes:
        """The request body, read once (an unread body would corrupt the next request on a kept-alive connection)."""
        if not hasattr(self, "_body"):
            size = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(size) if size else b""
        return self._body

    def repo(self, kind: str, repo_id: str) -> tuple[str, str, dict[str, Any] | None]:
        repo_type, repo_id = TYPES.get(kind, kind), urllib.parse.unquote(repo_id)
        return repo_type, repo_id, self.state.load(repo_type, repo_id)

    def route(self, table: list[tuple[str, Any]], path: str) -> bool:
        auth = self.headers.get("Authorization")
        if auth is not None and auth != f"Bearer {self.server.hub.token}":
            self.error(401, "Invalid credentials in Authorization header")
            return True
        for pattern, handler in table:
            match = re.match(pattern, path)
            if match:
                with self.server.hub.lock:
                    handler(match)
                return True
        return False

    # ---- verbs ----
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        table = [
            (r"^/api/whoami-v2$", self.get_whoami),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)/refs$", self.get_refs),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)/commits/([^/]+)$", self.get_commits),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)/tree/([^/]+)/?(.*)$", self.get_tree),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)(?:/revision/([^/]+))?$", self.get_info),
            (r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.get_file),
        ]
        if not self.route(table, path):
            self.error(404, f"not implemented: GET {path}")

    def do_POST(self) -> None:
        self.__dict__.pop("_body", None)
        self.body()
        path = urllib.parse.urlparse(self.path).path
        table = [
            (r"^/api/repos/create$", self.post_create),
            (r"^/api/validate-yaml$", lambda m: self.send(200, {"errors": [], "warnings": []})),
            (r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch$", self.post_lfs_batch),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)/preupload/([^/]+)$", self.post_preupload),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)/commit/([^/]+)$", self.post_commit),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)/tag/([^/]+)$", self.post_tag),
            (r"^/api/(datasets|models|spaces)/([^/]+/[^/]+)/paths-info/([^/]+)$", self.post_paths_info),
        ]
        if not self.route(table, path):
            self.error(404, f"not implemented: POST {path}")

    def do_PUT(self) -> None:
        self.__dict__.pop("_body", None)
        data = self.body()
        match = re.match(r"^/_lfs/([0-9a-f]{64})$", self.path)
        if not match:
            return self.error(404, f"not implemented: PUT {self.path}")
        if hashlib.sha256(data).hexdigest() != match[1]:
            return self.error(400, "sha256 mismatch")
        with self.server.hub.lock:
            self.state.put_object(data)
            self.server.hub.lfs_puts.append(match[1])
        self.send(200, b"", "text/plain")

    # ---- GET handlers ----
    def get_whoami(self, match: re.Match) -> None:
        self.send(200, {"type": "user", "name": "tester", "orgs": [], "auth": {"accessToken": {"role": "write"}}})

    def get_info(self, match: re.Match) -> None:
        repo_type, repo_id, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        oid = resolve(repo, match[3] or "main")
        if oid is None:
            return self.error(404, "Revision not found", "revision")
        commit = repo["commits"][oid]
        siblings = [{"rfilename": path, "size": f["size"]} for path, f in sorted(commit["files"].items())]
        self.send(
            200,
            {
                "_id": oid[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": oid,
                "lastModified": commit["date"],
                "createdAt": commit["date"],
                "private": repo["private"],
                "disabled": False,
                "gated": False,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "cardData": self._card_data(commit),
                "siblings": siblings,
            },
        )

    def _card_data(self, commit: dict[str, Any]) -> dict[str, Any]:
        entry = commit["files"].get("README.md")
        if entry is None:
            return {}
        import yaml

        match = re.match(rb"^---\n(.*?)\n---", self.state.read_object(entry["sha256"]), re.S)
        try:
            return (yaml.safe_load(match[1]) if match else None) or {}
        except yaml.YAMLError:
            return {}

    def get_refs(self, match: re.Match) -> None:
        _, _, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        branches = [{"name": k, "ref": f"refs/heads/{k}", "targetCommit": v} for k, v in repo["branches"].items()]
        tags = [{"name": k, "ref": f"refs/tags/{k}", "targetCommit": v} for k, v in repo["tags"].items()]
        self.send(200, {"branches": branches, "tags": tags, "converts": []})

    def get_commits(self, match: re.Match) -> None:
        _, _, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        oid, history = resolve(repo, match[3]), []
        if oid is None:
            return self.error(404, "Revision not found", "revision")
        while oid is not None:
            commit = repo["commits"][oid]
            history.append(
                {
                    "id": oid,
                    "title": commit["message"],
                    "message": "",
                    "authors": [{"user": "tester"}],
                    "date": commit["date"],
                }
            )
            oid = commit["parent"]
        self.send(200, history)

    def get_tree(self, match: re.Match) -> None:
        _, _, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        oid = resolve(repo, match[3])
        if oid is None:
            return self.error(404, "Revision not found", "revision")
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        base = urllib.parse.unquote(match[4]).strip("/")
        files = repo["commits"][oid]["files"]
        entries = self._tree(files, base, recursive)
        if base and not entries and base not in files:
            return self.error(404, "Entry not found", "entry")
        self.send(200, sorted(entries.values(), key=lambda e: e["path"]))

    def _tree(self, files: dict[str, Any], base: str, recursive: bool) -> dict[str, dict[str, Any]]:
        prefix, out = (base + "/" if base else ""), {}
        for path, entry in files.items():
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            folders = range(1, len(parts)) if recursive else range(1, min(2, len(parts)))
            for depth in folders:
                folder = prefix + "/".join(parts[:depth])
                out[folder] = {
                    "type": "directory",
                    "oid": hashlib.sha1(folder.encode()).hexdigest(),
                    "size": 0,
                    "path": folder,
                }
            if recursive or len(parts) == 1:
                out[path] = tree_entry(self.state, path, entry)
        return out

    def get_file(self, match: re.Match) -> None:
        _, _, repo = self.repo(match[1] or "models", match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        oid = resolve(repo, match[3])
        if oid is None:
            return self.error(404, "Revision not found", "revision")
        entry = repo["commits"][oid]["files"].get(urllib.parse.unquote(match[4]))
        if entry is None:
            return self.error(404, "Entry not found", "entry")
        data = self.state.read_object(entry["sha256"])
        etag = entry["sha256"] if entry["lfs"] else git_blob_oid(data)
        headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        ranged = self.headers.get("Range")
        if ranged:
            first, _, last = ranged.replace("bytes=", "").partition("-")
            start, end = int(first or 0), min(int(last) if last else len(data) - 1, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self.send(206, data[start : end + 1], "application/octet-stream", headers)
        self.send(200, data, "application/octet-stream", headers)

    # ---- POST handlers ----
    def post_create(self, match: re.Match) -> None:
        request = json.loads(self.body())
        repo_type = request.get("type", "model")
        repo_id = (request.get("organization") or "tester") + "/" + request["name"]
        body = {
            "url": f"http://{self.headers['Host']}/{PREFIX.get(repo_type, '')}{repo_id}",
            "name": repo_id,
            "id": repo_id,
        }
        if self.state.load(repo_type, repo_id) is not None:
            return self.send(
                409,
                {**body, "error": "You already created this repo"},
                headers={"X-Error-Message": "You already created this repo"},
            )
        private = bool(request.get("private")) or request.get("visibility") == "private"
        self.state.save(repo_type, repo_id, self.state.new_repo(private))
        self.send(200, body)

    def post_lfs_batch(self, match: re.Match) -> None:
        request, host = json.loads(self.body()), self.headers["Host"]
        objects = []
        for obj in request["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.state.has_object(obj["oid"]):  # stored objects need no upload: this makes pushes resume
                answer["actions"] = {"upload": {"href": f"http://{host}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(answer)
        self.send(
            200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, "application/vnd.git-lfs+json"
        )

    def post_preupload(self, match: re.Match) -> None:
        _, _, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        oid = resolve(repo, match[3])
        files = repo["commits"][oid]["files"] if oid else {}
        answers = []
        for f in json.loads(self.body()).get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["path"].endswith(LFS_SUFFIXES) or f.get("size", 0) >= LFS_MIN_BYTES or b"\0" in sample
            current = files.get(f["path"])
            answers.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": file_oid(self.state, current) if current else None,
                }
            )
        self.send(200, {"files": answers})

    def post_commit(self, match: re.Match) -> None:
        repo_type, repo_id, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        branch = urllib.parse.unquote(match[3])
        parent = repo["branches"].get(branch)
        if parent is None:
            return self.error(404, "Revision not found", "revision")
        if self.server.hub.commit_failures:
            return self._fail_commit(self.server.hub.commit_failures.pop(0))
        files, message = dict(repo["commits"][parent]["files"]), ""
        for line in self.body().decode().splitlines():
            if not line.strip():
                continue
            op = json.loads(line)
            key, value = op["key"], op["value"]
            if key == "header":
                message = value.get("summary", "")
                if value.get("parentCommit") not in (None, parent):
                    return self.error(412, "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"]
                data = data.encode() if isinstance(data, str) else data
                files[value["path"]] = {"sha256": self.state.put_object(data), "size": len(data), "lfs": False}
            elif key == "lfsFile":
                if not self.state.has_object(value["oid"]):
                    return self.error(400, f"LFS object {value['oid']} missing")
                size = len(self.state.read_object(value["oid"]))
                files[value["path"]] = {"sha256": value["oid"], "size": size, "lfs": True}
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: f for p, f in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
        oid = _commit_oid(files, parent, message)
        repo["commits"][oid] = {"files": files, "parent": parent, "message": message, "date": _now()}
        repo["branches"][branch] = oid
        self.state.save(repo_type, repo_id, repo)
        url = f"http://{self.headers['Host']}/{PREFIX[repo_type]}{repo_id}/commit/{oid}"
        self.send(200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})

    def _fail_commit(self, status: int) -> None:
        if status == 429:
            headers = {"Retry-After": str(self.server.hub.retry_after_s), "X-Error-Message": "Too many requests"}
            return self.send(429, {"error": "Too many requests"}, headers=headers)
        if status == 412:
            return self.error(412, "A commit has happened since. Please refresh and try again.")
        self.error(status, "Internal Error - We're working hard to fix this as soon as possible!")

    def post_tag(self, match: re.Match) -> None:
        repo_type, repo_id, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        request = json.loads(self.body() or b"{}")
        oid = resolve(repo, match[3])
        if oid is None:
            return self.error(404, "Revision not found", "revision")
        if request["tag"] in repo["tags"]:
            return self.error(409, f"Tag {request['tag']} already exists")
        repo["tags"][request["tag"]] = oid
        self.state.save(repo_type, repo_id, repo)
        self.send(200, {})

    def post_paths_info(self, match: re.Match) -> None:
        _, _, repo = self.repo(match[1], match[2])
        if repo is None:
            return self.error(404, "Repository not found", "repo")
        oid = resolve(repo, match[3])
        if oid is None:
            return self.error(404, "Revision not found", "revision")
        raw = self.body()
        is_json = "json" in self.headers.get("Content-Type", "")
        paths = json.loads(raw)["paths"] if is_json else urllib.parse.parse_qs(raw.decode()).get("paths", [])
        files, out = repo["commits"][oid]["files"], []
        for path in (p.strip("/") for p in paths):
            if path in files:
                out.append(tree_entry(self.state, path, files[path]))
            elif any(f.startswith(path + "/") for f in files):
                out.append(
                    {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
                )
        self.send(200, out)


class FakeHub:
    """A loopback Hub server on 127.0.0.1 (a free port), state in `root`; use as a context manager."""

    def __init__(self, root: Path, token: str = "hf_fake_token_for_tests") -> None:
        self.state = HubState(Path(root))
        self.token = token
        self.commit_failures: list[int] = []  # statuses for the next commit POSTs, first in first used
        self.retry_after_s = 1
        self.lock = threading.RLock()
        self.lfs_puts: list[str] = []
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def repo(self, repo_id: str, repo_type: str = "dataset") -> dict[str, Any] | None:
        """A repo's stored state (commits, branches, tags), or None."""
        with self.lock:
            return self.state.load(repo_type, repo_id)

    def client_env(self, hf_home: Path) -> dict[str, str]:
        """Environment variables that point huggingface_hub and datasets at this server, offline otherwise."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }


if __name__ == "__main__":  # manual use: python tests/fakehub.py ROOT
    import sys

    with FakeHub(Path(sys.argv[1] if len(sys.argv) > 1 else "fakehub-data")) as hub:
        print(hub.url, flush=True)
        threading.Event().wait()
