"""Opening the SQLite file, its named migrations, and the one transaction helper.

Every connection runs in WAL mode with a busy timeout, so several signoff processes can
share one file. Writes that read first go through ``transaction(db)``, which is
``BEGIN IMMEDIATE``: the write lock is taken up front, so a concurrent writer waits on the
busy timeout instead of failing on a lock upgrade.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from . import audit_chain, queries
from .errors import StoreError

BUSY_TIMEOUT_MS = 10_000

# Named migrations, applied in order, each recorded in the `migrations` table.
# Never edit one that has shipped: add a new one.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_requests_and_audit",
        """
        CREATE TABLE requests (
            id                TEXT PRIMARY KEY,
            action            TEXT NOT NULL,
            summary           TEXT NOT NULL,
            details           TEXT,             -- JSON, or NULL
            metadata          TEXT NOT NULL,    -- JSON object of scalars
            route             TEXT NOT NULL,
            route_snapshot    TEXT NOT NULL,    -- JSON: the route as it was at creation
            approvers         TEXT NOT NULL,    -- JSON list of approver names
            requested_by      TEXT NOT NULL,    -- what the transport says
            requested_via     TEXT NOT NULL,    -- the channel it came through (mcp)
            claimed_requester TEXT,             -- what the agent says; never used by any rule
            idempotency_key   TEXT,
            content_hash      TEXT NOT NULL,
            status            TEXT NOT NULL CHECK (status IN
                                ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
            on_timeout        TEXT NOT NULL CHECK (on_timeout IN ('approve', 'reject')),
            created_at        REAL NOT NULL,
            expires_at        REAL NOT NULL,
            decided_at        REAL,
            decided_by        TEXT,
            decided_kind      TEXT CHECK (decided_kind IN ('agent', 'human', 'system')),
            decided_via       TEXT,
            reason            TEXT,
            UNIQUE (requested_by, idempotency_key)
        ) STRICT;
        CREATE INDEX requests_pending_by_deadline ON requests (expires_at) WHERE status = 'pending';
        CREATE INDEX requests_by_created ON requests (created_at);

        CREATE TABLE audit (
            seq            INTEGER PRIMARY KEY,
            at             REAL NOT NULL,
            event          TEXT NOT NULL,
            request_id     TEXT NOT NULL REFERENCES requests (id),
            actor_kind     TEXT NOT NULL CHECK (actor_kind IN ('agent', 'human', 'system')),
            actor          TEXT NOT NULL,
            channel        TEXT NOT NULL,
            route_snapshot TEXT NOT NULL,
            content_hash   TEXT NOT NULL,
            data           TEXT              -- JSON: reason and other event details
        ) STRICT;
        CREATE INDEX audit_by_request ON audit (request_id, seq);
        CREATE INDEX audit_by_time ON audit (at);
        -- Every change of status writes its audit event in the same statement, so a request
        -- never exists without its "created" event, nor a decision without its own.
        CREATE TRIGGER audit_request_created AFTER INSERT ON requests BEGIN
            INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, data)
            VALUES (NEW.created_at, 'created', NEW.id, 'agent', NEW.requested_by, NEW.requested_via,
                    NEW.route_snapshot, NEW.content_hash, NULL);
            INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, data)
            SELECT NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
                   NEW.route_snapshot, NEW.content_hash, json_object('reason', NEW.reason)
            WHERE NEW.status <> 'pending';
        END;
        CREATE TRIGGER audit_request_decided AFTER UPDATE OF status ON requests
            WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
            INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, data)
            VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
                    NEW.route_snapshot, NEW.content_hash,
                    CASE WHEN NEW.decided_via = 'scheduler' THEN json_object('on_timeout', NEW.on_timeout)
                         WHEN NEW.reason IS NOT NULL THEN json_object('reason', NEW.reason) END);
        END;
        CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

        CREATE TABLE settings (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        """,
    ),
    (
        "0002_telegram",
        """
        -- The transactional outbox: what must reach Telegram, written by the same statement
        -- that files or decides a request (see the triggers), drained by the bot-lease holder.
        CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY,
            request_id      TEXT NOT NULL REFERENCES requests (id),
            kind            TEXT NOT NULL,   -- 'prompt', 'outcome'; no CHECK, so later kinds need no table rebuild
            approver        TEXT NOT NULL DEFAULT '',   -- for prompts: whose prompt it is
            chat_id         INTEGER NOT NULL,
            created_at      REAL NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            done_at         REAL,
            last_error      TEXT,
            UNIQUE (request_id, kind, chat_id)
        ) STRICT;
        CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;

        -- Every message with buttons that was sent for a request, so any process can edit it later.
        CREATE TABLE prompts (
            request_id TEXT NOT NULL REFERENCES requests (id),
            chat_id    INTEGER NOT NULL,
            message_id INTEGER NOT NULL,
            sent_at    REAL NOT NULL,
            PRIMARY KEY (chat_id, message_id)
        ) STRICT;
        CREATE INDEX prompts_by_request ON prompts (request_id);

        -- "Reject with reason": the ForceReply message an approver answers with the reason.
        CREATE TABLE reason_prompts (
            chat_id    INTEGER NOT NULL,
            message_id INTEGER NOT NULL,
            request_id TEXT NOT NULL REFERENCES requests (id),
            user_id    INTEGER NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (chat_id, message_id)
        ) STRICT;

        -- Leases: at most one process at a time holds each (the bot lease: one Telegram poller).
        CREATE TABLE leases (
            name       TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            expires_at REAL NOT NULL
        ) STRICT;

        CREATE TRIGGER outbox_prompts AFTER INSERT ON requests WHEN NEW.status = 'pending' BEGIN
            INSERT OR IGNORE INTO outbox (request_id, kind, approver, chat_id, created_at, next_attempt_at)
            SELECT NEW.id, 'prompt', json_extract(t.value, '$.approver'), json_extract(t.value, '$.chat_id'),
                   NEW.created_at, NEW.created_at
            FROM json_each(NEW.route_snapshot, '$.telegram') AS t;
        END;
        CREATE TRIGGER outbox_outcomes AFTER UPDATE OF status ON requests
            WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
            -- Every chat that has (or is about to get) a prompt for the request learns the outcome.
            INSERT OR IGNORE INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
            SELECT NEW.id, 'outcome', c.chat_id, NEW.decided_at, NEW.decided_at FROM (
                SELECT json_extract(t.value, '$.chat_id') AS chat_id FROM json_each(NEW.route_snapshot, '$.telegram') AS t
                UNION SELECT chat_id FROM prompts WHERE request_id = NEW.id
            ) AS c;
        END;
        """,
    ),
    (
        "0003_policies",
        """
        -- level: escalation levels fired so far; the timers of a pending request; the requester's
        -- MCP session (for session grants); the URL POSTed to once the request is final.
        ALTER TABLE requests ADD COLUMN level INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE requests ADD COLUMN next_escalation_at REAL;
        ALTER TABLE requests ADD COLUMN next_reminder_at REAL;
        ALTER TABLE requests ADD COLUMN session TEXT;
        ALTER TABLE requests ADD COLUMN callback_url TEXT;
        CREATE INDEX requests_escalation_due ON requests (next_escalation_at)
            WHERE status = 'pending' AND next_escalation_at IS NOT NULL;
        CREATE INDEX requests_reminder_due ON requests (next_reminder_at)
            WHERE status = 'pending' AND next_reminder_at IS NOT NULL;

        -- One vote per approver per request; the request's status changes when the votes reach
        -- its route's quorum (or can no longer reach it).
        CREATE TABLE votes (
            request_id TEXT NOT NULL REFERENCES requests (id),
            approver   TEXT NOT NULL,
            vote       TEXT NOT NULL CHECK (vote IN ('approve', 'reject')),
            at         REAL NOT NULL,
            via        TEXT NOT NULL,
            reason     TEXT,
            PRIMARY KEY (request_id, approver)
        ) STRICT;

        -- Grants: "approve requests like this one for 30 minutes".
        CREATE TABLE grants (
            id           TEXT PRIMARY KEY,
            route        TEXT NOT NULL,
            action       TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            session      TEXT,              -- set: only this MCP session
            argument     TEXT,              -- set: details[argument] must match pattern
            pattern      TEXT,
            from_request TEXT NOT NULL REFERENCES requests (id),
            created_at   REAL NOT NULL,
            created_by   TEXT NOT NULL,
            expires_at   REAL NOT NULL,
            max_uses     INTEGER,
            uses         INTEGER NOT NULL DEFAULT 0,
            revoked_at   REAL,
            revoked_by   TEXT,
            chat_id      INTEGER,           -- the message that shows how often it was used
            message_id   INTEGER
        ) STRICT;
        CREATE INDEX grants_live ON grants (route, action, requested_by) WHERE revoked_at IS NULL;

        -- Digests: requests gathered into one message per chat instead of a prompt each.
        CREATE TABLE digest_items (
            seq        INTEGER PRIMARY KEY,
            chat_id    INTEGER NOT NULL,
            request_id TEXT NOT NULL REFERENCES requests (id),
            approver   TEXT NOT NULL,
            UNIQUE (chat_id, request_id)
        ) STRICT;
        CREATE TABLE digests (
            chat_id    INTEGER PRIMARY KEY,
            message_id INTEGER,
            shown_upto INTEGER NOT NULL DEFAULT 0   -- the last item the message showed
        ) STRICT;

        -- A digest shows a decision on one of its requests (whoever made it) at its next refresh.
        CREATE TRIGGER outbox_digest_decided AFTER UPDATE OF status ON requests
            WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
            INSERT INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
            SELECT NEW.id, 'digest', chat_id, NEW.decided_at, NEW.decided_at FROM digest_items WHERE request_id = NEW.id
            ON CONFLICT (request_id, kind, chat_id) DO UPDATE SET done_at = NULL, next_attempt_at = excluded.next_attempt_at;
        END;

        -- Decision callbacks go through the outbox too (kind 'callback', chat_id 0).
        CREATE TRIGGER outbox_callback_decided AFTER UPDATE OF status ON requests
            WHEN OLD.status = 'pending' AND NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL BEGIN
            INSERT OR IGNORE INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
            VALUES (NEW.id, 'callback', 0, NEW.decided_at, NEW.decided_at);
        END;
        CREATE TRIGGER outbox_callback_at_once AFTER INSERT ON requests
            WHEN NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL BEGIN
            INSERT OR IGNORE INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
            VALUES (NEW.id, 'callback', 0, NEW.created_at, NEW.created_at);
        END;
        """,
    ),
    (
        "0004_trust",
        """
        -- cwd: the working directory / project the agent acts in (Claude Code sends it; grants are
        -- scoped to it). action_digest: SHA-256 of the canonical JSON of action, details and
        -- metadata, the exact thing a decision is for. client_name: the MCP client's own name, a
        -- label only (requested_by may be pinned by the operator instead).
        ALTER TABLE requests ADD COLUMN cwd TEXT;
        ALTER TABLE requests ADD COLUMN action_digest TEXT;
        ALTER TABLE requests ADD COLUMN client_name TEXT;
        ALTER TABLE grants ADD COLUMN cwd TEXT;

        -- The audit log is hash-chained: each event stores the previous event's hash and its own.
        ALTER TABLE audit ADD COLUMN action_digest TEXT;
        ALTER TABLE audit ADD COLUMN prev_hash TEXT;
        ALTER TABLE audit ADD COLUMN hash TEXT;
        DROP TRIGGER audit_request_created;
        CREATE TRIGGER audit_request_created AFTER INSERT ON requests BEGIN
            INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                               action_digest, data)
            VALUES (NEW.created_at, 'created', NEW.id, 'agent', NEW.requested_by, NEW.requested_via,
                    NEW.route_snapshot, NEW.content_hash, NEW.action_digest, NULL);
            INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                               action_digest, data)
            SELECT NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
                   NEW.route_snapshot, NEW.content_hash, NEW.action_digest, json_object('reason', NEW.reason)
            WHERE NEW.status <> 'pending';
        END;
        DROP TRIGGER audit_request_decided;
        CREATE TRIGGER audit_request_decided AFTER UPDATE OF status ON requests
            WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
            INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                               action_digest, data)
            VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
                    NEW.route_snapshot, NEW.content_hash, NEW.action_digest,
                    CASE WHEN NEW.decided_via = 'scheduler' THEN json_object('on_timeout', NEW.on_timeout)
                         WHEN NEW.reason IS NOT NULL THEN json_object('reason', NEW.reason) END);
        END;
        -- Chaining happens inside the statement that appends the event, with signoff_audit_hash()
        -- (registered on every connection that writes, see audit_chain.py). Only that one update,
        -- of a row whose hash is not yet set, is allowed: everything else stays append-only.
        DROP TRIGGER audit_is_append_only_update;
        CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
            WHEN OLD.hash IS NOT NULL OR NEW.seq IS NOT OLD.seq OR NEW.at IS NOT OLD.at OR NEW.event IS NOT OLD.event
              OR NEW.request_id IS NOT OLD.request_id OR NEW.actor_kind IS NOT OLD.actor_kind
              OR NEW.actor IS NOT OLD.actor OR NEW.channel IS NOT OLD.channel
              OR NEW.route_snapshot IS NOT OLD.route_snapshot OR NEW.content_hash IS NOT OLD.content_hash
              OR NEW.action_digest IS NOT OLD.action_digest OR NEW.data IS NOT OLD.data
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_chain AFTER INSERT ON audit BEGIN
            UPDATE audit SET
                prev_hash = (SELECT p.hash FROM audit AS p WHERE p.seq < NEW.seq ORDER BY p.seq DESC LIMIT 1),
                hash = signoff_audit_hash(
                    (SELECT p.hash FROM audit AS p WHERE p.seq < NEW.seq ORDER BY p.seq DESC LIMIT 1),
                    NEW.seq, NEW.at, NEW.event, NEW.request_id, NEW.actor_kind, NEW.actor, NEW.channel,
                    NEW.route_snapshot, NEW.content_hash, NEW.action_digest, NEW.data)
            WHERE seq = NEW.seq;
        END;

        -- Every rendering of a chat's digest, under an id that is never reused: its buttons name it,
        -- so a press decides only the items that very message listed (items: JSON list of request ids).
        CREATE TABLE digest_renders (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id    INTEGER NOT NULL,
            message_id INTEGER,
            items      TEXT NOT NULL,
            created_at REAL NOT NULL
        ) STRICT;
        CREATE INDEX digest_renders_by_chat ON digest_renders (chat_id, id);

        -- A grant that stopped applying (its granter or its route changed) is audited once.
        ALTER TABLE grants ADD COLUMN dead_at REAL;
        ALTER TABLE grants ADD COLUMN dead_reason TEXT;
        """,
    ),
]

# Python steps that run right after a migration's SQL, in the same transaction.
AFTER_MIGRATION: dict[str, Callable[[aiosqlite.Connection], Awaitable[None]]] = {
    "0004_trust": audit_chain.chain_existing,
}


assert MIGRATIONS[-1][0] == queries.SCHEMA, "update queries.SCHEMA with the newest migration"


def _create_private(path: Path) -> None:
    """Create the database file (and its folder) readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_dir():  # checked here: aiosqlite's failed open leaves a thread that outlives the event loop
        raise StoreError(f"the database path {path} is a folder; point [store] path at a file")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """Open ``path`` (creating it owner-only), set the pragmas and apply pending migrations."""
    try:
        _create_private(path)
        db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    except (OSError, aiosqlite.Error) as exc:
        raise StoreError(
            f"cannot open the database {path}: {exc}; check the [store] path and its permissions"
        ) from None
    try:
        if sqlite3.sqlite_version_info < (3, 38, 0):
            raise StoreError(
                f"signoff needs SQLite 3.38 or newer (RETURNING, JSON); this Python has {sqlite3.sqlite_version}"
            )
        db.row_factory = aiosqlite.Row
        await audit_chain.register(db)
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await _enable_wal(db)
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await migrate(db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot use {path} as signoff's database: {exc}; point [store] path at another file"
            ) from None
        yield db
    finally:
        await db.close()


async def _enable_wal(db: aiosqlite.Connection) -> None:
    # WAL is a property of the file, set once by whichever process gets there first. The
    # switch needs an exclusive lock and SQLite does not wait on the busy timeout for it, so
    # processes starting together on a new file retry for a while.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
            if rows and str(rows[0][0]).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if loop.time() > deadline:
            raise StoreError("cannot switch the database to WAL mode: another process keeps it locked")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception (or cancellation)."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


async def migrate(db: aiosqlite.Connection) -> list[str]:
    """Apply the migrations not yet recorded; return their names. Safe to race across processes."""
    await db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL) STRICT")
    async with db.execute("SELECT name FROM migrations") as cur:
        done = {row[0] async for row in cur}
    if all(name in done for name, _ in MIGRATIONS):
        return []
    applied: list[str] = []
    async with transaction(db):
        # Re-read under the write lock: another process may have migrated meanwhile.
        async with db.execute("SELECT name FROM migrations") as cur:
            done = {row[0] async for row in cur}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            for statement in _statements(sql):
                await db.execute(statement)
            if name in AFTER_MIGRATION:
                await AFTER_MIGRATION[name](db)
            await db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
            applied.append(name)
    return applied


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if _complete(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _complete(buf: str) -> bool:
    return buf.strip().endswith(";") and sqlite3.complete_statement(buf)
