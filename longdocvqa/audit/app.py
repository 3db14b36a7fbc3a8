"""The audit page as a Starlette app (served by uvicorn): the page, its two assets, and a small JSON API.

Routes are explicit and serve nothing from disk by name: page images and highlights are addressed by (sample index,
page number) and resolved here, so a path with `../` matches no route and gets 404. On a loopback address only a
loopback Host header is accepted (no DNS rebinding); on any other address every request needs the token printed in
the URL (kept as an HttpOnly cookie after the first visit). Verdicts are posted as JSON, which a cross-site form
cannot send. Does not own: the sample (sample.py), the verdict file (store.py), page pixels (evidence.py).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longdocvqa.audit.evidence import Evidence
from longdocvqa.audit.sample import Run, Sample
from longdocvqa.audit.store import FILE_NAME, append_verdict, read_verdicts, verdict_record
from longdocvqa.core.errors import LongDocVQAError

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
COOKIE = "longdocvqa_audit_token"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
_SHOWN = ("id", "task", "question", "answer", "answer_list", "answer_format", "evidence_pages", "evidence_sources",
          "evidence_description", "segment_start", "segment_end", "doc_sha256", "generator")  # fmt: skip
_SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self'; object-src 'none'",
                     "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}  # fmt: skip


@dataclass
class Session:
    """One audit: the run, its sample, the documents' rows, and who audits."""

    run: Run
    sample: Sample
    documents: dict[str, dict[str, Any]]
    auditor: str | None = None
    evidence: Evidence = field(init=False)

    def __post_init__(self) -> None:
        self.evidence = Evidence(self.run.root)

    @property
    def verdicts_path(self) -> Path:
        return self.run.audit_dir / FILE_NAME

    def row(self, index: int) -> dict[str, Any] | None:
        return self.sample.rows[index] if 0 <= index < len(self.sample.rows) else None

    def pages_of(self, row: dict[str, Any]) -> set[int]:
        """Pages of the row's segment and its evidence pages: the only pages served for it."""
        return set(range(row["segment_start"], row["segment_end"] + 1)) | set(row.get("evidence_pages") or [])


def outcomes(row: dict[str, Any]) -> dict[str, Any]:
    """Verification and judge columns that ran (names starting `verif` or `judge`; empty values left out)."""
    return {k: v for k, v in row.items() if k.startswith(("verif", "judge")) and v not in (None, "", [])}


def item_json(session: Session, index: int, verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    row = session.sample.rows[index]
    doc = session.documents.get(row["doc_sha256"], {})
    given = verdicts.get(row["id"])
    return {"index": index, **{k: row.get(k) for k in _SHOWN}, "outcomes": outcomes(row),
            "document": {k: doc.get(k) for k in ("file_name", "title", "num_pages")},
            "verdict": given and given["verdict"], "note": given and given.get("note", "")}  # fmt: skip


def state_json(session: Session) -> dict[str, Any]:
    """Every sampled item with its latest verdict, the progress, and where to resume (the first without one)."""
    verdicts = read_verdicts(session.verdicts_path)
    items = [item_json(session, i, verdicts) for i in range(len(session.sample.rows))]
    done = sum(1 for item in items if item["verdict"])
    resume = next((item["index"] for item in items if not item["verdict"]), max(len(items) - 1, 0))
    return {"items": items, "done": done, "total": len(items), "resume": resume, "run": session.run.root.name,
            "seed": session.sample.seed, "population": session.sample.population}  # fmt: skip


def build_app(session: Session, token: str | None = None, loopback: bool = True) -> Any:
    """The Starlette app of `session`; `token` guards every request when set."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Route

    routes = [
        Route("/", _page, methods=["GET"]),
        Route("/static/{name}", _asset, methods=["GET"]),
        Route("/api/state", _state, methods=["GET"]),
        Route("/api/page/{index:int}/{page:int}", _page_image, methods=["GET"]),
        Route("/api/highlights/{index:int}/{page:int}", _highlights, methods=["GET"]),
        Route("/api/verdict", _verdict, methods=["POST"]),
    ]
    middleware = [Middleware(_Headers)]
    if loopback:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS))
    if token:
        middleware.append(Middleware(_TokenGuard, token=token))
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={404: _not_found, 405: _not_found})
    app.state.session = session
    return app


class _Headers:
    """Security headers on every response (a strict CSP: the page runs only its own script)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TokenGuard:
    """403 unless the request carries the token (query `token` once, then the cookie this sets)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        in_url = request.query_params.get("token", "")
        given = in_url or request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            await PlainTextResponse("forbidden: open the URL printed by `longdocvqa audit`", 403)(scope, receive, send)
            return

        async def send_with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start" and in_url:
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def _not_found(request: Any, exc: Exception) -> Any:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse("not found", 404)


def _session(request: Any) -> Session:
    session: Session = request.app.state.session
    return session


def _page(request: Any) -> Any:
    from starlette.responses import HTMLResponse

    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))


def _asset(request: Any) -> Any:
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    name = request.path_params["name"]
    if name not in ASSETS:
        raise HTTPException(404)
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name])


def _state(request: Any) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(state_json(_session(request)))


def _served_row(request: Any) -> tuple[Session, dict[str, Any], int]:
    """The (session, row, page) a page request names; 404 unless the page belongs to that row's segment."""
    from starlette.exceptions import HTTPException

    session = _session(request)
    row = session.row(request.path_params["index"])
    page = request.path_params["page"]
    if row is None or page not in session.pages_of(row):
        raise HTTPException(404)
    return session, row, page


def _page_image(request: Any) -> Any:
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    session, row, page = _served_row(request)
    data = session.evidence.page_image(row["doc_sha256"], page)
    if data is None:
        raise HTTPException(404)
    headers = {"Cache-Control": "private, max-age=3600"}
    return Response(data, media_type=session.evidence.media_type, headers=headers)


def _highlights(request: Any) -> Any:
    from starlette.responses import JSONResponse

    session, row, page = _served_row(request)
    boxes = session.evidence.highlights(row["doc_sha256"], page, row)
    return JSONResponse({"page": page, "boxes": [[round(v, 5) for v in box] for box in boxes]})


async def _verdict(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    session = _session(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "send JSON"}, 415)
    try:
        body = json.loads(await request.body())
        row = session.row(int(body["index"]))
        if row is None or body.get("qa_id") != row["id"]:
            return JSONResponse({"error": "no such item in this sample"}, 404)
        record = verdict_record(row["id"], str(body["verdict"]), str(body.get("note") or ""), session.auditor)
    except (ValueError, KeyError, TypeError, LongDocVQAError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    await run_in_threadpool(append_verdict, session.verdicts_path, record)
    verdicts = await run_in_threadpool(read_verdicts, session.verdicts_path)
    done = sum(1 for r in session.sample.rows if r["id"] in verdicts)
    return JSONResponse({"saved": record, "done": done, "total": len(session.sample.rows)})
