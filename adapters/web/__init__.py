"""The web inbox: one more channel on the core's seam, served by ``signoff serve`` at ``/web``.

Server-rendered HTML (Jinja2, autoescaped) with a little plain JavaScript from
``static/app.js`` (live updates over server-sent events, keyboard shortcuts); no inline
script anywhere, so the Content-Security-Policy can forbid it. Every decision goes through
the same ``ChannelService`` calls as Telegram and Slack, with ``via = web``; who may see
and decide what is the core's rule, for the signed-in approver (``server/web_auth.py``).
"""

from __future__ import annotations

from importlib import resources

from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from signoff.server.channels import WEB, ChannelService
from signoff.server.service import ApprovalService
from signoff.server.web_auth import WebAuth

from . import grants_page, history, overview, pages, request_page
from .guard import WebGuard
from .live import Hub
from .render import Web


def build_web(service: ApprovalService) -> tuple[ASGIApp, ASGIApp]:
    """The ASGI app to mount at ``/web``, and the one that answers ``/web`` itself (a redirect to
    ``/web/``, behind the same guard: headers, host check)."""
    auth = WebAuth(service.store, service.config, service.clock)
    channels = ChannelService(service, WEB)
    web = Web(channels, auth, Hub(channels))
    static = StaticFiles(directory=str(resources.files("signoff.adapters.web") / "static"))
    # Each page module brings its own routes.
    routes = [*pages.routes(web), *request_page.routes(web), *history.routes(web), *grants_page.routes(web),
              *overview.routes(web), Mount("/static", app=static)]  # fmt: skip
    public = service.config.web.public_url
    home = WebGuard(RedirectResponse("/web/", status_code=308), auth, public)
    return WebGuard(Starlette(routes=routes), auth, public), home


__all__ = ["build_web"]
