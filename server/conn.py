"""The connection every query goes through, whichever database holds the store.

``Conn`` is the small surface the service uses: ``execute`` (a cursor with ``rowcount``
and ``fetchall``) and ``execute_fetchall``, both taking SQLite's SQL text with ``?``
placeholders, and ``dialect`` for the few statements that differ. Rows answer to an index
and to a column name. ``SqliteConn`` wraps aiosqlite; ``server/pg.py`` has PostgreSQL's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import aiosqlite

from .dialect import SQLITE


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    async def fetchall(self) -> Iterable[Any]: ...

    async def fetchone(self) -> Any: ...


class Conn(Protocol):
    @property
    def dialect(self) -> str: ...

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> Cursor: ...

    async def execute_fetchall(self, sql: str, args: Iterable[Any] = ()) -> Sequence[Any]: ...

    async def close(self) -> None: ...


def params(args: Iterable[Any]) -> Any:
    """Positional arguments as a tuple; named ones (``:name`` in the SQL) as the mapping they are."""
    return args if isinstance(args, Mapping) else tuple(args)


class SqliteConn:
    """One aiosqlite connection (rows are ``sqlite3.Row``)."""

    dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.raw = db
        self.applied: list[str] = []  # the migrations opening it applied

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> Cursor:
        return await self.raw.execute(sql, params(args))

    async def execute_fetchall(self, sql: str, args: Iterable[Any] = ()) -> Sequence[Any]:
        return list(await self.raw.execute_fetchall(sql, params(args)))

    async def select(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """A read (``Store``'s reads outside its transactions go through a connection of their own)."""
        return list(await self.raw.execute_fetchall(sql, params(args)))

    async def close(self) -> None:
        await self.raw.close()
