"""History (every request this approver may see, searched and paged) and the audit timeline with its export (issue 14).

Who sees what, the search and the paging are the core's (``server/web_queries.py``); this
module reads the query string, renders, and streams the export. Paging links carry a cursor
(``older`` / ``newer``), never an offset.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from signoff.server import web_queries as wq
from signoff.server.models import Status

from .pages import signed_in
from .render import Web, page, session_of

DAY = 86400.0
EVENTS = ("created", "approved", "rejected", "expired", "cancelled", "answered", "voted", "escalated", "reminded",
          "granted", "grant_revoked", "grant_dead", "refused", "callback_delivered")  # fmt: skip


def _text(request: Request, key: str, size: int = 200) -> str:
    """A filter's text: control characters (NUL included, which the search index cannot take)
    become spaces; nothing stored has them, so nothing is lost."""
    text = request.query_params.get(key, "")[: size * 2]
    return "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text).strip()[:size]


def _day(text: str) -> float | None:
    """``YYYY-MM-DD`` (a date input's value) → that day's start, in UTC; None if not a date."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _range(request: Request) -> tuple[float | None, float | None, dict[str, str]]:
    start, end = _text(request, "from", 10), _text(request, "to", 10)
    since, until = _day(start), _day(end)
    return since, None if until is None else until + DAY, {"from": start if since else "", "to": end if until else ""}


def _links(path: str, values: dict[str, str], p: wq.Page) -> dict[str, str | None]:
    kept = {k: v for k, v in values.items() if v}
    return {
        "older": f"{path}?{urlencode({**kept, 'older': p.older})}" if p.older else None,
        "newer": f"{path}?{urlencode({**kept, 'newer': p.newer})}" if p.newer else None,
        "query": urlencode(kept),
    }


def _clip(text: str, size: int = 200) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _approver(request: Request) -> str:
    session = session_of(request)
    assert session is not None
    return session.approver


async def history(request: Request, web: Web) -> Response:
    since, until, dates = _range(request)
    status = _text(request, "status", 20)
    f = wq.HistoryFilter(q=_text(request, "q"), status=status if status in Status.__members__.values() else "",
                         route=_text(request, "route"), requester=_text(request, "requester"),
                         since=since, until=until)  # fmt: skip
    p = await wq.history(web.channels, _approver(request), f,
                         older=_text(request, "older") or None, newer=_text(request, "newer") or None)  # fmt: skip
    values = {"q": f.q, "status": f.status, "route": f.route, "requester": f.requester, **dates}
    return page(request, web, "history.html", rows=p.rows, filters=values, links=_links(f"{request.state.base}/history", values, p),
                statuses=[s.value for s in Status], routes=[r.name for r in web.channels.config.routes])  # fmt: skip


def _audit_filter(request: Request) -> tuple[wq.AuditFilter, dict[str, str]]:
    since, until, dates = _range(request)
    f = wq.AuditFilter(event=_text(request, "event", 40), request_id=_text(request, "request", 80),
                       requester=_text(request, "requester"), since=since, until=until)  # fmt: skip
    return f, {"event": f.event, "request": f.request_id, "requester": f.requester, **dates}


def routes(web: Web) -> list[Route]:
    chain = wq.ChainCache()

    async def audit(request: Request, web: Web) -> Response:
        f, values = _audit_filter(request)
        p = await wq.audit(web.channels, _approver(request), f,
                           older=_text(request, "older") or None, newer=_text(request, "newer") or None)  # fmt: skip
        status, head = await chain.status(web.channels.service.store, check=request.query_params.get("verify") == "1")
        details = {e.seq: "" if e.data is None else _clip(json.dumps(e.data, ensure_ascii=False)) for e in p.rows}
        return page(request, web, "audit.html", rows=p.rows, filters=values, links=_links(f"{request.state.base}/audit", values, p),
                    events=EVENTS, chain=status, head=head, details=details)  # fmt: skip

    return [
        Route("/history", signed_in(web, history), methods=["GET"]),
        Route("/audit", signed_in(web, audit), methods=["GET"]),
        Route("/audit/export.csv", signed_in(web, export("csv")), methods=["GET"]),
        Route("/audit/export.jsonl", signed_in(web, export("jsonl")), methods=["GET"]),
    ]


def export(fmt: str) -> Any:
    """The filtered audit view as ``signoff audit --format csv|jsonl`` writes it, streamed, oldest first."""
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"

    async def run(request: Request, web: Web) -> Response:
        f, _ = _audit_filter(request)
        approver = _approver(request)

        async def body() -> AsyncIterator[bytes]:
            async for piece in wq.audit_export_chunks(web.channels, approver, f, fmt):
                if piece:
                    yield piece.encode()

        name = f"signoff-audit-{datetime.now(UTC):%Y%m%d-%H%M%S}.{fmt}"
        return StreamingResponse(body(), media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    return run
