"""The request page: everything a chat prompt shows and more, and the decisions (issue 14)."""

from __future__ import annotations

from starlette.routing import Route

from .render import Web


def routes(web: Web) -> list[Route]:
    return []
