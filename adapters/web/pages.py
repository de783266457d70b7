"""Sign-in, sign-out, the inbox and its live updates.

Everyone who is not signed in sees the sign-in page and nothing else. A link's GET shows a
button and signs nobody in: chat apps fetch links to preview them, and a preview must not
spend the one use of a link. The POST does (rate-limited per client address).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from signoff.server.models import ApprovalRequest
from signoff.server.web_auth import path_key
from signoff.server.web_stats import pending_for

from .guard import COOKIE, csrf_ok
from .render import Web, page, session_of

INBOX_LIMIT = 100  # rows shown; the filters narrow a longer list
AGES = {"": 0.0, "1h": 3600.0, "1d": 86400.0}

Handler = Callable[[Request], Awaitable[Response]]


def signed_in(web: Web, handler: Callable[[Request, Web], Awaitable[Response]]) -> Handler:
    """A page only a signed-in approver sees; anyone else gets the sign-in page (401)."""

    async def run(request: Request) -> Response:
        if session_of(request) is None:
            return page(request, web, "signin.html", status_code=401, problem=None, token=None)
        return await handler(request, web)

    return run


def public(web: Web, handler: Callable[[Request, Web], Awaitable[Response]]) -> Handler:
    """A page anyone may open (the sign-in)."""

    async def run(request: Request) -> Response:
        return await handler(request, web)

    return run


def posting(web: Web, handler: Callable[[Request, Web], Awaitable[Response]]) -> Handler:
    """A state-changing POST: a signed-in session *and* its CSRF token, or nothing happens."""

    async def run(request: Request) -> Response:
        if session_of(request) is None:
            return page(request, web, "signin.html", status_code=401, problem=None, token=None)
        if not await csrf_ok(request):
            return page(request, web, "error.html", status_code=403,
                        message="This form has expired (its security token does not match). Reload the page "
                        "and try again.")  # fmt: skip
        return await handler(request, web)

    return run


def _client(request: Request) -> str:
    host = request.client.host if request.client else "?"
    return f"{host} {request.headers.get('user-agent', '')[:200]}"


async def login_form(request: Request, web: Web) -> Response:
    token = request.query_params.get("token", "")
    return page(request, web, "signin.html", problem=None, token=token[:200] or None)


async def login(request: Request, web: Web) -> Response:
    host = request.client.host if request.client else "?"
    token = (await request.form()).get("token")
    # A valid link always works: behind a proxy (or on loopback) every client has one address,
    # and junk from one must not lock the approver out. Only failures are slowed down.
    redeemed = await web.auth.redeem(token, _client(request)) if isinstance(token, str) and token else None
    if redeemed is None and web.sign_ins.blocked(host):
        return page(request, web, "signin.html", status_code=429, token=None,
                    problem="Too many failed sign-ins from this address; wait a minute.")  # fmt: skip
    if redeemed is None:
        web.sign_ins.failed(host)
        return page(request, web, "signin.html", status_code=400, token=None,
                    problem="This sign-in link has expired or was already used. Ask for a new one.")  # fmt: skip
    secret, _ = redeemed
    home = f"{request.state.web_root}/k/{path_key(secret)}"
    response = RedirectResponse(f"{home}/", status_code=303)
    response.set_cookie(COOKIE, secret, max_age=int(web.auth.config.web.session_ttl), path=home,
                        httponly=True, samesite="strict", secure=bool(request.state.secure))  # fmt: skip
    return response


async def logout(request: Request, web: Web) -> Response:
    await web.auth.end(request.state.secret)
    home = request.state.base
    response = RedirectResponse(f"{request.state.web_root}/", status_code=303)
    response.delete_cookie(COOKIE, path=home, httponly=True, samesite="strict")
    return response


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q.get(k, "")[:100] for k in ("route", "requester", "age", "kind")}


async def _inbox_rows(request: Request, web: Web) -> tuple[list[ApprovalRequest], dict[str, str], list[str]]:
    """The pending requests this approver may decide now, newest first, filtered."""
    session = session_of(request)
    assert session is not None
    f = _filters(request)
    older = AGES.get(f["age"], 0.0)
    now = web.clock()
    await web.channels.service.sweep()  # deadlines that passed show as expired, not waiting
    mine = [r for r in await pending_for(web.channels.service.store, session.approver, 5000)
            if web.channels.approver_of(r, session.approver) is not None]  # fmt: skip
    routes = sorted({r.route for r in mine})
    rows = [
        r for r in mine
        if (not f["route"] or r.route == f["route"])
        and (not f["requester"] or f["requester"].lower() in r.requested_by.lower())
        and (not older or now - r.created_at >= older)
        and (not f["kind"] or (f["kind"] == "question") == r.is_question)
    ]  # fmt: skip
    return rows, f, routes


async def inbox(request: Request, web: Web) -> Response:
    rows, f, routes = await _inbox_rows(request, web)
    return page(request, web, "inbox.html", rows=rows[:INBOX_LIMIT], total=len(rows), filters=f, routes=routes,
                query=request.url.query)  # fmt: skip


async def inbox_rows(request: Request, web: Web) -> Response:
    rows, _, _ = await _inbox_rows(request, web)
    response = page(request, web, "_inbox_rows.html", rows=rows[:INBOX_LIMIT], total=len(rows))
    response.headers["X-Count"] = str(len(rows))
    return response


async def events(request: Request, web: Web) -> Response:
    closed = asyncio.Event()

    secret = request.state.secret

    async def body() -> Any:
        async for chunk in web.hub.stream(closed):
            # A stream outlives nothing: it ends with its session (signed out, revoked, expired).
            if await request.is_disconnected() or await web.auth.session(secret) is None:
                closed.set()
                return
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip


def routes(web: Web) -> list[Route]:
    return [
        Route("/login", public(web, login_form), methods=["GET"]),
        Route("/login", public(web, login), methods=["POST"]),
        Route("/logout", posting(web, logout), methods=["POST"]),
        Route("/", signed_in(web, inbox), methods=["GET"]),
        Route("/inbox/rows", signed_in(web, inbox_rows), methods=["GET"]),
        Route("/events", signed_in(web, events), methods=["GET"]),
    ]
