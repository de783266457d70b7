"""Grants: live and ended, what each covers, Revoke (issue 14).

The list shows the grants made from requests this approver may see, or by them
(``web_queries.grants_seen``). Revoke goes through ``ChannelService.revoke``: the core
decides who may (the approver who made it or an approver of its route), audits a refusal,
and says whether the grant was still live.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from signoff.server import web_queries as wq
from signoff.server.errors import NotAllowedError

from .pages import posting, signed_in
from .render import Web, page, session_of

NOTICES = {"revoked": "Grant revoked: it covers nothing from now on.", "ended": "That grant had already ended."}


def _approver(request: Request) -> str:
    session = session_of(request)
    assert session is not None
    return session.approver


async def grants(request: Request, web: Web) -> Response:
    live, ended = await wq.grants_seen(web.channels, _approver(request))
    notice = NOTICES.get(request.query_params.get("done", ""))
    return page(request, web, "grants.html", live=live, ended=ended, notice=notice)


async def revoke(request: Request, web: Web) -> Response:
    grant = await web.channels.grant(str(request.path_params["grant_id"])[:100])
    if grant is None:
        return page(request, web, "error.html", status_code=404, message="There is no such grant.")
    try:
        revoked = await web.channels.revoke(grant, _approver(request))
    except NotAllowedError as exc:
        return page(request, web, "error.html", status_code=403, message=str(exc))
    return RedirectResponse(
        f"{request.state.base}/grants?{urlencode({'done': 'revoked' if revoked else 'ended'})}", status_code=303
    )


def routes(web: Web) -> list[Route]:
    return [
        Route("/grants", signed_in(web, grants), methods=["GET"]),
        Route("/grants/{grant_id}/revoke", posting(web, revoke), methods=["POST"]),
    ]
