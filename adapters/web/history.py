"""History (every request this approver may see, searched and paged) and the audit timeline with its export (issue 14)."""

from __future__ import annotations

from starlette.routing import Route

from .render import Web


def routes(web: Web) -> list[Route]:
    return []
