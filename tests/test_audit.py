"""The hand audit: the sample, the verdict file, the Wilson interval and the card line (fast), and the page itself in
a real browser (Playwright driving Debian's Chromium) on a copy of the demo build (slow).

The browser test plants a QA whose question holds `<script>` into the copy's qa rows, audits by keyboard and by
click, reloads, and checks verdicts.jsonl, `--report`'s figures against an independent computation of the Wilson
interval, the manifest and the card.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from longdocvqa.audit.report import summarize, wilson_interval
from longdocvqa.audit.sample import allocate, draw
from longdocvqa.audit.store import append_verdict, read_verdicts, verdict_record
from longdocvqa.hub.card import audit_line

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
PLANTED = 'What does <script>window.__audit_pwned = 1</script><b>this</b> say? "quotes" & <img src=x onerror=alert(1)>'


def wilson_by_bisection(correct: int, judged: int) -> tuple[float, float]:
    """The Wilson interval found independently: the p where |p_hat - p| = z * sqrt(p (1 - p) / n), by bisection."""
    z, p_hat = NormalDist().inv_cdf(0.975), correct / judged

    def outside(p: float) -> float:
        return (p_hat - p) ** 2 - z * z * p * (1 - p) / judged

    def root(lo: float, hi: float) -> float:
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (outside(mid) > 0) == (outside(lo) > 0) else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if correct == 0 else root(0.0, p_hat)
    high = 1.0 if correct == judged else root(p_hat, 1.0)
    return low, high


@pytest.mark.parametrize(("correct", "judged"), [(97, 100), (3, 4), (0, 5), (5, 5), (1, 1), (412, 500)])
def test_wilson_interval_matches_an_independent_computation(correct: int, judged: int) -> None:
    low, high = wilson_interval(correct, judged)
    ref_low, ref_high = wilson_by_bisection(correct, judged)
    assert low == pytest.approx(ref_low, abs=1e-9) and high == pytest.approx(ref_high, abs=1e-9)
    assert low <= correct / judged <= high


def test_wilson_interval_of_97_of_100_is_the_textbook_one() -> None:
    low, high = wilson_interval(97, 100)
    assert (round(low, 4), round(high, 4)) == (0.9155, 0.9897)


def rows(counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{"id": f"{task}-{i:03d}", "task": task} for task, n in counts.items() for i in range(n)]


def test_sample_is_stratified_seeded_and_grows_by_extension() -> None:
    population = rows({"extract-single": 60, "extract-multi": 30, "reasoning": 10})
    small, large = draw(population, 10, seed=3), draw(population, 40, seed=3)
    assert small.strata == {"extract-multi": 3, "extract-single": 6, "reasoning": 1}
    assert [r["id"] for r in draw(population, 10, seed=3).rows] == [r["id"] for r in small.rows]
    assert {r["id"] for r in small.rows} <= {r["id"] for r in large.rows}
    assert {r["id"] for r in draw(population, 10, seed=4).rows} != {r["id"] for r in small.rows}
    assert {r["task"] for r in draw(population, 5, seed=0, tasks=["reasoning"]).rows} == {"reasoning"}
    assert allocate({"a": 1, "b": 1}, 10) == {"a": 1, "b": 1}


def _append_many(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(40):
        append_verdict(Path(path), verdict_record(f"w{worker}-{i}", "correct", note="x" * 3000))


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "verdicts.jsonl"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_append_many, [(str(path), w) for w in range(4)])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 160 and all(json.loads(line)["note"] == "x" * 3000 for line in lines)
    assert len(read_verdicts(path)) == 160


def test_a_later_verdict_replaces_an_earlier_one_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    append_verdict(path, verdict_record("q1", "wrong", "first look"))
    append_verdict(path, verdict_record("q1", "correct", auditor="ann"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"qa_id": "q2", "verd')  # a crash mid-line
    latest = read_verdicts(path)
    assert list(latest) == ["q1"] and latest["q1"]["verdict"] == "correct" and latest["q1"]["auditor"] == "ann"


def test_card_line_before_and_after_an_audit() -> None:
    assert audit_line(None).startswith("- Hand audit: none was done")
    verdicts = {f"q{i}": {"verdict": "correct" if i < 9 else "wrong", "time": "2026-12-07T04:00:00+00:00"}
                for i in range(10)}  # fmt: skip
    verdicts["q10"] = {"verdict": "unclear", "time": "2026-12-07T05:00:00+00:00"}
    summary = summarize(verdicts, {}, {"seed": 0, "size": 11, "population": 200})
    assert audit_line(summary) == (
        "- Hand audit: 9 of 10 correct (95% CI 59.6-98.2%; 1 unclear counted apart), 11 QA audited from a seeded "
        "task-stratified sample of 11 of 200 published QA (seed 0), 2026-12-07"
    )


# ---- the page, in a real browser ---------------------------------------------------------------------------------


def audit_copy(demo_build: Path, tmp_path: Path, plant: bool = True) -> tuple[Path, str]:
    """A copy of the demo run (page cache linked, not copied) whose first extract-single QA asks PLANTED."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "run"
    shutil.copytree(demo_build, out, ignore=shutil.ignore_patterns("cache", "audit", "*.lock"))
    (out / "cache").symlink_to(demo_build / "cache")
    if not plant:
        return out, ""
    path = next((out / "dataset" / "data" / "qa").glob("*.parquet"))
    table = pq.read_table(path)
    qa = table.to_pylist()
    planted = min((r for r in qa if r["task"] == "extract-single"), key=lambda r: r["id"])
    planted["question"] = PLANTED
    pq.write_table(pa.Table.from_pylist(qa, schema=table.schema), path)
    return out, planted["id"]


class Server:
    """`longdocvqa audit` in a child process, as a user starts it; stopped with Ctrl-C (SIGINT)."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "300"}
        self.proc = subprocess.Popen([sys.executable, "-m", "longdocvqa", "audit", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
        self.lines: list[str] = []
        for line in self.proc.stdout or []:
            self.lines.append(line)
            if match := re.search(r"open (http://\S+)", line):
                self.url = match.group(1)
                return
        raise AssertionError("the audit server did not start:\n" + "".join(self.lines))

    @property
    def port(self) -> int:
        return int(re.search(r":(\d+)/", self.url).group(1))  # type: ignore[union-attr]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)


def raw_get(port: int, path: str, host: str = "127.0.0.1") -> int:
    """Status of GET `path` sent byte for byte (no client-side `../` normalisation)."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", f"127.0.0.1:{port}")
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def launch(playwright: Any) -> Any:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def item_index(page: Any) -> int:
    return int(re.search(r"item (\d+)", page.text_content("#position")).group(1)) - 1  # type: ignore[union-attr]


@pytest.mark.slow
def test_audit_in_a_real_browser(demo_build: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    out, planted_id = audit_copy(demo_build, tmp_path)
    assert "- Hand audit: none was done" in (out / "dataset" / "README.md").read_text()
    server = Server(str(out / "dataset"), "--port", "0", "--sample", "18", "--seed", "1")
    expected: dict[str, tuple[str, str]] = {}
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server.url)
            expect(page.locator("#progress")).to_have_text("0 / 18")
            state = page.evaluate("fetch('/api/state').then(r => r.json())")
            items = state["items"]
            assert page.text_content("#question") == items[0]["question"]
            page.keyboard.press("c")  # by keyboard
            expect(page.locator("#progress")).to_have_text("1 / 18")
            expected[items[0]["id"]] = ("correct", "")
            page.fill("#note", "checked by click: the answer is on another page")
            page.click(".verdicts button.wrong")  # by click, with a note
            expect(page.locator("#progress")).to_have_text("2 / 18")
            expected[items[1]["id"]] = ("wrong", "checked by click: the answer is on another page")
            page.keyboard.press("u")
            expect(page.locator("#progress")).to_have_text("3 / 18")
            expected[items[2]["id"]] = ("unclear", "")
            page.reload()  # resumes at the first QA without a verdict
            expect(page.locator("#progress")).to_have_text("3 / 18")
            expect(page.locator("#question")).to_have_text(items[3]["question"])
            planted = next(i for i, item in enumerate(items) if item["id"] == planted_id)
            while item_index(page) != planted:
                page.keyboard.press("j" if item_index(page) < planted else "k")
            question = page.locator("#question")
            expect(question).to_have_text(PLANTED)  # shown as text, not run, not parsed
            assert question.evaluate("node => node.children.length") == 0
            assert page.evaluate("window.__audit_pwned") is None
            image = page.locator("#evidence-pages img").first
            expect(image).to_be_visible()
            page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 300)")
            expect(page.locator("#evidence-pages .hl").first).to_be_visible()  # the answer, highlighted
            page.keyboard.press("o")  # the segment's other pages on demand
            others = items[planted]["segment_end"] - items[planted]["segment_start"] + 1
            others -= len(set(items[planted]["evidence_pages"]))
            expect(page.locator("#other-pages figure")).to_have_count(others)
            page.screenshot(path=str(tmp_path / "audit.png"))
            page.keyboard.press("c")
            expected[planted_id] = ("correct", "")
            expect(page.locator("#progress")).to_have_text(f"{len(expected)} / 18")
            second = browser.new_page()  # a second tab adds its verdict beside the first's
            second.goto(server.url)
            expect(second.locator("#progress")).to_have_text(f"{len(expected)} / 18")
            resume_id = second.evaluate("fetch('/api/state').then(r => r.json()).then(s => s.items[s.resume].id)")
            second.keyboard.press("w")
            expected[resume_id] = ("wrong", "")
            expect(second.locator("#progress")).to_have_text(f"{len(expected)} / 18")
            browser.close()
        for path in ("/static/../manifest.json", "/static/..%2f..%2fmanifest.json", "/../recipe.lock.yaml",
                     "/api/page/0/../../../../etc/passwd", "/static/..", "/api/page/0/9999"):  # fmt: skip
            assert raw_get(server.port, path) == 404, path
        assert raw_get(server.port, "/static/app.js") == 200
    finally:
        assert server.stop() == 0
    check_verdicts(out, expected)
    check_report(out, expected)


def check_verdicts(out: Path, expected: dict[str, tuple[str, str]]) -> None:
    lines = [json.loads(line) for line in (out / "audit" / "verdicts.jsonl").read_text().splitlines()]
    latest = {r["qa_id"]: (r["verdict"], r["note"]) for r in lines}  # a QA judged twice: the later line counts
    assert latest == expected
    for record in lines:
        assert set(record) == {"qa_id", "verdict", "note", "time"}
        assert datetime.fromisoformat(record["time"]).tzinfo is not None


def check_report(out: Path, expected: dict[str, tuple[str, str]]) -> None:
    result = subprocess.run([sys.executable, "-m", "longdocvqa", "audit", str(out), "--report"], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    verdicts = [v for v, _ in expected.values()]
    correct, wrong = verdicts.count("correct"), verdicts.count("wrong")
    low, high = wilson_by_bisection(correct, correct + wrong)
    overall = next(line for line in result.stdout.splitlines() if line.startswith("overall"))
    assert overall.split()[1:4] == [str(correct), str(wrong), str(verdicts.count("unclear"))]
    assert f"{100 * correct / (correct + wrong):.1f}%" in overall and f"{100 * low:.1f}-{100 * high:.1f}%" in overall
    audit = json.loads((out / "manifest.json").read_text())["audit"]
    assert audit["overall"]["ci95"] == pytest.approx([low, high], abs=1e-6)
    assert audit["sample"]["seed"] == 1 and audit["sample"]["size"] == 18
    card = (out / "dataset" / "README.md").read_text()
    line = f"- Hand audit: {correct} of {correct + wrong} correct (95% CI {100 * low:.1f}-{100 * high:.1f}%; "
    line += f"{verdicts.count('unclear')} unclear counted apart), {len(expected)} QA audited from a seeded"
    assert line in card and "none was done" not in card


def test_a_non_loopback_host_needs_the_token(tmp_path: Path) -> None:
    """The guard build_app puts on a non-loopback address, served by uvicorn on 127.0.0.1 for the test."""
    import socket
    import threading
    import time

    import uvicorn

    from longdocvqa.audit.app import Session, build_app
    from longdocvqa.audit.command import is_loopback
    from longdocvqa.audit.sample import Run, Sample

    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and is_loopback("::1")
    session = Session(Run(tmp_path), Sample([], seed=0, size=1, population=0), {})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(session, token="s3cret", loopback=False), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        port = sock.getsockname()[1]
        assert raw_get(port, "/") == 403 and raw_get(port, "/?token=wrong") == 403
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/?token=s3cret")
        first = conn.getresponse()
        first.read()
        cookie = first.getheader("set-cookie", "").split(";")[0]
        assert first.status == 200 and "HttpOnly" in first.getheader("set-cookie", "")
        conn.request("GET", "/api/state", headers={"Cookie": cookie})
        state = conn.getresponse()
        assert state.status == 200 and json.loads(state.read())["total"] == 0
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.slow
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, demo_build: Path) -> None:
    from typer.testing import CliRunner

    from longdocvqa.cli import app

    runner = CliRunner()
    empty = runner.invoke(app, ["audit", str(tmp_path)])
    assert empty.exit_code == 2 and "no published QA" in empty.output and "Traceback" not in empty.output
    copy, _ = audit_copy(demo_build, tmp_path)
    report = runner.invoke(app, ["audit", str(copy), "--report"])
    assert report.exit_code == 2 and "no verdicts yet" in report.output
    unknown = runner.invoke(app, ["audit", str(copy), "--task", "nope"])
    assert unknown.exit_code == 2 and "no published QA of that task" in unknown.output


@pytest.mark.slow
def test_the_next_push_carries_the_audit_in_the_card(demo_build: Path, tmp_path: Path) -> None:
    from fakehub import FakeHub
    from test_push import REPO, run_client

    from longdocvqa.audit.report import save_summary
    from longdocvqa.audit.sample import find_run, read_qa

    out, _ = audit_copy(demo_build, tmp_path, plant=False)
    run = find_run(out)
    qa = read_qa(run)
    for i, row in enumerate(qa[:5]):
        append_verdict(run.audit_dir / "verdicts.jsonl", verdict_record(row["id"], "wrong" if i == 0 else "correct"))
    verdicts = read_verdicts(run.audit_dir / "verdicts.jsonl")
    save_summary(run, summarize(verdicts, {r["id"]: r["task"] for r in qa}, {"seed": 0, "size": 5, "population": 18}))
    low, high = wilson_by_bisection(4, 5)
    line = f"- Hand audit: 4 of 5 correct (95% CI {100 * low:.1f}-{100 * high:.1f}%)"
    with FakeHub(tmp_path / "hub") as hub:
        code, [pushed], output = run_client(hub, tmp_path, [{"op": "push", "out_dir": str(out)}])
        assert code == 0 and pushed["status"] == "pushed", output
        repo = hub.repo(REPO)
        assert repo is not None
        readme = repo["commits"][repo["tags"]["v0.1.0"]]["files"]["README.md"]
        assert line in hub.state.read_object(readme["sha256"]).decode("utf-8")


@pytest.mark.slow
def test_pages_come_from_the_page_cache_or_are_rendered_the_same(demo_build: Path, tmp_path: Path) -> None:
    from longdocvqa.audit.evidence import Evidence
    from longdocvqa.audit.sample import find_run, read_qa

    row = read_qa(find_run(demo_build))[0]
    sha, page = row["doc_sha256"], row["evidence_pages"][0]
    cached = Evidence(demo_build)
    assert cached.cached_path(sha, page).is_file()  # the path runner/loop.py's PageImages wrote
    out = tmp_path / "run"
    shutil.copytree(demo_build, out, ignore=shutil.ignore_patterns("cache", "audit", "*.lock"))
    uncached = Evidence(out)
    assert not uncached.cached_path(sha, page).exists()
    assert uncached.page_image(sha, page) == cached.page_image(sha, page)  # rendered from the source PDF
    assert uncached.page_image(sha, 10_000) is None
