"""A scripted OpenAI-compatible chat-completions server on loopback (stdlib only), for tests and benchmarks.

It answers `POST /v1/chat/completions` with *content-correct* replies built from the page texts it finds
in the prompt (after "[Current Case]"): a line of page k as the answer and k as the evidence page, so
semantic checks pass. Page images are matched to texts registered with `register_image`. Its verifier, its
agreement judge and its rubric judge compute their replies from the pages and answers they are shown (`solve`
parses the three question kinds the generator writes and answers them from the shown page texts; it never
consults what it generated), so a wrong QA is caught by the review and a right one agreed with. In `json_schema`
mode every reply it means to be valid is checked against the schema sent (`schema_errors`; HTTP 400 on a
mismatch). It is real HTTP with scripted behaviour, not a model: it cannot read pixels. Failures are
scripted per request: invalid JSON, schema-violating JSON, semantically wrong QA, 429 with Retry-After,
500, slow or hanging replies, bodies cut mid-stream, `finish_reason: length`, empty 200 bodies, and runaway
bodies of `huge_mb` megabytes (with a Content-Length, or chunked without one), streamed without being held.
It counts every request and every body it answered successfully, so tests can assert "zero HTTP requests" and
"never sent twice". A `responder` (body -> reply text, or None) replaces the QA replies with free text, e.g.
answers to eval questions.

Run standalone (for bench/generate.py): python tests/openai_server.py --port 0 --latency-s 0.2
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from server_review import (
    answer_in_question,
    candidate_lines,
    field,
    fits,
    judge_same,
    same_answer,
    schema_problem,
    solve,
)

OK_KINDS = ("ok", "slow")
FAIL_KINDS = ("invalid_json", "schema_violation", "bad_evidence", "no_anchor", "rate_limit", "server_error",
              "truncated", "length")  # fmt: skip
ALL_KINDS = OK_KINDS + FAIL_KINDS + ("hang", "empty", "huge", "huge_chunked")
_LABEL = re.compile(r"^(?:Text layer of )?Page (\d+):[ \t]*$", re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]{5,}")


class ScriptedOpenAI:
    """The server's state and behaviour; `start()` serves it on 127.0.0.1 in a daemon thread."""

    def __init__(self, latency_s: float = 0.0, seed: int = 0) -> None:
        self.latency_s = latency_s
        self.retry_after = "0"
        self.slow_s = 0.3
        self.hang_s = 5.0
        self.huge_mb = 30.0
        self.script: list[str] = []
        self.policy: Callable[[int, dict[str, Any]], str] | None = None
        self.image_texts: dict[str, str] = {}
        self.answers: dict[str, Any] = {}  # question -> answer it generated; read only when verifier_echo is set
        self.verify_wrong = False  # a verifier and judges that disagree with everything (a broken reviewer)
        self.verifier_echo = False  # the old circular verifier: repeats its own generated answer (to show tests bite)
        self.schema_errors: list[str] = []
        # Optional free-text replier (evaluation tests): body -> content, or None for the default behaviour.
        self.responder: Callable[[dict[str, Any]], str | None] | None = None
        self.requests = 0
        self.by_kind: Counter[str] = Counter()
        self.answered_ok: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._httpd: ThreadingHTTPServer | None = None

    # -- control

    def start(self, port: int = 0) -> ScriptedOpenAI:
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = _Server(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def push(self, *kinds: str) -> None:
        """Script the next requests' behaviours (then `policy`, then "ok")."""
        with self._lock:
            self.script.extend(kinds)

    def random_failures(self, rate: float, kinds: tuple[str, ...] = FAIL_KINDS, seed: int = 0) -> None:
        """Fail a share `rate` of requests, in a seeded mix of `kinds`."""
        rng = random.Random(seed)
        self.policy = lambda _i, _body: rng.choice(kinds) if rng.random() < rate else "ok"

    def register_image(self, data_url_or_bytes: str | bytes, text: str) -> None:
        """Tell the server which page text an image shows (it cannot read pixels)."""
        self.image_texts[_image_sha(data_url_or_bytes)] = text

    # -- request handling

    def next_kind(self, body: dict[str, Any]) -> str:
        with self._lock:
            self.requests += 1
            index = self.requests
            if self.script:
                kind = self.script.pop(0)
            elif self.policy is not None:
                kind = self.policy(index, body)
            else:
                kind = "ok"
            self.by_kind[kind] += 1
            self.bodies.append(body)
        return kind

    def mark_answered(self, raw: bytes) -> None:
        with self._lock:
            self.answered_ok[hashlib.sha256(raw).hexdigest()] += 1

    def reply(self, body: dict[str, Any], kind: str) -> tuple[str, str]:
        """(content, finish_reason) for a request under behaviour `kind`."""
        if self.responder is not None and (content := self.responder(body)) is not None:
            return content, "length" if kind == "length" else "stop"
        prompt = _prompt_text(body["messages"])
        if "[Verification]" in prompt:
            return self._verify_reply(prompt, body["messages"]), "stop"
        if "[Judge]" in prompt:
            same = not self.verify_wrong and judge_same(prompt)
            return json.dumps({"same": same, "reason": "computed from the two answers"}), "stop"
        if "[Rubric Judge]" in prompt:
            return json.dumps(self._rubric_reply(prompt, body["messages"])), "stop"
        if "[OCR]" in prompt:
            texts = self.page_texts(body["messages"], anywhere=True)
            blocks = [{"label": "paragraph", "text": t} for t in texts.values() if t]
            return json.dumps({"blocks": blocks}), "stop"
        qa, evidence = self.make_qa(body)
        qa = self.plant(body, qa)
        self.answers[qa["question"]] = qa["answer"]  # what it generated, as sent (read only by verifier_echo)
        if kind == "schema_violation":
            qa = {"question": qa["question"], "answer": qa["answer"], "evidence_pages": "all"}
        elif kind == "bad_evidence":
            qa["evidence_pages"] = [max(qa["evidence_pages"]) + 500]
        elif kind == "no_anchor":
            qa["question"] = "What does the document say about this topic?"
        text = json.dumps(qa, ensure_ascii=False)
        if body.get("response_format") is None:
            text = f"[Evidence Description]: {evidence}\n[JSON]: {text}"
        if kind == "invalid_json":
            return text[: len(text) // 2], "stop"
        if kind == "length":
            return text[: len(text) // 3], "length"
        return text, "stop"

    def _verify_reply(self, prompt: str, messages: list[dict[str, Any]]) -> str:
        question = field(prompt, "Question")
        if self.verifier_echo:
            answer = self.answers.get(question, "unknown")
        else:
            solved = solve(question, self.shown_pages(messages))
            answer = "not stated on these pages" if solved is None else solved
        if self.verify_wrong:
            answer = ["wrong"] if isinstance(answer, list) else "999" if answer.isdigit() else "a different answer"
        return json.dumps({"answer": answer})

    def _rubric_reply(self, prompt: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Scores computed from the pages shown: the answer solved again, the question's scope, its format."""
        question, task, fmt = field(prompt, "Question"), field(prompt, "Task"), field(prompt, "Answer format")
        answer = json.loads(field(prompt, "Answer") or '""')
        evidence = [int(n) for n in re.findall(r"\d+", field(prompt, "Evidence pages"))]
        solved = solve(question, self.shown_pages(messages))
        computed = {
            "grounded_correct": 5 if solved is not None and same_answer(solved, answer) else 1,
            "self_contained": 5 if re.search(r"\bPages? \d", question) else 2,
            "needs_document": 1 if answer_in_question(answer, question) else 5,
            "fits_task_format": 5 if fits(task, fmt, answer, evidence) else 1,
        }
        names = re.findall(r'"(\w+)": <1-5>', prompt)
        scores = {name: 1 if self.verify_wrong else computed.get(name, 5) for name in names}
        return {"scores": scores, "reason": "computed from the pages shown"}

    def shown_pages(self, messages: list[dict[str, Any]]) -> dict[int, str]:
        """Page -> text of a review prompt (verifier, judge): the labelled pages, the question after them cut off."""
        texts = self.page_texts(messages, anywhere=True)
        if texts:
            last = max(texts)
            for tail in ("\n\nQuestion: ", "\n\nTask: "):
                texts[last] = texts[last].rpartition(tail)[0] or texts[last]
        return texts

    def page_texts(self, messages: list[dict[str, Any]], anywhere: bool = False) -> dict[int, str]:
        """Page index -> text, from "Page N:" labels followed by text or by a registered image."""
        texts: dict[int, str] = {}
        current, started = None, anywhere
        for part in _parts(messages):
            if part.get("type") == "image_url":
                if current is not None:
                    texts[current] = texts.get(current, "") + self.image_texts.get(
                        _image_sha(part["image_url"]["url"]), ""
                    )
                continue
            text = part.get("text", "")
            if not started and "[Current Case]" in text:
                started, text = True, text.split("[Current Case]", 1)[1]
            if not started:
                continue
            pieces = _LABEL.split(text)
            for i in range(1, len(pieces), 2):
                current = int(pieces[i])
                texts[current] = texts.get(current, "") + pieces[i + 1]
        return texts

    def make_qa(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """A content-correct QA for the task named in the prompt, deterministic per request content."""
        prompt = _prompt_text(body["messages"])
        texts = self.page_texts(body["messages"])
        rng = random.Random(hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest())
        lines = {p: candidate_lines(t) for p, t in texts.items()}
        pages = [p for p, ls in sorted(lines.items()) if ls]
        if not pages:
            page = min(texts) if texts else 1
            qa = _qa(f"What is shown on Page {page}?", "a page", "String", [page], ["Figure"])
            return qa, f"Page {page} (Figure): the page."
        if "Non-Trivial Synthesis" in prompt:
            qa = _reasoning_qa(texts, pages, rng)
        elif "Multi-Page Priority" in prompt and len(pages) >= 2:
            p1, p2 = sorted(rng.sample(pages, 2))
            q = f"Based on Pages {p1} and {p2}, list the first line of body text on each of these pages."
            qa = _qa(q, [lines[p1][0][1], lines[p2][0][1]], "List", [p1, p2], ["Text"])
        else:
            qa = _single_qa(lines, pages, rng, _previous_questions(prompt))
        self.answers[qa["question"]] = qa["answer"]
        return qa, f"Page {qa['evidence_pages'][0]} (Text): quoted from the page."

    def plant(self, body: dict[str, Any], qa: dict[str, Any]) -> dict[str, Any]:
        """Hook for benchmarks that plant errors in generated QA (bench/quality.py); the test server plants none."""
        return qa

    def check_schema(self, body: dict[str, Any], content: str) -> str | None:
        """In json_schema mode, why `content` does not fit the schema sent (recorded in schema_errors), else None."""
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if schema is None:
            return None
        try:
            problem = schema_problem(json.loads(content), schema, schema)
        except json.JSONDecodeError as exc:
            problem = f"not JSON: {exc}"
        if problem is not None:
            with self._lock:
                self.schema_errors.append(problem)
        return problem


def _qa(question: str, answer: Any, fmt: str, pages: list[int], sources: list[str]) -> dict[str, Any]:
    return {"question": question, "answer": answer, "answer_format": fmt, "evidence_pages": pages,
            "evidence_sources": sources}  # fmt: skip


def _single_qa(lines: dict[int, list[tuple[str, str]]], pages: list[int], rng: random.Random,
               previous: set[str]) -> dict[str, Any]:  # fmt: skip
    options = [(page, prev, line) for page in pages for prev, line in lines[page]]
    rng.shuffle(options)
    fresh = [o for o in options if f'On Page {o[0]}, which line directly follows the line "{o[1]}"?' not in previous]
    page, prev, line = (fresh or options)[0]
    return _qa(f'On Page {page}, which line directly follows the line "{prev}"?', line, "String", [page], ["Text"])


def _previous_questions(prompt: str) -> set[str]:
    """Questions the prompt lists as already written ("- question" lines after the marker)."""
    if "Questions already written" not in prompt:
        return set()
    block = prompt.split("Questions already written", 1)[1].split("\n\n", 1)[0]
    return {line[2:].strip() for line in block.splitlines() if line.startswith("- ")}


def _reasoning_qa(texts: dict[int, str], pages: list[int], rng: random.Random) -> dict[str, Any]:
    chosen = sorted(rng.sample(pages, min(2, len(pages))))
    words = sorted({w.lower() for p in chosen for w in _WORD.findall(texts[p])})
    word = rng.choice(words) if words else "the"
    count = sum(len(re.findall(rf"\b{re.escape(word)}\b", texts[p], re.IGNORECASE)) for p in chosen)
    refs = " and ".join(str(p) for p in chosen)
    q = f'How many times does the word "{word}" occur on Pages {refs} combined?'
    return _qa(q, str(count), "Integer", chosen, ["Text"])


def _parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for message in messages[:2]:  # system + first user turn: the prompt itself, not re-ask turns
        content = message.get("content")
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            parts.extend(content)
    return parts


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(p.get("text", "") for p in _parts(messages) if p.get("type") == "text")


def _image_sha(data_url_or_bytes: str | bytes) -> str:
    data = data_url_or_bytes
    if isinstance(data, str):
        data = base64.b64decode(data.split(",", 1)[1])
    return hashlib.sha256(data).hexdigest()


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 refuses bursts of 64 new connections


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: Nagle + delayed ACK would add 40 ms
    app: ScriptedOpenAI

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._send(200, {"status": "ok"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(raw)
        kind = self.app.next_kind(body)
        time.sleep(self.app.latency_s)
        if kind == "rate_limit":
            self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                       {"Retry-After": self.app.retry_after})  # fmt: skip
            return
        if kind == "auth_error":
            self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
            return
        if kind == "auth_echo":  # as some servers do: the key sent, echoed in the error message
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._send(401, {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request"}})
            return
        if kind == "server_error":
            self._send(500, {"error": {"message": "scripted failure", "type": "server_error"}})
            return
        if kind == "empty":
            self._send_raw(200, b"")
            return
        if kind in ("huge", "huge_chunked"):
            self._send_huge(int(self.app.huge_mb * 1024 * 1024), chunked=kind == "huge_chunked")
            return
        if kind in ("slow", "hang"):
            time.sleep(self.app.slow_s if kind == "slow" else self.app.hang_s)
        content, finish = self.app.reply(body, kind)
        meant_valid = kind not in ("schema_violation", "invalid_json", "length")
        if meant_valid and (bad := self.app.check_schema(body, content)):
            self._send(400, {"error": {"message": f"reply does not fit the schema sent: {bad}", "type": "schema"}})
            return
        payload = _completion(body, content, finish)
        if kind == "truncated":
            self._send_truncated(payload)
            return
        if self._send(200, payload) and kind != "hang":
            self.app.mark_answered(raw)

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> bool:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _send_raw(self, status: int, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send_huge(self, size: int, chunked: bool) -> None:
        """A valid chat.completion whose content is `size` bytes of text, written 1 MB at a time."""
        head = b'{"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", ' \
               b'"message": {"role": "assistant", "content": "'  # fmt: skip
        tail = b'"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}'
        block = b"x" * (1 << 20)
        pieces = [p for p in (head, *[block] * (size // len(block)), b"x" * (size % len(block)), tail) if p]
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(sum(len(p) for p in pieces)))
            self.end_headers()
            for piece in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _send_truncated(self, payload: dict[str, Any]) -> None:
        """Promise the whole body, send half of it, close the connection."""
        data = json.dumps(payload).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


def _completion(body: dict[str, Any], content: str, finish: str) -> dict[str, Any]:
    prompt_chars = len(json.dumps(body.get("messages", [])))
    return {
        "id": "chatcmpl-" + hashlib.sha256(content.encode()).hexdigest()[:12],
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4 + 1,
                  "total_tokens": prompt_chars // 4 + len(content) // 4 + 1},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-s", type=float, default=0.0)
    args = parser.parse_args()
    server = ScriptedOpenAI(latency_s=args.latency_s).start(args.port)
    print(f"listening on {server.base_url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
