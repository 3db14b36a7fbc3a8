"""`longdocvqa eval` end to end against the scripted loopback server: right, wrong and "Not answerable" answers,
length-controlled padding, rerun without requests, resume after failed calls, a built dataset, and the CLI."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from eval_helpers import QUESTIONS, asked_question, gold_answers, make_benchmark, replier, wrong_answers
from llm_fixtures import scripted_server  # noqa: F401 - registers the `server` fixture
from openai_server import ScriptedOpenAI
from test_charts import data_under_legend
from typer.testing import CliRunner

from longdocvqa.assembly.tokens import TokenCounter, render_chat
from longdocvqa.cli import app
from longdocvqa.eval.data import load_eval_set
from longdocvqa.eval.prompt import PromptBuilder, page_label
from longdocvqa.eval.run import EvalConfig, endpoint, run_eval

LENGTHS = [4096, 8192]


@cache
def counter() -> TokenCounter:
    return TokenCounter.load()


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    bad = [{"doc_id": "missing.pdf", "question": "Where is it?", "answer": "nowhere", "answer_format": "Str",
            "evidence_pages": "[1]"},
           {"doc_id": "R-data.pdf", "question": "When?", "answer": "today", "answer_format": "Date",
            "evidence_pages": "[1]"}]  # fmt: skip
    return make_benchmark(tmp_path / "bench", bad)


def config(server: ScriptedOpenAI, dataset: Path | str, out: Path, **overrides: object) -> EvalConfig:
    ep = endpoint(server.base_url, "scripted", None, max_retries=0, timeout_s=30.0)
    values: dict = {"dataset": str(dataset), "out": out, "input_mode": "text", "lengths": LENGTHS, "endpoint": ep}
    return EvalConfig.model_validate({**values, **overrides})


def read_predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_right_answers_score_one_and_a_rerun_sends_nothing(
    server: ScriptedOpenAI, bench: Path, tmp_path: Path
) -> None:
    server.responder = replier(gold_answers())
    out = tmp_path / "out"
    result = run_eval(config(server, bench, out), counter=counter())
    scores = json.loads((out / "scores.json").read_text())
    assert scores["accuracy"] == 1.0 and scores["f1"] == 1.0
    assert scores["evaluated"] == len(QUESTIONS) * len(LENGTHS) and scores["skipped"] == 0
    assert {k: v["accuracy"] for k, v in scores["by_length"].items()} == {"4096": 1.0, "8192": 1.0}
    assert set(scores["by_answer_format"]) == {"String", "Integer", "Float", "List", "None"}
    assert set(scores["by_evidence_position"]) == {"single-page", "cross-page", "unanswerable"}
    assert set(scores["by_task"]) == {"Manual", "Package documentation"}
    assert {r.reason for r in result.rejects} == {"missing_pdf", "bad_answer_format"}
    rows = read_predictions(out)
    assert len(rows) == len(QUESTIONS) * len(LENGTHS)
    assert all(r["score"] == 1.0 and 0 < r["prompt_tokens"] <= r["length"] and r["raw_answer"] for r in rows)
    assert (out / "accuracy_vs_length.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plotted = json.loads((out / "accuracy_vs_length.json").read_text())
    assert plotted["title"].startswith(f"Accuracy vs context length: {scores['accuracy']:.3f} overall")
    assert plotted["series"]["all"] == [v["accuracy"] for v in scores["by_length"].values() if v["evaluated"]]
    assert data_under_legend(plotted) == []
    sent = server.requests
    assert sent == len(QUESTIONS) * len(LENGTHS)

    again = run_eval(config(server, bench, out), counter=counter())
    assert server.requests == sent  # every call replayed from the ledger
    assert again.scores["run"]["usage"]["model"]["replayed"] == sent
    assert read_predictions(out) == rows


@pytest.mark.slow
def test_page_images_of_benchmark_pdfs_are_sent(server: ScriptedOpenAI, bench: Path, tmp_path: Path) -> None:
    """Image input on PDFs: pages rendered at 144 DPI (in worker threads) and sent as JPEG data URLs."""
    server.responder = replier(gold_answers())
    result = run_eval(config(server, bench, tmp_path / "out", input_mode="images", lengths=[12000]), counter=counter())
    assert result.scores["accuracy"] == 1.0 and result.scores["evaluated"] == len(QUESTIONS)
    sent = sorted(sum(p.get("type") == "image_url" for p in b["messages"][0]["content"]) for b in server.bodies)
    assert sent == sorted(p.plan.num_pages for p in result.predictions)
    assert all(p.plan.prompt_tokens <= 12000 and len(p.plan.blocks) >= 2 for p in result.predictions)


@pytest.mark.slow
def test_wrong_answers_score_zero(server: ScriptedOpenAI, bench: Path, tmp_path: Path) -> None:
    server.responder = replier(wrong_answers())
    result = run_eval(config(server, bench, tmp_path / "out"), counter=counter())
    assert result.scores["accuracy"] == 0.0 and result.scores["f1"] == 0.0
    assert all(p.score == 0.0 and p.raw_answer for p in result.predictions)


@pytest.mark.slow
def test_not_answerable_replies_score_only_the_unanswerable_question(
    server: ScriptedOpenAI, bench: Path, tmp_path: Path
) -> None:
    server.responder = lambda body: "I read every page. Answer: Not answerable."
    result = run_eval(config(server, bench, tmp_path / "out"), counter=counter())
    scores = result.scores
    assert scores["accuracy"] == pytest.approx(1 / len(QUESTIONS), abs=1e-6)
    assert scores["f1"] == 0.0  # nothing answerable was answered
    assert scores["by_evidence_position"]["unanswerable"]["accuracy"] == 1.0
    assert scores["by_evidence_position"]["single-page"]["accuracy"] == 0.0
    assert {p.extracted for p in result.predictions} == {"Not answerable"}


def free_form_then_judged(gold: dict[str, str]):
    """The answering model writes a sentence around the right answer; asked as the judge (its extraction
    prompt), the server pulls the answer out of the response it is shown."""

    def respond(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        if isinstance(prompt, str) and prompt.startswith("You read a model's free-form answer"):
            question = prompt.split("\nQuestion: ")[-1].split("\nResponse: ")[0]
            response = prompt.split("\nResponse: ")[-1]
            extracted = gold[question] if gold[question] in response else "Fail to answer"
            return f"Extracted answer: {extracted}\nAnswer format: String"
        return f"After reading the document, I believe it is {gold[asked_question(body)]}, as page 1 shows."

    return respond


@pytest.mark.slow
def test_a_judge_extracts_answers_through_the_same_ledger(server: ScriptedOpenAI, bench: Path, tmp_path: Path) -> None:
    server.responder = free_form_then_judged(gold_answers())
    judge = endpoint(server.base_url, "judge", None, max_retries=0)
    result = run_eval(config(server, bench, tmp_path / "out", judge=judge, lengths=[8192]), counter=counter())
    assert result.scores["accuracy"] == 1.0
    assert result.scores["run"]["usage"]["judge"]["sent"] == len(QUESTIONS)
    assert server.requests == 2 * len(QUESTIONS)


@pytest.mark.slow
def test_failed_calls_score_zero_and_are_retried_by_the_next_run(
    server: ScriptedOpenAI, bench: Path, tmp_path: Path
) -> None:
    """A run cut short (here: calls failing for good) resumes: the next run sends only the unfinished calls."""
    server.responder = replier(gold_answers())
    server.push("server_error", "server_error")
    out = tmp_path / "out"
    first = run_eval(config(server, bench, out, lengths=[8192]), counter=counter())
    assert first.scores["failed_calls"] == 2 and first.scores["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert server.requests == len(QUESTIONS)
    second = run_eval(config(server, bench, out, lengths=[8192]), counter=counter())
    assert server.requests == len(QUESTIONS) + 2  # only the two failed calls were sent again
    assert second.scores["accuracy"] == 1.0 and second.scores["failed_calls"] == 0


@pytest.mark.slow
def test_a_killed_eval_resumes_without_paying_twice(server: ScriptedOpenAI, bench: Path, tmp_path: Path) -> None:
    """Kill the CLI mid-run (SIGKILL, nothing flushed), rerun: only the calls the ledger lacks are sent."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    server.responder = replier(gold_answers())
    server.latency_s = 0.4
    out = tmp_path / "out"
    args = [sys.executable, "-m", "longdocvqa", "eval", str(bench), "--base-url", server.base_url, "--model",
            "scripted", "--out", str(out), "--lengths", "4096,8192", "--input", "text",
            "--max-concurrency", "1"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = out / "llm_calls.sqlite"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger.is_file() and _finished_calls(sqlite3, ledger) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _finished_calls(sqlite3, ledger)
    total = len(QUESTIONS) * 2
    assert 3 <= done < total and not (out / "scores.json").exists()
    server.latency_s = 0.0
    result = run_eval(config(server, bench, out, lengths=[4096, 8192]), counter=counter())
    usage = result.scores["run"]["usage"]["model"]
    assert usage["replayed"] == done and usage["sent"] == total - done
    assert result.scores["accuracy"] == 1.0


def _finished_calls(sqlite3: Any, ledger: Path) -> int:
    with sqlite3.connect(ledger) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


@pytest.mark.slow
def test_a_question_whose_document_is_too_long_is_skipped_and_counted(
    server: ScriptedOpenAI, bench: Path, tmp_path: Path
) -> None:
    server.responder = replier(gold_answers())
    result = run_eval(config(server, bench, tmp_path / "out", lengths=[600, 8192]), counter=counter())
    by_length = result.scores["by_length"]
    assert by_length["600"]["evaluated"] == 0 and by_length["600"]["skipped"] == {"document_too_long": 6}
    assert by_length["8192"]["accuracy"] == 1.0 and result.scores["skipped"] == 6
    assert server.requests == len(QUESTIONS)


# ---------------------------------------------------------------------------------------------- padding


def _labels(content: object) -> list[tuple[str, int]]:
    """(document, page) of every page label in a prompt, in order."""
    import re

    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content if "text" in p)
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r"Document (.+?), Page (\d+):", text)]


@pytest.mark.parametrize("mode", ["text", "images"])
def test_padding_lands_within_each_target_with_the_document_in_order(bench: Path, mode: str) -> None:
    data = load_eval_set(bench)
    builder = PromptBuilder(data.documents, counter(), mode, seed=0)  # type: ignore[arg-type]
    for question in data.questions:
        relevant = data.documents[question.doc_id]
        for target in (3000, 6000, 12000, 24000) if mode == "text" else (10000, 20000, 40000):
            plan = builder.plan(question, target)
            largest_page = max(max(builder.page_costs(doc_id)) for doc_id in builder.negatives(question))
            assert not plan.skipped and plan.prompt_tokens <= target
            if not plan.padding_exhausted:
                assert target - plan.prompt_tokens <= largest_page + 16, (target, plan)
            messages = builder.messages(question, plan)
            labels = _labels(messages[0]["content"])
            own = [page for name, page in labels if name == relevant.name]
            assert own == list(range(1, relevant.num_pages + 1))  # the whole document, pages in order
            assert len(labels) == plan.num_pages and plan.blocks[plan.relevant_block][0] == relevant.id
            assert 0.0 <= plan.depth <= 1.0 and plan == builder.plan(question, target)  # deterministic
            # an independent count: the rendered template through the tokenizer in one piece, each image's three
            # placeholder tokens replaced by its smart_resize tokens and vision markers
            rendered = render_chat(messages) + "<|im_start|>assistant\n"
            ids = counter().tokenizer.encode(rendered, add_special_tokens=False).ids
            sizes = [data.documents[d].page_sizes_px[p - 1] for d, n in plan.blocks for p in range(1, n + 1)]
            images = [counter().image_tokens(w, h) - 3 for w, h in sizes] if mode == "images" else []
            assert len(ids) + sum(images) == plan.prompt_tokens


def test_padding_comes_from_other_documents_and_runs_out_honestly(bench: Path) -> None:
    data = load_eval_set(bench)
    builder = PromptBuilder(data.documents, counter(), "text", seed=0)
    question = data.questions[0]
    assert question.doc_id not in builder.negatives(question)
    assert sorted(builder.negatives(question)) == sorted(d for d in data.documents if d != question.doc_id)
    huge = builder.plan(question, 10_000_000)  # more than every page of the split
    assert huge.padding_exhausted and huge.num_pages == sum(d.num_pages for d in data.documents.values())
    other_seed = PromptBuilder(data.documents, counter(), "text", seed=1)
    assert other_seed.negatives(question) != builder.negatives(question) or len(data.documents) < 3
    assert page_label("R-data", 2) == "Document R-data, Page 2: "


# ---------------------------------------------------------------------------------------------- dataset and CLI


@pytest.mark.slow
def test_eval_on_the_demo_build_with_page_images(server: ScriptedOpenAI, demo_build: Path, tmp_path: Path) -> None:
    """The demo build's `train` split (its only split), pages as the build rendered them, at 32K and 128K."""
    from longdocvqa.hub.load import load_config

    qa = load_config(demo_build / "dataset", "qa", split="train")
    gold = {row["question"]: row["answer"] for row in qa}
    server.responder = replier(gold)
    out = tmp_path / "out"
    cfg = config(server, demo_build, out, split="train", input_mode="images", lengths=[32768, 131072], limit=2)
    result = run_eval(cfg, counter=counter())
    scores = result.scores
    assert scores["by_length"]["32768"]["skipped"] == {"document_too_long": 2}  # demo documents are 32-50 pages
    assert scores["by_length"]["131072"]["evaluated"] >= 1 and scores["accuracy"] == 1.0
    sent_images = []
    for body in server.bodies:
        images = [p for p in body["messages"][0]["content"] if p.get("type") == "image_url"]
        assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
        sent_images.append(len(images))
    rows = [r for r in read_predictions(out) if not r["skipped"]]
    assert all(r["prompt_tokens"] <= 131072 for r in rows)
    assert sorted(sent_images) == sorted(r["num_pages"] for r in rows)  # every page of every prompt as an image


@pytest.mark.slow
def test_eval_on_a_hub_repo_by_tag(server: ScriptedOpenAI, demo_build: Path, tmp_path: Path) -> None:
    """Push the demo build to the loopback Hub, then evaluate the repo at its tag (clients in child processes,
    which read the Hub's address from the environment at import, as a user's would)."""
    import os
    import subprocess
    import sys

    from fakehub import FakeHub

    from longdocvqa.hub.load import load_config

    gold = {row["question"]: row["answer"] for row in load_config(demo_build / "dataset", "qa", split="train")}
    server.responder = replier(gold)
    out = tmp_path / "out"
    with FakeHub(tmp_path / "hub") as hub:
        env = {**os.environ, **hub.client_env(tmp_path / "hf-home")}
        cli = [sys.executable, "-m", "longdocvqa"]
        pushed = subprocess.run([*cli, "push", str(demo_build), "--repo", "org/demo"], env=env, capture_output=True,
                                text=True, timeout=600)  # fmt: skip
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        args = ["eval", "org/demo", "--revision", "v0.1.0", "--split", "train", "--base-url", server.base_url,
                "--model", "scripted", "--lengths", "131072", "--limit", "2", "--out", str(out)]  # fmt: skip
        evaluated = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    scores = json.loads((out / "scores.json").read_text())
    assert scores["run"]["dataset"] == "org/demo" and scores["run"]["split"] == "train"
    assert scores["evaluated"] + scores["skipped"] == 2 and server.requests == scores["evaluated"] >= 1
    assert scores["accuracy"] == 1.0


@pytest.mark.slow
def test_cli_eval_help_and_run(server: ScriptedOpenAI, bench: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["eval", "--help"]).output
    for flag in ("--base-url", "--model", "--lengths", "--judge-base-url", "--judge-model", "--split", "--out",
                 "--api-key-env", "--input"):  # fmt: skip
        assert flag in help_text
    server.responder = replier(gold_answers())
    out = tmp_path / "out"
    args = ["eval", str(bench), "--base-url", server.base_url, "--model", "scripted", "--out", str(out),
            "--lengths", "8192", "--input", "text"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "accuracy 1.0000" in result.output and json.loads((out / "scores.json").read_text())["accuracy"] == 1.0
    bad = runner.invoke(app, [*args[:-4], "--lengths", "many"])
    assert bad.exit_code == 2 and "error" in bad.output
    missing = runner.invoke(app, ["eval", str(tmp_path / "nowhere"), *args[2:]])
    assert missing.exit_code == 2 and "no such folder" in " ".join(missing.output.split())
    server.push("auth_error")
    refused = runner.invoke(app, [*args[:-2], "--input", "text", "--lengths", "4096"])
    assert refused.exit_code == 1 and "HTTP 401" in " ".join(refused.output.split())


@pytest.mark.slow
def test_cli_eval_with_a_judge_scores_free_form_answers(server: ScriptedOpenAI, bench: Path, tmp_path: Path) -> None:
    """`eval --judge-base-url/--judge-model` through the CLI: a sentence around the right answer scores 0 by
    rule-based matching alone and 1 once the judge has extracted the answer from it."""
    server.responder = free_form_then_judged(gold_answers())
    runner = CliRunner()
    common = ["eval", str(bench), "--base-url", server.base_url, "--model", "scripted", "--lengths", "8192",
              "--input", "text"]  # fmt: skip
    plain = runner.invoke(app, [*common, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    unjudged = json.loads((tmp_path / "plain" / "scores.json").read_text())
    assert unjudged["accuracy"] < 1.0 and "judge" not in unjudged["run"]["usage"]
    sent = server.requests
    judged = runner.invoke(app, [*common, "--out", str(tmp_path / "judged"), "--judge-base-url", server.base_url,
                                 "--judge-model", "judge"])  # fmt: skip
    assert judged.exit_code == 0, judged.output
    scores = json.loads((tmp_path / "judged" / "scores.json").read_text())
    assert scores["accuracy"] == 1.0 and scores["run"]["usage"]["judge"]["sent"] == len(QUESTIONS)
    assert server.requests - sent == 2 * len(QUESTIONS)  # each question answered once and judged once
