"""Pools read from tar shards (`SHARD.tar/MEMBER`) and fsspec URLs give the same documents as a folder."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe import PoolConfig, load_recipe
from longdocvqa.documents import pool, render, sources
from longdocvqa.pipeline import build


def _shard(path: Path, members: dict[str, bytes | Path]) -> Path:
    """An uncompressed tar whose members are the given bytes or files, in the given order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            if isinstance(data, Path):
                tar.add(data, arcname=name)
            else:
                _add_bytes(tar, name, data)
    return path


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _two_shards(pdf_dir: Path, folder: Path) -> list[Path]:
    """The bundled PDFs split over two shards, the second under a sub-folder (webdataset keys)."""
    pdfs = sorted(pdf_dir.glob("*.pdf"))
    folder.mkdir(parents=True, exist_ok=True)
    first = _shard(folder / "pool-000.tar", {p.name: p for p in pdfs[::2]})
    second = _shard(folder / "pool-001.tar", {f"docs/{p.name}": p for p in pdfs[1::2]})
    return [first, second]


def _parquet_sha(out: Path, config: str) -> str:
    (path,) = (out / "dataset" / "data" / config).glob("*.parquet")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_two_shard_build_gives_the_folder_builds_sft_parquet_and_resumes(write_recipe, pdf_dir, tmp_path):
    folder_out, shard_out = tmp_path / "folder", tmp_path / "shards"
    build(load_recipe(write_recipe([str(pdf_dir)])), folder_out, workers=2)
    shards = _two_shards(pdf_dir, tmp_path / "tars")
    recipe = load_recipe(write_recipe([str(tmp_path / "tars")]))
    first = build(recipe, shard_out, workers=2)
    for config in ("sft", "qa"):
        assert _parquet_sha(shard_out, config) == _parquet_sha(folder_out, config), config
    documents = pq.read_table(next((shard_out / "dataset" / "data" / "documents").glob("*.parquet"))).to_pylist()
    assert documents and all(Path(d["file_name"]).suffix == ".pdf" for d in documents)
    paths = {r["item"] for r in _rejects(shard_out) if r["stage"] == "pool"}  # out-of-range documents, by member
    assert f"{shards[1]}/docs/R-FAQ.pdf" in paths or f"{shards[0]}/R-FAQ.pdf" in paths
    again = build(recipe, shard_out, workers=2)
    assert again["stages"]["pool"]["reused"] == again["stages"]["pool"]["seen"] == first["stages"]["pool"]["seen"]
    assert _parquet_sha(shard_out, "sft") == _parquet_sha(folder_out, "sft")


@pytest.mark.slow
def test_a_loopback_server_build_from_shards_sends_the_same_requests_as_from_a_folder(
    server, write_recipe, pdf_dir, tmp_path
):
    """Page images rendered from shard members are the folder's bytes: same requests, same answers, same sft."""
    names = ["R-data.pdf", "etoolbox.pdf"]
    shards = [_shard(tmp_path / f"s{i}.tar", {f"{i}/{n}": pdf_dir / n}) for i, n in enumerate(names)]
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 5.0}
    overrides = {
        "decontaminate": {"within_pool": False},
        "generate": {"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "images+text"},
    }
    build(load_recipe(write_recipe([str(pdf_dir / n) for n in names], **overrides)), tmp_path / "folder", workers=2)
    folder_bodies = list(server.bodies)
    build(load_recipe(write_recipe([str(s) for s in shards], **overrides)), tmp_path / "shards", workers=2)
    shard_bodies = server.bodies[len(folder_bodies) :]
    assert folder_bodies and sorted(map(json.dumps, shard_bodies)) == sorted(map(json.dumps, folder_bodies))
    assert _parquet_sha(tmp_path / "shards", "sft") == _parquet_sha(tmp_path / "folder", "sft")


@pytest.mark.slow
def test_corrupt_and_non_pdf_members_are_one_line_rejects_naming_the_member(write_recipe, pdf_dir, tmp_path):
    data = (pdf_dir / "R-data.pdf").read_bytes()
    shard = _shard(tmp_path / "bad.tar", {
        "good/R-data.pdf": pdf_dir / "R-data.pdf", "good/latexbug.pdf": pdf_dir / "latexbug.pdf",
        "bad/truncated.pdf": data[: len(data) // 3], "bad/notes.pdf": b"a text file with a .pdf name\n",
        "good/R-data.json": b'{"sidecar": true}',
    })  # fmt: skip
    recipe = load_recipe(write_recipe([str(shard)], pool={"max_reject_rate": 0.9}))
    manifest = build(recipe, tmp_path / "out", workers=2)
    by_item = {r["item"]: r for r in _rejects(tmp_path / "out") if r["stage"] == "pool"}
    assert by_item[f"{shard}/bad/truncated.pdf"]["reason"] == "corrupt"
    assert by_item[f"{shard}/bad/notes.pdf"]["reason"] == "not_pdf"
    for reject in by_item.values():
        assert reject["detail"] and "\n" not in reject["detail"]
    assert not any("R-data.json" in item for item in by_item)  # sidecars are not documents
    assert manifest["documents"] == 2


def test_a_shard_cut_short_rejects_the_cut_member_and_keeps_the_ones_before(pdf_dir, tmp_path):
    whole = _shard(tmp_path / "whole.tar", {"a.pdf": pdf_dir / "brief.pdf", "b.pdf": pdf_dir / "R-data.pdf"})
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:-100_000])  # inside b.pdf's bytes
    entries, rejects = pool.discover_with_rejects([str(cut)])
    assert [e.path for e in entries] == [f"{cut}/a.pdf", f"{cut}/b.pdf"]
    assert [(r.item, r.reason) for r in rejects] == [(str(cut), "unreadable_shard")]
    assert "after 2 PDF members" in rejects[0].detail
    assert pool.inspect_file(f"{cut}/a.pdf", PoolConfig(paths=[])).sha256 == sources.sha256(str(pdf_dir / "brief.pdf"))
    with pytest.raises(Exception, match="shard ends"):
        pool.inspect_file(f"{cut}/b.pdf", PoolConfig(paths=[]))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar file at all" * 100)
    entries, rejects = pool.discover_with_rejects([str(garbage)])
    assert not entries and [(r.item, r.reason) for r in rejects] == [(str(garbage), "unreadable_shard")]


def test_a_list_may_name_single_members(pdf_dir, tmp_path):
    shard = _shard(tmp_path / "s.tar", {"a/brief.pdf": pdf_dir / "brief.pdf", "b/R-data.pdf": pdf_dir / "R-data.pdf"})
    listing = tmp_path / "members.txt"
    listing.write_text("s.tar/b/R-data.pdf\n")
    entries, rejects = pool.discover_with_rejects([str(listing)], index_dir=tmp_path / "index")
    size = (pdf_dir / "R-data.pdf").stat().st_size
    assert [(e.path, e.size_bytes) for e in entries] == [(f"{shard}/b/R-data.pdf", size)]
    assert len(list((tmp_path / "index").glob("*.json"))) == 1 and not rejects  # indexed once for the workers
    with pytest.raises(RecipeError, match="pool path does not exist"):
        pool.discover([f"{shard}/c/missing.pdf"])


def test_urls_list_and_hash_folders_and_shards_like_local_files(pdf_dir, tmp_path):
    names = ["R-data.pdf", "brief.pdf"]
    fs = fsspec.filesystem("memory")
    for name in names:
        fs.pipe(f"/i16b-pool/folder/{name}", (pdf_dir / name).read_bytes())
    shard = _shard(tmp_path / "s.tar", {f"k/{n}": pdf_dir / n for n in names})
    fs.pipe("/i16b-pool/shards/s.tar", shard.read_bytes())
    expected = {sources.sha256(str(pdf_dir / n)) for n in names}
    cfg = PoolConfig(paths=[])
    for url in ("memory://i16b-pool/folder", "memory://i16b-pool/shards", f"file://{tmp_path}"):
        entries, rejects = pool.discover_with_rejects([url], index_dir=tmp_path / "index")
        docs = [pool.inspect_file(e.path, cfg) for e in entries]
        assert {d.sha256 for d in docs} == expected and not rejects, url
        assert all(d.path.startswith(url.split("//")[0] + "//") for d in docs)
    member = "memory:///i16b-pool/shards/s.tar/k/brief.pdf"
    assert render.probe(member)["num_pages"] == render.probe(pdf_dir / "brief.pdf")["num_pages"]
    assert render.render_page(member, 2) == render.render_page(pdf_dir / "brief.pdf", 2)
