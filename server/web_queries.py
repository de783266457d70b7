"""What the web inbox reads beyond the chat channels' needs: history (searched, filtered,
paged over one approver's requests), the audit timeline and its export, grants (issue 14).

Who sees what is decided here, as ``ChannelService.may_see`` decides it for one request: a
*configured* approver sees every request that reaches them, escalation levels included (the
``request_approvers`` table of migration 0011, kept by a trigger, so one approver's history is
one index range), the audit events of those requests, and the grants made from them (or by
them). Anyone else sees nothing.

Paging is by keyset, never ``OFFSET``: a page is the next ``limit`` rows after a cursor (the
last row's ``(created_at, id)``, or an audit event's ``seq``), so page 2000 costs what page 1
does and a row filed meanwhile neither repeats nor skips a row. Text search uses the FTS5
trigram index of migration 0012 (substrings, any case) for terms of three characters or
more, ``LIKE`` for shorter ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from . import audit_chain, audit_export
from .channels import ChannelService
from .dialect import POSTGRESQL
from .grant_models import _COLUMNS as GRANT_COLUMNS
from .grant_models import Grant
from .models import ApprovalRequest, AuditEvent
from .queries import REQUEST_COLUMNS
from .store import Store

PAGE = 50
MAX_PAGE = 200
EXPORT_LIMIT = 100_000  # events in one export; narrow the filter for more
_R_COLUMNS = ", ".join("r." + c.strip() for c in REQUEST_COLUMNS.split(","))
_MINE = (
    "SELECT 1 FROM request_approvers ra WHERE ra.approver = ? AND ra.created_at = r.created_at AND ra.request_id = r.id"
)

csv_header, csv_lines, jsonl_lines = audit_export.csv_header, audit_export.csv_lines, audit_export.jsonl_lines


@dataclass(frozen=True, slots=True)
class Page:
    """One page of rows, newest first, and the cursors of the pages around it (None: no more)."""

    rows: list[Any]
    older: str | None
    newer: str | None


def _viewer(channels: ChannelService, approver: str) -> str | None:
    """The approver a web session may read as: one the current configuration still names."""
    return approver if channels.configured(approver) == approver else None


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


# --- history -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    q: str = ""  # search: action, requester and summary text (substring, any case)
    status: str = ""
    route: str = ""
    requester: str = ""
    since: float | None = None  # created at or after
    until: float | None = None  # created before


def _request_cursor(req: ApprovalRequest) -> str:
    return f"{req.created_at!r}:{req.id}"


def _parse_request_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    at, sep, rid = cursor.partition(":")
    try:
        return (float(at), rid) if sep and rid else None
    except ValueError:
        return None


FEW = 5000  # a search matching at most this many requests is read from its matches, not the approver's range


async def _matches(store: Store, q: str) -> int:
    """How many requests the search ``q`` matches (up to ``FEW + 1``)."""
    sql = "SELECT count(*) FROM (SELECT rowid FROM requests_text WHERE requests_text MATCH ? LIMIT ?)"
    return int((await store.read(sql, (_fts_phrase(q), FEW + 1)))[0][0])


def _history_where(f: HistoryFilter, dialect: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if f.since is not None:
        where.append("ra.created_at >= ?")
        args.append(f.since)
    if f.until is not None:
        where.append("ra.created_at < ?")
        args.append(f.until)
    for column, value in (("status", f.status), ("route", f.route), ("requested_by", f.requester)):
        if value:
            where.append(f"r.{column} = ?")
            args.append(value)
    q = f.q.strip()
    if q and dialect == POSTGRESQL:  # ILIKE over the three columns, as the trigram index holds them
        where.append("(r.action || ' ' || r.requested_by || ' ' || coalesce(r.summary, '')) ILIKE ? ESCAPE '\\'")
        args.append(_like(q))
    elif len(q) >= 3:  # the trigram index: substrings of three characters or more, case-insensitive
        where.append("r.rowid IN (SELECT rowid FROM requests_text WHERE requests_text MATCH ?)")
        args.append(_fts_phrase(q))
    elif q:
        like = "LIKE ? ESCAPE '\\'"
        where.append(f"(r.action {like} OR r.requested_by {like} OR r.summary {like})")
        args += [_like(q)] * 3
    return where, args


async def history(
    channels: ChannelService,
    approver: str,
    f: HistoryFilter,
    *,
    older: str | None = None,
    newer: str | None = None,
    limit: int = PAGE,
) -> Page:
    """Requests ``approver`` may see, newest first: the page after ``older`` (or before
    ``newer``; neither: the newest), with its ``older``/``newer`` cursors."""
    if _viewer(channels, approver) is None:
        return Page([], None, None)
    store = channels.service.store
    limit = max(1, min(limit, MAX_PAGE))
    where, args = _history_where(f, store.dialect)
    after, before = _parse_request_cursor(older), _parse_request_cursor(newer)
    backwards = after is None and before is not None
    if after is not None:
        where.append("(ra.created_at, ra.request_id) < (?, ?)")
        args += list(after)
    elif before is not None:
        where.append("(ra.created_at, ra.request_id) > (?, ?)")
        args += list(before)
    order = "ASC" if backwards else "DESC"
    # A rare search term: read its few matches and keep this approver's (CROSS JOIN fixes that
    # order); otherwise walk this approver's range newest first until the page is full.
    if store.dialect != POSTGRESQL and len(f.q.strip()) >= 3 and await _matches(store, f.q.strip()) <= FEW:
        source = ("requests r CROSS JOIN request_approvers ra ON ra.approver = ? AND ra.created_at = r.created_at "
                  "AND ra.request_id = r.id")  # fmt: skip
    else:
        source = "request_approvers ra JOIN requests r ON r.id = ra.request_id AND ra.approver = ?"
    sql = (f"SELECT {_R_COLUMNS} FROM {source} WHERE {' AND '.join(where) or 'TRUE'} "
           f"ORDER BY ra.created_at {order}, ra.request_id {order} LIMIT ?")  # fmt: skip
    got = [ApprovalRequest.from_row(row) for row in await store.read(sql, [approver, *args, limit + 1])]
    more = len(got) > limit
    got = got[:limit]
    if backwards:
        got.reverse()
        return Page(got, _request_cursor(got[-1]) if got else None, _request_cursor(got[0]) if more else None)
    has_newer = after is not None and bool(got)
    return Page(got, _request_cursor(got[-1]) if more else None, _request_cursor(got[0]) if has_newer else None)


# --- the audit timeline ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    event: str = ""
    request_id: str = ""
    requester: str = ""  # who filed the request the event is about
    since: float | None = None
    until: float | None = None


async def _busy_requester(store: Store, requester: str) -> bool:
    """Whether ``requester`` filed so many requests that the timeline is better walked newest
    first than gathered from their requests and sorted."""
    if store.dialect == POSTGRESQL:  # the hint below (SQLite's unary +: "not through this index") is SQLite's
        return False
    sql = "SELECT count(*) FROM (SELECT 1 FROM requests WHERE requested_by = ? LIMIT ?) AS mine"
    return bool(requester) and int((await store.read(sql, (requester, FEW + 1)))[0][0]) > FEW


def _audit_where(approver: str, f: AuditFilter, busy: bool = False) -> tuple[list[str], list[Any]]:
    where: list[str] = [f"EXISTS ({_MINE})"]
    args: list[Any] = [approver]
    for clause, value in (("a.event = ?", f.event), ("a.request_id = ?", f.request_id),
                          (("+" if busy else "") + "r.requested_by = ?", f.requester)):  # fmt: skip
        if value:
            where.append(clause)
            args.append(value)
    if f.since is not None:
        where.append("a.at >= ?")
        args.append(f.since)
    if f.until is not None:
        where.append("a.at < ?")
        args.append(f.until)
    return where, args


def _seq(cursor: str | None) -> int | None:
    return int(cursor) if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) < 19 else None


async def audit(
    channels: ChannelService,
    approver: str,
    f: AuditFilter,
    *,
    older: str | None = None,
    newer: str | None = None,
    limit: int = PAGE,
) -> Page:
    """Audit events of the requests ``approver`` may see, newest first, paged by ``seq``."""
    if _viewer(channels, approver) is None:
        return Page([], None, None)
    limit = max(1, min(limit, MAX_PAGE))
    where, args = _audit_where(approver, f, await _busy_requester(channels.service.store, f.requester))
    after, before = _seq(older), _seq(newer)
    backwards = after is None and before is not None
    if after is not None:
        where.append("a.seq < ?")
        args.append(after)
    elif before is not None:
        where.append("a.seq > ?")
        args.append(before)
    order = "ASC" if backwards else "DESC"
    sql = (f"SELECT a.* FROM audit a JOIN requests r ON r.id = a.request_id WHERE {' AND '.join(where)} "
           f"ORDER BY a.seq {order} LIMIT ?")  # fmt: skip
    got = [AuditEvent.from_row(row) for row in await channels.service.store.read(sql, [*args, limit + 1])]
    more = len(got) > limit
    got = got[:limit]
    if backwards:
        got.reverse()
        return Page(got, str(got[-1].seq) if got else None, str(got[0].seq) if more else None)
    return Page(got, str(got[-1].seq) if more else None, str(got[0].seq) if after is not None and got else None)


async def audit_export_chunks(
    channels: ChannelService, approver: str, f: AuditFilter, fmt: str, *, chunk: int = 1000
) -> AsyncIterator[str]:
    """The filtered view, oldest first, as ``audit --format csv|jsonl`` writes it, in pieces
    (at most ``EXPORT_LIMIT`` events)."""
    yield csv_header() if fmt == "csv" else ""
    if _viewer(channels, approver) is None:
        return
    last, sent = 0, 0
    busy = await _busy_requester(channels.service.store, f.requester)
    while sent < EXPORT_LIMIT:
        where, args = _audit_where(approver, f, busy)
        sql = (f"SELECT a.* FROM audit a JOIN requests r ON r.id = a.request_id WHERE {' AND '.join(where)} "
               "AND a.seq > ? ORDER BY a.seq LIMIT ?")  # fmt: skip
        rows = await channels.service.store.read(sql, [*args, last, min(chunk, EXPORT_LIMIT - sent)])
        if not rows:
            return
        events = [AuditEvent.from_row(row) for row in rows]
        yield csv_lines(events) if fmt == "csv" else jsonl_lines(events)
        last, sent = events[-1].seq, sent + len(events)


# --- the hash chain ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """What ``signoff audit verify`` says of the database, as of event ``head``."""

    ok: bool
    count: int
    head: int  # the last event's seq when it was checked
    last_hash: str | None
    broken: audit_chain.Broken | None
    checked_at: float
    seconds: float


async def audit_head(store: Store) -> int:
    """The newest audit event's ``seq`` (0: none)."""
    rows = await store.read("SELECT coalesce(max(seq), 0) FROM audit")
    return int(rows[0][0])


async def verify_chain(store: Store, *, chunk: int = 5000) -> ChainStatus:
    """Walk the whole chain oldest first, as ``audit verify`` does (``audit_chain.verify``), in
    chunks of ``chunk`` events whose hashing runs off the event loop."""
    started = time.monotonic()
    columns = ", ".join(audit_chain.FIELDS)
    head, count, last_hash, carry = 0, 0, None, None
    while True:
        rows = await store.read(f"SELECT {columns}, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                                (head, chunk))  # fmt: skip
        if not rows:
            break
        events = [{k: row[k] for k in (*audit_chain.FIELDS, "prev_hash", "hash")} for row in rows]
        # Each chunk after the first starts with the last event of the one before, so a gap or a
        # changed link between chunks is seen exactly as within one.
        batch = events if carry is None else [carry, *events]
        checked, broken = await asyncio.to_thread(audit_chain.verify, batch, from_start=carry is None)
        count += checked - (0 if carry is None else 1)
        if broken is not None:
            return ChainStatus(False, count, head, last_hash, broken, time.time(), time.monotonic() - started)
        carry, head, last_hash = events[-1], int(events[-1]["seq"]), events[-1]["hash"]
    return ChainStatus(True, count, head, last_hash, None, time.time(), time.monotonic() - started)


@dataclass
class ChainCache:
    """The last chain check, in this process (memory holds caches only). A check runs on demand;
    by itself only while the chain is short (``auto_limit`` events); it stays shown, marked with
    how many events came since, until the next."""

    auto_limit: int = 20_000
    last: ChainStatus | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def status(self, store: Store, *, check: bool = False) -> tuple[ChainStatus | None, int]:
        """(the latest check, the current head)."""
        head = await audit_head(store)
        stale = self.last is None or self.last.head != head
        if stale and (check or head <= self.auto_limit):
            async with self._lock:
                if self.last is None or self.last.head != head:
                    self.last = await verify_chain(store)
        return self.last, head


# --- grants ------------------------------------------------------------------------------


async def grants_seen(channels: ChannelService, approver: str, *, limit: int = 500) -> tuple[list[Grant], list[Grant]]:
    """(live, ended) grants ``approver`` may see — made from a request they may see, or by
    them — newest first; ended ones at most ``limit``."""
    if _viewer(channels, approver) is None:
        return [], []
    seen = (f"SELECT {', '.join('g.' + c.strip() for c in GRANT_COLUMNS.split(','))} FROM grants g "
            f"WHERE g.created_by = ? OR EXISTS (SELECT 1 FROM requests r WHERE r.id = g.from_request AND EXISTS ({_MINE})) "
            "ORDER BY g.created_at DESC, g.id DESC LIMIT ?")  # fmt: skip
    rows = await channels.service.store.read(seen, (approver, approver, limit * 2))
    now = channels.clock()
    every = [Grant.from_row(row) for row in rows]
    return [g for g in every if g.live(now)], [g for g in every if not g.live(now)][:limit]


async def grant_seen(channels: ChannelService, approver: str, grant_id: str) -> Grant | None:
    """The grant ``grant_id`` if ``approver`` may see it."""
    grant = await channels.grant(grant_id)
    if grant is None or _viewer(channels, approver) is None:
        return None
    if grant.created_by == approver:
        return grant
    rows = await channels.service.store.read(f"SELECT 1 FROM requests r WHERE r.id = ? AND EXISTS ({_MINE})",
                                             (grant.from_request, approver))  # fmt: skip
    return grant if rows else None
