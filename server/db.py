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

from . import audit_chain
from .conn import Conn, SqliteConn
from .dialect import POSTGRESQL
from .errors import StoreError
from .schema import MIGRATIONS, refuse_newer

BUSY_TIMEOUT_MS = 10_000


# Python steps that run right after a migration's SQL, in the same transaction.
AFTER_MIGRATION: dict[str, Callable[[aiosqlite.Connection], Awaitable[None]]] = {
    "0004_trust": audit_chain.chain_existing,
}


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
async def reader(path: Path) -> AsyncIterator[SqliteConn]:
    """A second connection to ``path`` (already opened by ``connect``) that only reads: it sees
    what is committed, never another coroutine's transaction in progress."""
    db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        db.row_factory = aiosqlite.Row
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA query_only = ON")
        yield SqliteConn(db)
    finally:
        await db.close()


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[SqliteConn]:
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
            applied = await migrate(SqliteConn(db))
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot use {path} as signoff's database: {exc}; point [store] path at another file"
            ) from None
        conn = SqliteConn(db)
        conn.applied = applied
        yield conn
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
async def transaction(db: Conn) -> AsyncIterator[Conn]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception (or cancellation).
    On PostgreSQL: ``BEGIN`` and the store's write lock, the same one writer at a time."""
    try:
        # Inside the try: a cancellation that lands while BEGIN runs (it still runs to its end)
        # must roll back too, or the connection would stay in a transaction holding the lock.
        if db.dialect == POSTGRESQL:
            from . import pg

            assert isinstance(db, pg.PgConn)
            await db.execute("BEGIN")
            # The audit chain's lock: every statement that appends an event takes it first, so
            # holding it from the start makes this the one writer, as BEGIN IMMEDIATE does.
            await pg.lock_key(db, "audit_chain")
        else:
            await db.execute("BEGIN IMMEDIATE")
        yield db
    except BaseException:
        await _rollback(db)
        raise
    committed = await db.execute("COMMIT")
    if getattr(committed, "status", None) == "ROLLBACK":  # PostgreSQL ends a failed transaction so
        raise StoreError("the transaction was rolled back by the database; nothing of it was stored")


async def _rollback(db: Conn) -> None:
    try:
        await db.execute("ROLLBACK")
    except Exception as exc:  # none began (BEGIN itself failed): nothing to undo
        if "no transaction" not in str(exc):
            raise


async def migrate(conn: SqliteConn) -> list[str]:
    """Apply the migrations not yet recorded; return their names. Safe to race across processes."""
    db = conn.raw
    await db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL) STRICT")
    async with db.execute("SELECT name FROM migrations") as cur:
        done = {row[0] async for row in cur}
    refuse_newer(done, "SQLite")
    if all(name in done for name, _ in MIGRATIONS):
        return []
    applied: list[str] = []
    # A migration may rebuild a table others refer to (SQLite's "other kinds of table schema
    # changes"): foreign keys are off while it runs — the pragma only takes effect outside a
    # transaction — and checked before it commits, so a broken reference rolls it all back.
    await db.execute("PRAGMA foreign_keys = OFF")
    try:
        async with transaction(conn):
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
            broken = list(await db.execute_fetchall("PRAGMA foreign_key_check"))
            if broken:
                raise StoreError(
                    f"migrating the database would leave {len(broken)} broken references (first: table "
                    f"{broken[0][0]!r} to {broken[0][2]!r}); nothing was changed. Report this as a bug"
                )
    finally:
        await db.execute("PRAGMA foreign_keys = ON")
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
