"""The hook's fast path: a tool call that its route decides at once, filed without the full stack.

A Claude Code session runs ``signoff hook`` on every matched tool call, so a call that the
first matching route approves or rejects by itself (``auto``) must not pay for pydantic, the
event loop, aiosqlite, the MCP SDK or Telegram. This files such a call with plain ``sqlite3``
and the compiled configuration (``config_cache``), exactly as ``ApprovalService.request_approval``
would: the same checks (``intake``), the same route (``routing.matches``, first match wins),
the same row (``rows``) written by the same single ``INSERT`` whose triggers write the audit
events and chain them.

Anything else returns None and the caller takes the full path, which decides from scratch:
no compiled config for this exact file, a route that asks a human (or offers grants, or has a
callback), an idempotency key seen before, a database that is new, not yet migrated or not in
WAL mode, or any database error. Nothing here can approve what the full path would not: it
only ever files a request as the first matching route's own ``auto`` outcome.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING, cast

from . import config_cache, queries
from .audit_chain import FIELDS, event_hash
from .dialect import DATABASE_URL_ENV
from .intake import check_new_request
from .models import Actor, ApprovalRequest, RouteSnapshot, Status
from .routing import matches
from .rows import INSERT, dumps, request_row

if TYPE_CHECKING:
    from .config import Match
    from .intake import NewRequest

BUSY_TIMEOUT_S = 10.0  # as db.BUSY_TIMEOUT_MS: a concurrent writer is waited for, not failed on
MIN_SQLITE = (3, 38, 0)


def file_at_once(
    config_arg: str | None, new: NewRequest, identity: str | None, default_identity: str, session: str | None
) -> ApprovalRequest | None:
    """File ``new`` when the first matching route decides it at once; None: take the full path.
    Raises ``RequestError`` for a request the service would refuse (the same check, first)."""
    compiled = config_cache.lookup(config_arg)
    if compiled is None or compiled.db_path is None or os.environ.get(DATABASE_URL_ENV):
        return None  # PostgreSQL: only the full path writes there
    requester = Actor("agent", identity or compiled.stdio_identity or default_identity, "hook")
    encoded = check_new_request(new)  # before anything else, as the service does
    if new.route is not None or new.timeout_seconds is not None or new.callback_url is not None:
        return None
    # config_cache.Matcher reads as config.Match does for routing.matches: the same matching code.
    route = next((r for r in compiled.routes
                  if matches(cast("Match | None", r.match), new.action, requester.name, new.metadata)), None)  # fmt: skip
    if route is None or route.auto is None or route.callback_url is not None or route.snapshot is None:
        return None  # no route (the full path says why), a human decides, or a callback is due
    conn = _open(compiled.db_path)
    if conn is None:
        return None
    try:
        key = new.idempotency_key
        if key is not None and conn.execute(queries.GET_BY_KEY, (requester.name, key)).fetchone() is not None:
            return None  # a retry: the full path returns the earlier request (or refuses other content)
        now = time.time()
        reason = f"route {route.name!r} decides automatically"
        req = ApprovalRequest(
            id="req_" + os.urandom(6).hex(),  # as service._new_id (secrets.token_hex)
            action=new.action,
            summary=new.summary,
            details=new.details,
            metadata=dict(new.metadata),
            route=route.name,
            route_snapshot=cast(RouteSnapshot, route.snapshot),
            approvers=list(route.approvers),
            requested_by=requester.name,
            requested_via=requester.channel,
            claimed_requester=new.claimed_requester,
            idempotency_key=new.idempotency_key,
            content_hash=encoded.content_hash,
            status=Status.APPROVED if route.auto == "approve" else Status.REJECTED,
            on_timeout=route.on_timeout,
            created_at=now,
            expires_at=now + route.timeout,
            decided_at=now,
            decided_by=f"route:{route.name}",
            decided_kind="system",
            decided_via="policy",
            reason=reason,
            session=session,
            cwd=new.cwd,
            action_digest=encoded.action_digest,
        )
        cur = conn.execute(INSERT, request_row(req, encoded.details, encoded.metadata, dumps(route.snapshot)))
        return req if cur.rowcount == 1 else None  # lost a race on the idempotency key: the full path
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _open(path: os.PathLike[str] | str) -> sqlite3.Connection | None:
    """The database, ready to write as ``db.connect`` leaves it; None when only the full path
    should touch it (new, not migrated to this version, not in WAL mode, or unusable)."""
    if sqlite3.sqlite_version_info < MIN_SQLITE or not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return None
    try:
        conn.create_function("signoff_audit_hash", 1 + len(FIELDS), event_hash, deterministic=True)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise sqlite3.DatabaseError("not in WAL mode")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Migrations are applied in order, in one transaction: the newest recorded means all are.
        if conn.execute("SELECT 1 FROM migrations WHERE name = ?", (queries.SCHEMA,)).fetchone() is None:
            raise sqlite3.DatabaseError("not migrated")
    except sqlite3.Error:
        conn.close()
        return None
    return conn
