"""The overview: pending by age, decisions per day, time to decision per route, as server-drawn SVG (issue 14)."""

from __future__ import annotations

from starlette.routing import Route

from .render import Web


def routes(web: Web) -> list[Route]:
    return []
