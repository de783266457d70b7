"""Every query signoff runs against its SQLite file.

``Store`` wraps one connection (aiosqlite, or psycopg: see ``pg``). Each state change is a single statement —
an ``INSERT … ON CONFLICT DO NOTHING`` for a new request, an ``UPDATE … WHERE status =
'pending' RETURNING …`` compare-and-set for a decision or an expiry — and the triggers of
migration 0001 write its audit event inside that same statement. So the first valid
decision wins across processes, and each one is recorded exactly once. Multi-statement
writes go through ``Store.transaction()`` (``BEGIN IMMEDIATE``). The connection is
shared by many coroutines, so every write holds an in-process lock: a lone statement must
never run inside another coroutine's open transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from . import db as dbmod
from . import queries
from .conn import Conn
from .dialect import is_url
from .models import Actor, ApprovalRequest, AuditEvent, Decision, Status
from .rows import INSERT, dumps, request_row

__all__ = ["AUDIT_EVENT", "DECIDE", "INSERT", "Decision", "Store", "dumps", "request_row"]

# The last two values are the edited details' JSON and their action digest (both None but
# for an approval with changes): written by the statement that decides, so its audit event has them.
DECIDE = (
    "UPDATE requests SET status = ?, decided_at = ?, decided_by = ?, decided_kind = ?, decided_via = ?, reason = ?, "
    "edited_details = ?, edited_digest = ? "
    f"WHERE id = ? AND status = 'pending' RETURNING {queries.REQUEST_COLUMNS}"
)
# A question's answer: the same compare-and-set, only on a question (the table's CHECKs agree).
_ANSWER = (
    "UPDATE requests SET status = 'answered', answer = ?, decided_at = ?, decided_by = ?, decided_kind = ?, "
    f"decided_via = ? WHERE id = ? AND status = 'pending' AND kind = 'question' RETURNING {queries.REQUEST_COLUMNS}"
)
_EXPIRE = (
    "UPDATE requests SET status = CASE on_timeout WHEN 'approve' THEN 'approved' ELSE 'expired' END, "
    "decided_at = ?, decided_by = 'timeout', decided_kind = 'system', decided_via = 'scheduler' "
    f"WHERE status = 'pending' AND expires_at <= ? RETURNING {queries.REQUEST_COLUMNS}"
)

# An audit event that is not a change of status, on one request:
# (at, event, actor_kind, actor, channel, data JSON, request_id).
AUDIT_EVENT = (
    "INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, "
    "action_digest, data) SELECT ?, ?, id, ?, ?, ?, route_snapshot, content_hash, action_digest, ? "
    "FROM requests WHERE id = ?"
)


class Store:
    """The requests, the audit log and the settings: in one SQLite file, or in PostgreSQL."""

    def __init__(self, conn: Conn, listener: Any = None, reads: Any = None) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self._write_lock = asyncio.Lock()
        self._listener = listener  # PostgreSQL: a pg_listener.Listener, the cross-instance wake-up
        self._reads = reads  # what reads go through: a second SQLite connection, or PostgreSQL's pool
        self._tx_task: asyncio.Task[Any] | None = None  # the task whose transaction is open

    @classmethod
    @asynccontextmanager
    async def open(cls, where: Path | str, *, pool_size: int = 4) -> AsyncIterator[Store]:
        """Open the store at ``where``: a SQLite file's path, or a PostgreSQL URL (with ``pool_size``
        connections for reads, one for writes and one that listens)."""
        from . import pg, pg_listener

        if not is_url(where):
            async with dbmod.connect(Path(where)) as conn, dbmod.reader(Path(where)) as reader:
                yield cls(conn, reads=reader)
            return
        assert isinstance(where, str)
        async with pg.connect(where) as pconn:
            listener = pg_listener.Listener(where, pconn.channel)
            reads = pg.ReadPool(where, pool_size, pconn.schema)
            task = asyncio.create_task(listener.run(), name="signoff-pg-listener")
            try:
                await reads.open()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pg.CONNECT_TIMEOUT):
                        await listener.ready.wait()
                yield cls(pconn, listener, reads)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await reads.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` for writes of several statements."""
        async with self._write_lock, dbmod.transaction(self.conn) as conn:
            self._tx_task = asyncio.current_task()
            try:
                yield conn
            finally:
                self._tx_task = None

    async def _one(self, sql: str, args: Iterable[Any]) -> Any:
        rows = list(await self.conn.execute_fetchall(sql, args))
        return rows[0] if rows else None

    async def _select(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Rows of a read: inside this task's own transaction from its connection (it sees its
        writes); from anywhere else through the read connection(s), which see only what is
        committed — never another coroutine's decision that may yet be rolled back."""
        if self._reads is None or (self._tx_task is not None and asyncio.current_task() is self._tx_task):
            return list(await self.conn.execute_fetchall(sql, args))
        return list(await self._reads.select(sql, args))

    async def _first(self, sql: str, args: Iterable[Any] = ()) -> Any:
        rows = await self._select(sql, args)
        return rows[0] if rows else None

    # --- reads -------------------------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        row = await self._first(queries.GET_REQUEST, (request_id,))
        return None if row is None else ApprovalRequest.from_row(row)

    async def find_by_key(self, requested_by: str, key: str, *, after_writes: bool = False) -> ApprovalRequest | None:
        """The request filed with ``key``. ``after_writes``: read on the statement connection, after
        any write already under way there (a filing whose caller was cancelled still lands first)."""
        if after_writes:
            row = await self._one(queries.GET_BY_KEY, (requested_by, key))
        else:
            row = await self._first(queries.GET_BY_KEY, (requested_by, key))
        return None if row is None else ApprovalRequest.from_row(row)

    async def list_requests(self, *, status: Status | None = None, limit: int = 200) -> list[ApprovalRequest]:
        sql, args = queries.list_requests(status.value if status else None, limit)
        return [ApprovalRequest.from_row(r) for r in await self._select(sql, args)]

    async def statuses(self, ids: Iterable[str]) -> dict[str, Status]:
        ids = list(ids)
        if not ids:
            return {}
        sql = f"SELECT id, status FROM requests WHERE id IN ({','.join('?' * len(ids))})"
        return {r[0]: Status(r[1]) for r in await self._select(sql, ids)}

    async def next_deadline(self) -> float | None:
        """The earliest deadline of a pending request (None when nothing is pending)."""
        row = await self._first("SELECT min(expires_at) FROM requests WHERE status = 'pending'")
        return None if row is None or row[0] is None else float(row[0])

    async def audit(self, *, since: float | None = None, request_id: str | None = None) -> list[AuditEvent]:
        sql, args = queries.audit(since, request_id)
        return [AuditEvent.from_row(r) for r in await self._select(sql, args)]

    async def data_version(self) -> int:
        """Changes whenever another connection (in any process) commits to the file. On PostgreSQL:
        whenever any instance files or decides a request (its notifications), or, while the
        listener is reconnecting, whenever the audit log grows."""
        if self._listener is None:
            return int((await self._one("PRAGMA data_version", ()))[0])
        if self._listener.healthy:
            return int(self._listener.version)
        return -1 - int((await self._first("SELECT coalesce(max(seq), 0) FROM audit"))[0])

    @property
    def notifications(self) -> str | None:
        """PostgreSQL: "listening" while this instance hears the others' commits at once, "polling"
        while its listener reconnects; None on SQLite (processes look at the file's version)."""
        if self._listener is None:
            return None
        return "listening" if self._listener.healthy else "polling"

    async def changed(self, seen: int | None, within: float) -> None:
        """Return after ``within`` seconds, or as soon as ``data_version()`` differs from ``seen``
        because another instance committed (PostgreSQL's notifications; SQLite just waits)."""
        listener = self._listener
        if listener is None or not listener.healthy:
            await asyncio.sleep(within)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while listener.healthy and listener.version == seen:
                    listener.changed.clear()
                    await listener.changed.wait()

    # --- writes ------------------------------------------------------------------------

    async def insert(
        self, req: ApprovalRequest, details_json: str | None, metadata_json: str, route_snapshot_json: str
    ) -> ApprovalRequest:
        """Insert ``req``, whose JSON columns come serialized (its audit events come from the trigger).
        With an idempotency key this requester already used, nothing is written and the
        earlier request is returned."""
        row = request_row(req, details_json, metadata_json, route_snapshot_json)
        async with self._write_lock:
            cur = await self.conn.execute(INSERT, row)
        if cur.rowcount == 1:
            return req
        assert req.idempotency_key is not None  # the only constraint that can conflict
        earlier = await self.find_by_key(req.requested_by, req.idempotency_key)
        assert earlier is not None
        return earlier

    async def decide(
        self, request_id: str, status: Status, actor: Actor, at: float, reason: str | None
    ) -> Decision | None:
        """Compare-and-set ``pending`` → ``status``; ``None`` if there is no such request."""
        args = (status.value, at, actor.name, actor.kind, actor.channel, reason, None, None, request_id)
        async with self._write_lock:
            row = await self._one(DECIDE, args)
        if row is not None:
            return Decision(True, ApprovalRequest.from_row(row))
        current = await self.get(request_id)
        return None if current is None else Decision(False, current)

    async def answer(self, request_id: str, answer: str, actor: Actor, at: float) -> Decision | None:
        """Compare-and-set a pending question to ``answered``; ``None`` if there is no such request."""
        async with self._write_lock:
            row = await self._one(_ANSWER, (answer, at, actor.name, actor.kind, actor.channel, request_id))
        if row is not None:
            return Decision(True, ApprovalRequest.from_row(row))
        current = await self.get(request_id)
        return None if current is None else Decision(False, current)

    async def expire_due(self, now: float) -> list[ApprovalRequest]:
        """Apply ``on_timeout`` to every pending request whose deadline has passed."""
        async with self._write_lock:
            rows = await self.conn.execute_fetchall(_EXPIRE, (now, now))
        return [ApprovalRequest.from_row(r) for r in rows]

    async def read(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Run a query of an adapter's own (one that writes nothing); return all rows."""
        return await self._select(sql, args)

    async def write(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Run one writing statement of an adapter's own (under the write lock); return its rows."""
        async with self._write_lock:
            return list(await self.conn.execute_fetchall(sql, args))

    async def record(self, request_id: str, event: str, actor: Actor, data: dict[str, Any] | None = None) -> None:
        """Append an audit event that is not a change of status (e.g. a refused button press)."""
        await self.write(
            AUDIT_EVENT,
            (
                time.time(),
                event,
                actor.kind,
                actor.name,
                actor.channel,
                None if data is None else dumps(data),
                request_id,
            ),
        )

    async def save_setting(self, key: str, value: str) -> None:
        await self.write(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def setting(self, key: str, make: Callable[[], str]) -> str:
        """The stored setting ``key``, storing ``make()`` first if there is none (once, across processes)."""
        row = await self._first("SELECT value FROM settings WHERE key = ?", (key,))
        if row is None:
            async with self._write_lock:
                await self.conn.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, make())
                )
            row = await self._first("SELECT value FROM settings WHERE key = ?", (key,))
        return str(row[0])
