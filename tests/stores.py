"""Reaching the test's store around signoff: SQL that bypasses the service, on either store.

The suites in ``conftest.BOTH_STORES`` run on SQLite and on PostgreSQL; a test that must write
what signoff never would (to prove a trigger or a CHECK refuses it) uses ``raw_sql``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from signoff.server.config import Config
from signoff.server.dialect import to_postgres


class Raw:
    """An autocommit connection taking SQLite's SQL text; ``errors`` is what either driver raises."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres
        import psycopg

        self.errors: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        cur = self.conn.execute(to_postgres(sql) if self.postgres else sql, args)
        return list(cur.fetchall()) if cur.description is not None else []


@contextmanager
def raw_sql(config: Config) -> Iterator[Raw]:
    """A connection to ``config``'s store (SQLite file or PostgreSQL) that bypasses signoff."""
    if config.store.url:
        import psycopg

        with psycopg.connect(config.store.url, autocommit=True) as conn:
            yield Raw(conn, True)
        return
    conn = sqlite3.connect(config.db_path, isolation_level=None)
    try:
        yield Raw(conn, False)
    finally:
        conn.close()


def integrity_errors() -> tuple[type[BaseException], ...]:
    """What a refused constraint raises, on either store."""
    import psycopg

    return (sqlite3.IntegrityError, psycopg.errors.IntegrityError)


CHECK_FAILED = r"CHECK|check constraint"


def tamper(raw: Raw, statement: str) -> None:
    """Run ``statement`` on the audit log as an attacker who owns the database would: with the
    append-only guards lifted first (SQLite: dropped; PostgreSQL: the table's triggers disabled)."""
    if raw.postgres:
        raw.execute("ALTER TABLE audit DISABLE TRIGGER USER")
        try:
            raw.execute(statement)
        finally:
            raw.execute("ALTER TABLE audit ENABLE TRIGGER USER")
        return
    raw.execute("DROP TRIGGER IF EXISTS audit_is_append_only_update")
    raw.execute("DROP TRIGGER IF EXISTS audit_is_append_only_delete")
    raw.execute(statement)
