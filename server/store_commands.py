"""``signoff migrate`` and ``signoff migrate-store``: upgrading a store, and moving one from
SQLite to PostgreSQL.

``migrate-store`` copies every table as stored — requests in every state, votes, grants, the
audit log with its hash chain (each event's seq, prev_hash and hash kept, so ``audit verify``
and earlier exports still check), settings such as the button-signing key, the outbox with
what is still to be delivered — in one transaction on the target, with its triggers told
to stand aside (``signoff.copying``) so no event, prompt or callback is written twice.
It refuses a target that holds anything unless ``--replace`` says to empty it first.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import audit_chain
from .console_commands import EXIT_ERROR, EXIT_OK, EXIT_USAGE, print_error
from .dialect import POSTGRESQL, is_url
from .errors import StoreError

if TYPE_CHECKING:
    from .config import Config
    from .store import Store

# Tables that are the database's own bookkeeping, not signoff's state.
_SKIP = {"migrations", "sqlite_sequence"}


async def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    """Apply the store's pending migrations (``serve`` does it too) and say which."""
    from .store import Store

    async with Store.open(config.database) as store:
        applied: list[str] = getattr(store.conn, "applied", [])
    print(f"database {config.database_label}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    return EXIT_OK


def cmd_migrate_store(args: argparse.Namespace) -> int:
    """Copy a store into PostgreSQL (``--from PATH_OR_URL --to URL [--replace]``)."""
    import asyncio

    if not is_url(args.to):
        print_error(f"--to {args.to!r}: give a PostgreSQL URL, postgresql://user@host:5432/db")
        return EXIT_USAGE
    source: Path | str = args.source if is_url(args.source) else Path(args.source).expanduser()
    if isinstance(source, Path) and not source.is_file():
        print_error(f"--from {args.source}: no such SQLite file; give the [store] path of the store to copy")
        return EXIT_USAGE
    if isinstance(source, Path) and (problem := _not_a_store(source)) is not None:
        print_error(f"--from {args.source}: {problem}")
        return EXIT_USAGE
    try:
        counts, chained = asyncio.run(copy_store(source, args.to, replace=args.replace))
    except StoreError as exc:
        print_error(str(exc))
        return EXIT_ERROR
    for table, n in counts.items():
        print(f"{table:<20}{n:>10}")
    print(f"copied {sum(counts.values())} rows; audit chain OK on the target: {chained} events")
    return EXIT_OK


def _not_a_store(path: Path) -> str | None:
    """Why the SQLite file at ``path`` is not a signoff store (None: it is one), read without writing."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"cannot read it as SQLite ({exc}); give the [store] path of the store to copy"
    return None if found else "not a signoff store (it has no migrations table); give the [store] path of the store"


async def copy_store(source: Path | str, target: str, *, replace: bool = False) -> tuple[dict[str, int], int]:
    """Copy every signoff table of ``source`` into the PostgreSQL store at ``target`` (both migrated
    to this version first); returns rows copied per table and the events whose chain checked on the
    target. Driver errors come back as a StoreError; nothing is copied then."""
    import psycopg

    from . import pg

    try:
        return await _copy(source, target, replace=replace)
    except psycopg.Error as exc:
        raise StoreError(
            f"copying into PostgreSQL at {pg.describe(target)} failed: {' '.join(str(exc).split())}; nothing was copied"
        ) from None


async def _copy(source: Path | str, target: str, *, replace: bool) -> tuple[dict[str, int], int]:
    from . import pg
    from .store import Store

    async with Store.open(source, pool_size=1) as src, Store.open(target, pool_size=1) as dst:
        if src.dialect == POSTGRESQL and await _where(src) == await _where(dst):
            raise StoreError("--from and --to name the same store; nothing was copied")
        assert isinstance(dst.conn, pg.PgConn)
        tables = await _tables_in_order(dst)
        source_tables = await _source_tables(src)
        if missing := [t for t in source_tables if t not in tables]:
            raise StoreError(f"the target has no table {missing[0]!r}; is it the same signoff version?")
        occupied = [t for t in tables if (await dst.read(f"SELECT count(*) FROM {t}"))[0][0]]
        if occupied and not replace:
            raise StoreError(
                f"the target {pg.describe(target)} already holds a store ({', '.join(occupied)} not empty); "
                "nothing was copied. Point --to at an empty database or schema, or add --replace to empty it first"
            )
        counts: dict[str, int] = {}
        # The source's write lock for the whole copy: one consistent state, which nothing changes meanwhile.
        async with src.transaction(), dst.transaction() as conn:
            await conn.execute("SELECT set_config('signoff.copying', 'on', true)")
            if occupied:
                await conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
            for table in tables:
                if table in source_tables:
                    counts[table] = await _copy_table(src, conn, table)
            await _reset_identities(conn, tables)
        events = [{**(e.raw or {}), "prev_hash": e.prev_hash, "hash": e.hash} for e in await dst.audit()]
        checked, broken = audit_chain.verify(events)
        if broken is not None:
            raise StoreError(f"the copied audit chain does not verify at event {broken.seq}: {broken.why}")
        return counts, checked


async def _where(store: Store) -> tuple[Any, ...]:
    row = (await store.read("SELECT current_database(), current_schema(), inet_server_addr()::text, "
                            "inet_server_port(), pg_postmaster_start_time()::text"))[0]  # fmt: skip
    return tuple(row)


async def _copy_table(src: Store, conn: Any, table: str) -> int:
    rows = await src.read(f"SELECT * FROM {table}")
    if not rows:
        return 0
    names = list(rows[0].keys())
    insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    for row in rows:
        await conn.execute(insert, tuple(row))
    return len(rows)


async def _source_tables(src: Store) -> set[str]:
    if src.dialect == POSTGRESQL:
        rows = await src.read("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    else:
        rows = await src.read("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'requests_text%'")
    return {str(r[0]) for r in rows} - _SKIP


async def _tables_in_order(dst: Store) -> list[str]:
    """The target's tables, each after the tables it refers to."""
    tables = [str(r[0]) for r in await dst.read(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE' ORDER BY table_name")]  # fmt: skip
    refs = await dst.read(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c "
        "WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"
    )
    after: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in refs:
        if child in after and parent != child:
            after[child].add(parent)
    ordered: list[str] = []
    while after:
        ready = sorted(t for t, parents in after.items() if not parents - set(ordered))
        if not ready:
            raise StoreError("the target's tables refer to each other in a cycle; report this as a bug")
        ordered += ready
        for t in ready:
            del after[t]
    return [t for t in ordered if t not in _SKIP]


async def _reset_identities(conn: Any, tables: list[str]) -> None:
    """Identity columns continue after the copied ids (ids are never reused)."""
    rows = await conn.execute_fetchall(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND is_identity = 'YES'"
    )
    for table, column in rows:
        if table in tables:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
            )
