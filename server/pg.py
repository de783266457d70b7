"""PostgreSQL as signoff's store: the connection, its migrations, and the change listener.

Selected by ``[store] url`` (or ``$SIGNOFF_DATABASE_URL``), a libpq URL; TLS and every other
libpq option ride in it (``?sslmode=verify-full&sslrootcert=…``). Each signoff instance keeps
one connection for its statements — the same shape as its SQLite connection, so a statement
run inside a coroutine's open transaction behaves the same on both — and one more that only
``LISTEN``s, so waiters wake when another instance commits a decision.

What stands in for SQLite's guarantees:

- ``BEGIN IMMEDIATE`` (one writer at a time) is ``BEGIN`` plus a transaction-scoped advisory
  lock per store, so multi-statement writes that read first are serialized across
  instances exactly as SQLite serializes them across processes. Single-statement
  compare-and-set writes take no such lock: PostgreSQL re-checks their ``WHERE`` against the
  committed row, so the first decision wins and the loser gets no row.
- The audit chain is extended by a trigger under its own advisory lock (see
  ``pg_migrations/0012_baseline.sql``), so seq order is commit order.
- Statements are bound on the client (psycopg's client-side cursors): SQLite's loose typing
  of parameters (``? IS NULL``, a ``str`` compared to ``text``) reads the same on PostgreSQL.

The store lives in the connection's first ``search_path`` schema (``public`` unless the URL
says ``options=-csearch_path%3Dname``), so one database can hold several stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

from .conn import Cursor, params
from .dialect import POSTGRESQL, to_postgres
from .errors import StoreError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("signoff.store")

CONNECT_TIMEOUT = 10  # seconds, unless the URL says connect_timeout=…
RECONNECT_DELAY = 1.0  # the listener's wait between attempts after losing its connection
PG_BASELINE = "0012_baseline"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def describe(url: str) -> str:
    """``user@host:port/dbname`` from ``url``, never its password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(url)
    except Exception:
        return "an unreadable PostgreSQL URL"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    user = str(parts.get("user") or "")
    db = str(parts.get("dbname") or user or "")
    return f"{user + '@' if user else ''}{host}:{port}/{db}"


def unencrypted_remote(url: str) -> str | None:
    """The host ``url`` reaches over the network without requiring TLS (None: a local socket,
    loopback, or sslmode require/verify-ca/verify-full)."""
    from psycopg.conninfo import conninfo_to_dict

    from .listen import is_loopback

    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return None
    host = str(parts.get("host") or "")
    if not host or host.startswith("/") or all(is_loopback(h) for h in host.split(",")):
        return None
    return None if parts.get("sslmode") in ("require", "verify-ca", "verify-full") else host


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "[store] url names PostgreSQL, but its driver is not installed; install signoff with the "
            "postgresql extra: pip install 'signoff[postgresql]' (or uv tool install 'signoff[postgresql]')"
        ) from None
    return psycopg


class Row(Sequence[Any]):
    """A result row answering to an index and to a column name, as ``sqlite3.Row`` does."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __eq__(self, other: object) -> bool:
        return tuple(self._values) == (tuple(other) if isinstance(other, (tuple, list, Row)) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    if desc is None:
        return tuple
    names = {d.name: i for i, d in enumerate(desc)}

    def make(values: Sequence[Any]) -> Row:
        return Row(names, values)

    return make


def _configure(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> None:
    """Types as SQLite hands them back: ``numeric`` (``sum`` of integers) as int or float, booleans as 0/1."""
    from psycopg.adapt import Loader

    class NumberLoader(Loader):
        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            try:
                return int(text)
            except ValueError:
                return float(text)

    class BoolLoader(Loader):
        def load(self, data: Any) -> Any:
            return 1 if bytes(data) == b"t" else 0

    conn.adapters.register_loader("numeric", NumberLoader)
    conn.adapters.register_loader("bool", BoolLoader)


class _Result:
    """A statement's outcome, read in full before the caller sees it (``status``: its command tag)."""

    def __init__(self, rowcount: int, rows: list[Any], status: str | None = None) -> None:
        self.rowcount = rowcount
        self._rows = rows
        self.status = status

    async def fetchall(self) -> list[Any]:
        return self._rows

    async def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None


class PgConn:
    """One psycopg connection in autocommit mode, taking SQLite's SQL text.

    The connection is shared by every coroutine of the instance, so a statement always runs
    to its end even when the coroutine that asked for it is cancelled (a client hung up, a
    wait timed out): psycopg closes a connection whose query is interrupted, which would end
    every other coroutine's work too. A connection that was lost anyway (the server
    restarted) is opened again at the next statement outside a transaction.
    """

    dialect = POSTGRESQL

    def __init__(self, raw: psycopg.AsyncConnection[Any], schema: str, url: str | None = None) -> None:
        self.raw = raw
        self.schema = schema
        self.url = url
        self.channel = f"signoff:{schema}"
        self.applied: list[str] = []  # the migrations opening it applied
        self._in_transaction = False
        self._running: set[asyncio.Task[_Result]] = set()  # statements whose callers may have left

    async def _shielded(self, sql: str, args: Any) -> _Result:
        task = asyncio.ensure_future(self._run(sql, args))
        self._running.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[_Result]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # a caller that left is not told; the next statement meets the same state

    async def _run(self, sql: str, args: Any) -> _Result:
        if self.raw.closed and self.url is not None and not self._in_transaction:
            log.warning("reconnecting to PostgreSQL at %s (the connection was closed)", describe(self.url))
            raw = await open_raw(self.url)
            await raw.execute(pin_schema(self.schema))
            self.raw = raw
        cur = self.raw.cursor()
        await cur.execute(sql, args)
        rows = [] if cur.description is None else list(await cur.fetchall())
        return _Result(int(cur.rowcount), rows, cur.statusmessage)

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> Cursor:
        word = sql.lstrip()[:8].upper()
        if word.startswith("BEGIN"):
            self._in_transaction = True  # before: a cancelled caller still rolls back what BEGIN opened
            return await self._shielded(sql, ())
        if word.startswith(("COMMIT", "ROLLBACK")):
            self._in_transaction = False
            return await self._shielded(sql, ())
        return await self._shielded(to_postgres(sql), params(args))

    async def execute_fetchall(self, sql: str, args: Iterable[Any] = ()) -> Sequence[Any]:
        return list(await (await self.execute(sql, args)).fetchall())

    async def script(self, sql: str) -> None:
        """Run a script of several statements, no parameters (a migration)."""
        await self.raw.execute(sql.encode())

    async def close(self) -> None:
        """Close the connection once the statements already running have finished."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=CONNECT_TIMEOUT)
        await self.raw.close()


class ReadPool:
    """Connections for reads outside a transaction, so they neither wait behind nor slow down the
    writes on the instance's one statement connection (``[store] pool_size`` of them)."""

    def __init__(self, url: str, size: int, schema: str) -> None:
        from psycopg import AsyncClientCursor
        from psycopg_pool import AsyncConnectionPool

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            _configure(conn)
            await conn.execute(pin_schema(schema))

        kwargs = _settings(AsyncClientCursor)
        self.pool: Any = AsyncConnectionPool(
            url, min_size=1, max_size=size, kwargs=kwargs, configure=configure, open=False, name="signoff-reads"
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def select(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        # A read cancelled mid-query costs only its pooled connection, which the pool replaces.
        async with self.pool.connection() as conn:
            cur = conn.cursor()
            await cur.execute(to_postgres(sql), params(args))
            return [] if cur.description is None else list(await cur.fetchall())

    async def close(self) -> None:
        await self.pool.close()


def _settings(cursor_factory: Any) -> dict[str, Any]:
    """How every connection of signoff's is made (the statement one, the pool's, the console's)."""
    return {
        "autocommit": True,  # transactions are explicit: db.transaction()
        "row_factory": _row_factory,
        "cursor_factory": cursor_factory,  # client-side binding: SQLite's loosely typed statements as they are
        "connect_timeout": CONNECT_TIMEOUT,
        "prepare_threshold": None,  # behind pgbouncer in transaction mode, prepared statements collide
    }


def _cannot_connect(url: str, exc: BaseException) -> StoreError:
    return StoreError(f"cannot connect to PostgreSQL at {describe(url)}: {reason_of(exc)}; check [store] url "
                      "(or $SIGNOFF_DATABASE_URL), that the server runs and accepts this user")  # fmt: skip


def pin_schema(schema: str) -> str:
    """The statement that keeps a connection on ``schema`` alone, whatever its role's search_path."""
    return f"SET search_path TO {quote_ident(schema)}"


async def open_raw(url: str) -> psycopg.AsyncConnection[Any]:
    """A configured psycopg connection to ``url``, or a StoreError naming the server and the reason."""
    driver = _driver()
    from psycopg import AsyncClientCursor

    try:
        raw = await driver.AsyncConnection.connect(url, **_settings(AsyncClientCursor))
    except driver.Error as exc:
        raise _cannot_connect(url, exc) from None
    _configure(raw)
    return cast("psycopg.AsyncConnection[Any]", raw)


def reason_of(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text.removeprefix("connection failed: ") or type(exc).__name__


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[PgConn]:
    """Connect to ``url`` and apply pending migrations."""
    raw = await open_raw(url)
    conn: PgConn | None = None
    try:
        rows = await (await raw.execute("SELECT current_schema()")).fetchall()
        schema = rows[0][0] if rows and rows[0][0] else None
        if schema is None:
            raise StoreError(
                f"PostgreSQL at {describe(url)} has no schema to create signoff's tables in (the search_path "
                "names none that exists); create one or set options=-csearch_path%3Dname in [store] url"
            )
        # From here on, exactly that schema: the migration's functions pin the search_path they are
        # created with, and a schema named after the role created later must not capture the store.
        await raw.execute(pin_schema(str(schema)))
        conn = PgConn(raw, str(schema), url)
        conn.applied = await migrate(conn)
        yield conn
    finally:
        await (raw.close() if conn is None else conn.close())


async def lock_key(conn: PgConn, what: str) -> None:
    """Take the store's transaction-scoped advisory lock named ``what`` (in an open transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':' || ?))", (what,))


async def migrate(conn: PgConn) -> list[str]:
    """Apply the migrations not yet recorded (under a lock: instances may start together)."""
    from .schema import MIGRATIONS, PG_MIGRATIONS, refuse_newer

    sqlite_names = [name for name, _ in MIGRATIONS]
    raw = conn.raw
    done = await _recorded(conn)
    if done is not None and all(name in done for name in sqlite_names):
        refuse_newer(done, f"PostgreSQL at {conn.schema!r}")
        return []
    applied: list[str] = []
    try:
        await raw.execute("BEGIN")
        await lock_key(conn, "migrate")
        await raw.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name text PRIMARY KEY, applied_at double precision NOT NULL)"
        )
        done = await _recorded(conn) or set()
        refuse_newer(done, f"PostgreSQL at {conn.schema!r}")
        for name, sql in PG_MIGRATIONS:
            if name == PG_BASELINE:
                if any(n in done for n in sqlite_names[: sqlite_names.index("0012_request_search") + 1]):
                    continue
                await conn.script(sql)
                for covered in sqlite_names[: sqlite_names.index("0012_request_search") + 1]:
                    await raw.execute(
                        "INSERT INTO migrations (name, applied_at) VALUES (%s, %s)", (covered, time.time())
                    )
                    applied.append(covered)
            elif name not in done:
                await conn.script(sql)
                await raw.execute("INSERT INTO migrations (name, applied_at) VALUES (%s, %s)", (name, time.time()))
                applied.append(name)
        await raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            await raw.execute("ROLLBACK")
        raise
    return applied


async def _recorded(conn: PgConn) -> set[str] | None:
    rows = await conn.execute_fetchall("SELECT to_regclass('migrations') IS NOT NULL")
    if not rows or not rows[0][0]:
        return None
    return {str(r[0]) for r in await conn.execute_fetchall("SELECT name FROM migrations")}


class SyncConn:
    """A blocking connection for the console's fast reads (``readonly``) and ``/metrics``: the
    same SQL text, rows and types as ``PgConn``; read-only sessions."""

    dialect = POSTGRESQL

    def __init__(self, url: str) -> None:
        psycopg = _driver()
        from psycopg import ClientCursor

        try:
            raw = psycopg.Connection.connect(url, **_settings(ClientCursor))
        except psycopg.Error as exc:
            raise _cannot_connect(url, exc) from None
        self.raw = raw
        _configure(raw)
        raw.execute("SET default_transaction_read_only = on")
        schema = raw.execute("SELECT current_schema()").fetchone()
        if schema and schema[0]:
            raw.execute(pin_schema(str(schema[0])))

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self.raw.execute(to_postgres(sql), params(args))

    def has_table(self, name: str) -> bool:
        row = self.raw.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        self.raw.close()
