"""Templates (Jinja2, autoescaped: every string an agent wrote reaches the page as text) and
what every page shares: the context (``Web``), the signed-in approver, the CSRF token."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from signoff.server.channels import ChannelService
from signoff.server.durations import humanize_delta
from signoff.server.models import iso
from signoff.server.web_auth import WebAuth, WebSession

from .guard import RateLimit
from .live import Hub


def _env() -> jinja2.Environment:
    folder = resources.files("signoff.adapters.web") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,  # every template, whatever its name: agent text is never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = iso
    return env


TEMPLATES = _env()


@dataclass
class Web:
    """What the pages need: the core as the web channel sees it, sign-in, the live hub."""

    channels: ChannelService
    auth: WebAuth
    hub: Hub
    sign_ins: RateLimit = field(default_factory=lambda: RateLimit(10, 60.0))  # failed sign-ins per address a minute

    @property
    def clock(self) -> Any:
        return self.channels.clock


def session_of(request: Request) -> WebSession | None:
    session: WebSession | None = request.state.session
    return session


def page(request: Request, web: Web, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render ``template`` with what every page shows (who is signed in, the CSRF token, now)."""
    now = web.clock()
    session = session_of(request)

    def delta(ts: float | None) -> str:
        return "" if ts is None else humanize_delta(ts - now)

    body = TEMPLATES.get_template(template).render(
        session=session,
        csrf=session.csrf if session else "",
        now=now,
        delta=delta,
        base=request.state.base,
        path=request.url.path,
        **values,
    )
    return HTMLResponse(body, status_code=status_code)
