"""Every query signoff runs against its SQLite file.

``Store`` wraps one aiosqlite connection. Writes go through ``Store.transaction()``: an
in-process lock (the connection is shared by many coroutines) plus ``BEGIN IMMEDIATE``
(the file is shared by many processes). A decision is a compare-and-set on
``status = 'pending'`` written in the same transaction as its audit event, so the first
valid decision wins everywhere and is recorded exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiosqlite

from . import db as dbmod
from . import queries
from .models import Actor, ApprovalRequest, AuditEvent, Status


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no NaN, compact."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a decision attempt did: ``changed`` is False when the request was already final."""

    changed: bool
    request: ApprovalRequest


class Store:
    """The requests, the audit log and the settings in one SQLite file."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._write_lock = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Any) -> AsyncIterator[Store]:
        async with dbmod.connect(path) as conn:
            yield cls(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock, dbmod.transaction(self.conn) as conn:
            yield conn

    # --- reads -------------------------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        async with self.conn.execute(queries.GET_REQUEST, (request_id,)) as cur:
            row = await cur.fetchone()
        return None if row is None else ApprovalRequest.from_row(row)

    async def find_by_key(self, requested_by: str, key: str) -> ApprovalRequest | None:
        async with self.conn.execute(queries.GET_BY_KEY, (requested_by, key)) as cur:
            row = await cur.fetchone()
        return None if row is None else ApprovalRequest.from_row(row)

    async def list_requests(self, *, status: Status | None = None, limit: int = 200) -> list[ApprovalRequest]:
        sql, args = queries.list_requests(status.value if status else None, limit)
        async with self.conn.execute(sql, args) as cur:
            return [ApprovalRequest.from_row(r) async for r in cur]

    async def statuses(self, ids: Iterable[str]) -> dict[str, Status]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        async with self.conn.execute(f"SELECT id, status FROM requests WHERE id IN ({marks})", ids) as cur:
            return {r[0]: Status(r[1]) async for r in cur}

    async def next_deadline(self) -> float | None:
        async with self.conn.execute("SELECT min(expires_at) FROM requests WHERE status = 'pending'") as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def audit(self, *, since: float | None = None, request_id: str | None = None) -> list[AuditEvent]:
        sql, args = queries.audit(since, request_id)
        async with self.conn.execute(sql, args) as cur:
            return [AuditEvent.from_row(r) async for r in cur]

    async def data_version(self) -> int:
        """Changes whenever another connection (in any process) commits to the file."""
        async with self.conn.execute("PRAGMA data_version") as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    # --- writes ------------------------------------------------------------------------

    async def insert(
        self, req: ApprovalRequest, events: list[tuple[str, Actor, dict[str, Any] | None]]
    ) -> ApprovalRequest:
        """Insert ``req`` and its audit events; with an idempotency key already used, return the earlier request."""
        async with self.transaction() as conn:
            if req.idempotency_key is not None:
                async with conn.execute(queries.GET_BY_KEY, (req.requested_by, req.idempotency_key)) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    return ApprovalRequest.from_row(row)
            await conn.execute(
                f"INSERT INTO requests ({queries.REQUEST_COLUMNS}) VALUES ({','.join('?' * 20)})",
                (
                    req.id, req.action, req.summary, None if req.details is None else dumps(req.details),
                    dumps(req.metadata), req.route, dumps(req.route_snapshot), dumps(req.approvers),
                    req.requested_by, req.claimed_requester, req.idempotency_key, req.content_hash,
                    req.status.value, req.on_timeout, req.created_at, req.expires_at, req.decided_at,
                    req.decided_by, req.decided_via, req.reason,
                ),
            )  # fmt: skip
            for event, actor, data in events:
                await self._audit(conn, req, event, actor, req.created_at, data)
        return req

    async def decide(
        self, request_id: str, status: Status, actor: Actor, at: float, reason: str | None
    ) -> Decision | None:
        """Compare-and-set ``pending`` → ``status``; ``None`` if no such request."""
        async with self.transaction() as conn:
            cur = await conn.execute(
                "UPDATE requests SET status = ?, decided_at = ?, decided_by = ?, decided_via = ?, reason = ? "
                "WHERE id = ? AND status = 'pending'",
                (status.value, at, actor.name, actor.channel, reason, request_id),
            )
            changed = cur.rowcount == 1
            async with conn.execute(queries.GET_REQUEST, (request_id,)) as c:
                row = await c.fetchone()
            if row is None:
                return None
            req = ApprovalRequest.from_row(row)
            if changed:
                await self._audit(conn, req, status.value, actor, at, {"reason": reason} if reason else None)
        return Decision(changed, req)

    async def expire_due(self, now: float) -> list[ApprovalRequest]:
        """Apply ``on_timeout`` to every pending request whose deadline has passed."""
        timeout = Actor("system", "timeout", "scheduler")
        async with self.transaction() as conn:
            sql = (
                "UPDATE requests SET status = CASE on_timeout WHEN 'approve' THEN 'approved' ELSE 'expired' END, "
                "decided_at = ?, decided_by = 'timeout', decided_via = 'scheduler' "
                f"WHERE status = 'pending' AND expires_at <= ? RETURNING {queries.REQUEST_COLUMNS}"
            )
            async with conn.execute(sql, (now, now)) as cur:
                done = [ApprovalRequest.from_row(r) async for r in cur]
            for req in done:
                await self._audit(conn, req, req.status.value, timeout, now, {"on_timeout": req.on_timeout})
        return done

    async def setting(self, key: str, make: Any) -> str:
        """Return the stored setting ``key``, storing ``make()`` first if it has none (once, across processes)."""
        async with self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        if row is not None:
            return str(row[0])
        async with self.transaction() as conn:
            await conn.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, make()))
            async with conn.execute("SELECT value FROM settings WHERE key = ?", (key,)) as cur:
                row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    @staticmethod
    async def _audit(
        conn: aiosqlite.Connection,
        req: ApprovalRequest,
        event: str,
        actor: Actor,
        at: float,
        data: dict[str, Any] | None,
    ) -> None:
        await conn.execute(
            "INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (at, event, req.id, actor.kind, actor.name, actor.channel, dumps(req.route_snapshot), req.content_hash,
             None if data is None else dumps(data)),
        )  # fmt: skip
