"""Grants: live and ended, what each covers, Revoke (issue 14)."""

from __future__ import annotations

from starlette.routing import Route

from .render import Web


def routes(web: Web) -> list[Route]:
    return []
