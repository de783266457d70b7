"""Grants: an approver's "approve requests like this one for a while", so fewer prompts mean more.

A grant is made by approving a request with one of its route's ``grant_options`` ("30m",
"session"). It covers later requests with the same route, action and requester (and, for a
"session" grant, the same MCP session), and — where the route sets ``grant_scope`` — whose
``details[argument]`` matches the pattern the granting request matched. A value with a shell
control character (``; & | ` $ < > ( )`` or a line break) is never covered, so a grant for
``npm test*`` does not cover ``npm test && curl …``. Grants end at their time, after
``grant_max_uses`` uses, or when revoked; each use is one compare-and-set on ``uses``.
"""

from __future__ import annotations

import fnmatch
import re
import secrets
from dataclasses import dataclass
from typing import Any

import aiosqlite

from .config import GRANT_SESSION, grant_seconds
from .errors import NotAllowedError, NotFoundError
from .models import ApprovalRequest
from .store import AUDIT_EVENT, Store, dumps

SESSION_GRANT_MAX = 12 * 3600.0  # a "session" grant also ends after this, whatever the session does
_UNSAFE = re.compile(r"[;&|`$<>()\n\r]")
_COLUMNS = ("id, route, action, requested_by, session, argument, pattern, from_request, created_at, created_by, "
            "expires_at, max_uses, uses, revoked_at, revoked_by, chat_id, message_id")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    route: str
    action: str
    requested_by: str
    session: str | None
    argument: str | None
    pattern: str | None
    from_request: str
    created_at: float
    created_by: str
    expires_at: float
    max_uses: int | None
    uses: int
    revoked_at: float | None
    revoked_by: str | None
    chat_id: int | None
    message_id: int | None

    @classmethod
    def from_row(cls, row: Any) -> Grant:
        return cls(*(row[i] for i in range(17)))

    def live(self, now: float) -> bool:
        return (
            self.revoked_at is None and self.expires_at > now and (self.max_uses is None or self.uses < self.max_uses)
        )

    def scope(self) -> str:
        """What it covers, in a line: ``Bash "npm test*" from claude-code (this session)``."""
        text = self.action
        if self.pattern is not None:
            text += f" {self.argument} “{self.pattern}”"
        text += f" from {self.requested_by}"
        return text + (" (its session)" if self.session else "")


def _argument(details: Any, key: str) -> str | None:
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, str) else None


def scope_pattern(req: ApprovalRequest) -> tuple[bool, str | None, str | None]:
    """(whether a grant can be made from ``req``, its argument, its pattern)."""
    scope = req.route_snapshot.get("grant_scope")
    if not scope:
        return True, None, None
    value = _argument(req.details, scope["argument"])
    if value is None or _UNSAFE.search(value):
        return False, None, None
    pattern = next((p for p in scope["patterns"] if fnmatch.fnmatchcase(value, p)), None)
    return pattern is not None, scope["argument"], pattern


def options(req: ApprovalRequest) -> list[str]:
    """The grant options a prompt for ``req`` offers (none when its arguments cannot be scoped)."""
    opts = list(req.route_snapshot.get("grant_options") or [])
    if not opts or not scope_pattern(req)[0]:
        return []
    return [o for o in opts if o != GRANT_SESSION or req.session is not None]


def covers(grant: Grant, req: ApprovalRequest) -> bool:
    if (grant.route, grant.action, grant.requested_by) != (req.route, req.action, req.requested_by):
        return False
    if grant.session is not None and grant.session != req.session:
        return False
    if grant.argument is None or grant.pattern is None:
        return True
    value = _argument(req.details, grant.argument)
    return value is not None and not _UNSAFE.search(value) and fnmatch.fnmatchcase(value, grant.pattern)


async def take(conn: aiosqlite.Connection, req: ApprovalRequest, now: float) -> Grant | None:
    """Use a live grant that covers ``req`` (inside the caller's transaction), or None."""
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM grants WHERE route = ? AND action = ? AND requested_by = ? AND revoked_at IS NULL "
        "AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses) ORDER BY created_at",
        (req.route, req.action, req.requested_by, now),
    )
    for grant in (Grant.from_row(r) for r in rows):
        if not covers(grant, req):
            continue
        cur = await conn.execute(
            "UPDATE grants SET uses = uses + 1 WHERE id = ? AND revoked_at IS NULL AND expires_at > ? "
            "AND (max_uses IS NULL OR uses < max_uses)",
            (grant.id, now),
        )
        if cur.rowcount == 1:
            return grant
    return None


async def create(
    store: Store, req: ApprovalRequest, option: str, approver: str, now: float, chat_id: int | None = None
) -> Grant:
    """A grant from ``approver``'s approval of ``req`` with ``option``; audited on ``req``.
    ``chat_id``: where its notice (with the count of uses) is about to be sent."""
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
        chat_id=chat_id,
        message_id=None,
    )
    async with store.transaction() as conn:
        await conn.execute(f"INSERT INTO grants ({_COLUMNS}) VALUES ({','.join('?' * 17)})",
                           tuple(getattr(grant, f.strip()) for f in _COLUMNS.split(",")))  # fmt: skip
        data = {"grant": grant.id, "option": option, "scope": grant.scope(), "expires_at": grant.expires_at}
        await conn.execute(AUDIT_EVENT, (now, "granted", "human", approver, "telegram", dumps(data), req.id))
    return grant


async def get(store: Store, grant_id: str) -> Grant:
    rows = await store.read(f"SELECT {_COLUMNS} FROM grants WHERE id = ?", (grant_id,))
    if not rows:
        raise NotFoundError(f"unknown grant {grant_id!r}; `signoff grants` lists them")
    return Grant.from_row(rows[0])


async def listing(store: Store, now: float, *, everything: bool = False) -> list[Grant]:
    """Live grants (with ``everything``, ended ones too), newest first."""
    where = (
        "" if everything else "WHERE revoked_at IS NULL AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)"
    )
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


async def set_notice(store: Store, grant_id: str, chat_id: int, message_id: int) -> None:
    await store.write("UPDATE grants SET chat_id = ?, message_id = ? WHERE id = ?", (chat_id, message_id, grant_id))
