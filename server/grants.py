"""Grants: an approver's "approve requests like this one for a while", so fewer prompts mean more.

A grant is made by approving a request with one of its route's ``grant_options`` ("30m",
"session"). It covers later requests with the same route, action, requester and working
directory (and, for a "session" grant, the same session), and — where the route sets
``grant_scope`` — whose ``details[argument]`` is covered by the pattern the granting request
matched, word by word for commands and segment by segment for paths (``scopes.py``), and
whose other arguments equal the granting request's (but ``FREE_ARGUMENTS``): a grant covers
only what its approver saw. At every use the grant is checked against the current
configuration: its granter must still be an approver of the route, the route must still
offer that grant and the same scope; otherwise the grant is dead from then on (audited
once). Grants end at their time, after ``grant_max_uses`` uses, or when revoked; each use is
one compare-and-set on ``uses``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from .config import GRANT_SESSION, Config, grant_seconds
from .conn import Conn
from .errors import NotAllowedError, NotFoundError
from .grant_models import _COLUMNS, _FIELDS, Grant, covers, scope_pattern
from .models import ApprovalRequest
from .routing import resolve
from .store import AUDIT_EVENT, Store, dumps

SESSION_GRANT_MAX = 12 * 3600.0  # a "session" grant also ends after this, whatever the session does
_LIVE = "revoked_at IS NULL AND dead_at IS NULL AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)"


FREE_ARGUMENTS = frozenset({"description", "timeout"})


def _others(details: Any, argument: str) -> Any:
    if not isinstance(details, dict):
        return details
    return {k: v for k, v in details.items() if k != argument and k not in FREE_ARGUMENTS}


async def _same_other_arguments(conn: Conn, grant: Grant, req: ApprovalRequest) -> bool:
    if grant.argument is None:
        return True  # the route grants any arguments: the operator set no grant_scope
    rows = list(await conn.execute_fetchall("SELECT details FROM requests WHERE id = ?", (grant.from_request,)))
    granted = json.loads(rows[0][0]) if rows and rows[0][0] is not None else None
    # Compared as canonical JSON: in Python True == 1, and a grant must not confuse them.
    return dumps(_others(granted, grant.argument)) == dumps(_others(req.details, grant.argument))


def dead_because(config: Config, grant: Grant) -> str | None:
    """Why ``grant`` no longer applies under the current ``config`` (None while it does)."""
    route = config.route(grant.route)
    if route is None or route.auto is not None:
        return f"route {grant.route!r} is gone or no longer asks a human"
    if not route.grant_options:
        return f"route {grant.route!r} no longer offers grants"
    if grant.session is not None and GRANT_SESSION not in route.grant_options:
        return f"route {grant.route!r} no longer offers session grants"
    if grant.session is None:
        longest = max((grant_seconds(o) or 0.0 for o in route.grant_options if o != GRANT_SESSION), default=0.0)
        if grant.expires_at - grant.created_at > longest + 1:
            return f"route {grant.route!r} no longer offers grants this long"
    everyone = resolve(config, route).everyone
    if everyone and grant.created_by not in everyone:
        return f"{grant.created_by} is no longer an approver of route {grant.route!r}"
    scope = route.grant_scope
    if grant.argument is None:
        if scope is not None:
            return f"route {grant.route!r} now limits grants to {scope.argument}"
    elif scope is None or scope.argument != grant.argument or grant.pattern not in scope.patterns:
        return f"route {grant.route!r} no longer offers the scope {grant.pattern!r}"
    if route.grant_max_uses is not None and grant.uses >= route.grant_max_uses:
        return f"route {grant.route!r} now allows at most {route.grant_max_uses} uses"
    return None


async def take(conn: Conn, config: Config, req: ApprovalRequest, now: float) -> Grant | None:
    """Use a live grant that covers ``req`` (inside the caller's transaction), or None. A grant
    the current configuration no longer supports is marked dead and audited, once."""
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM grants WHERE route = ? AND action = ? AND requested_by = ? AND {_LIVE} "
        "ORDER BY created_at",
        (req.route, req.action, req.requested_by, now),
    )
    for grant in (Grant.from_row(r) for r in rows):
        if not covers(grant, req) or not await _same_other_arguments(conn, grant, req):
            continue
        why = dead_because(config, grant)
        if why is not None:
            cur = await conn.execute(
                "UPDATE grants SET dead_at = ?, dead_reason = ? WHERE id = ? AND dead_at IS NULL", (now, why, grant.id)
            )
            if cur.rowcount == 1:
                await conn.execute(AUDIT_EVENT, (now, "grant_dead", "system", "grants", "policy",
                                                 dumps({"grant": grant.id, "why": why}), grant.from_request))  # fmt: skip
            continue
        cur = await conn.execute(f"UPDATE grants SET uses = uses + 1 WHERE id = ? AND {_LIVE}", (grant.id, now))
        if cur.rowcount == 1:
            return grant
    return None


async def create(
    store: Store,
    req: ApprovalRequest,
    option: str,
    approver: str,
    now: float,
    notice: tuple[str, str] | None = None,
    channel: str = "telegram",
) -> Grant:
    """A grant from ``approver``'s approval of ``req`` with ``option``; audited on ``req``.
    ``notice``: (channel, address) where its notice (with the count of uses) is about to be sent."""
    if option not in (req.route_snapshot.get("grant_options") or []):
        raise NotAllowedError(f"route {req.route!r} does not offer a grant of {option!r}")
    possible, argument, pattern = scope_pattern(req)
    if not possible:
        raise NotAllowedError(f"request {req.id}'s arguments are outside the route's grant_scope; no grant is made")
    seconds = grant_seconds(option)
    if seconds is None and req.session is None:
        raise NotAllowedError(f"request {req.id} came without an MCP session; a session grant cannot be made")
    grant = Grant(
        id="grt_" + secrets.token_hex(6),
        route=req.route,
        action=req.action,
        requested_by=req.requested_by,
        session=req.session if seconds is None else None,
        argument=argument,
        pattern=pattern,
        from_request=req.id,
        created_at=now,
        created_by=approver,
        expires_at=now + (SESSION_GRANT_MAX if seconds is None else seconds),
        max_uses=req.route_snapshot.get("grant_max_uses"),
        uses=0,
        revoked_at=None,
        revoked_by=None,
        notice_channel=None if notice is None else notice[0],
        notice_address=None if notice is None else notice[1],
        notice_message=None,
        cwd=req.cwd,
    )
    async with store.transaction() as conn:
        await conn.execute(f"INSERT INTO grants ({_COLUMNS}) VALUES ({','.join('?' * len(_FIELDS))})",
                           tuple(getattr(grant, f) for f in _FIELDS))  # fmt: skip
        data = {"grant": grant.id, "option": option, "scope": grant.scope(), "expires_at": grant.expires_at}
        await conn.execute(AUDIT_EVENT, (now, "granted", "human", approver, channel, dumps(data), req.id))
    return grant


async def get(store: Store, grant_id: str) -> Grant:
    rows = await store.read(f"SELECT {_COLUMNS} FROM grants WHERE id = ?", (grant_id,))
    if not rows:
        raise NotFoundError(f"unknown grant {grant_id!r}; `signoff grants` lists them")
    return Grant.from_row(rows[0])


async def listing(store: Store, now: float, *, everything: bool = False) -> list[Grant]:
    """Live grants (with ``everything``, ended ones too), newest first."""
    where = "" if everything else f"WHERE {_LIVE}"
    rows = await store.read(
        f"SELECT {_COLUMNS} FROM grants {where} ORDER BY created_at DESC", () if everything else (now,)
    )
    return [Grant.from_row(r) for r in rows]


async def revoke(store: Store, grant_id: str, by: str, channel: str, now: float) -> bool:
    """End a grant now; False if it had already ended. Audited on the request it came from."""
    grant = await get(store, grant_id)
    async with store.transaction() as conn:
        cur = await conn.execute(
            "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL", (now, by, grant_id)
        )
        if cur.rowcount == 0:
            return False
        await conn.execute(AUDIT_EVENT, (now, "grant_revoked", "human", by, channel, dumps({"grant": grant_id}),
                                         grant.from_request))  # fmt: skip
    return True


async def set_notice(store: Store, grant_id: str, message: str) -> None:
    """The grant's notice was sent as ``message`` (at the place ``create`` was given)."""
    await store.write("UPDATE grants SET notice_message = ? WHERE id = ?", (message, grant_id))


async def made_from(store: Store, request_id: str) -> Grant | None:
    """The grant made by approving ``request_id``, if one was."""
    rows = await store.read(f"SELECT {_COLUMNS} FROM grants WHERE from_request = ?", (request_id,))
    return Grant.from_row(rows[0]) if rows else None
