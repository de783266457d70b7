"""SQLite's SQL text as PostgreSQL reads it.

signoff keeps one text per statement, written for SQLite (``?`` placeholders) in the subset
both databases read alike: ``INSERT … ON CONFLICT``, ``RETURNING``, ``coalesce``, partial
indexes. ``to_postgres`` rewrites what differs mechanically — placeholders become ``%s``
(a literal ``%`` doubled for psycopg), ``INDEXED BY`` hints go — and the few real
differences (JSON, text search) are fragments chosen by dialect where they are used
(``JSON_TRUE`` below, ``web_queries``).
"""

from __future__ import annotations

import re
from functools import lru_cache

DATABASE_URL_ENV = "SIGNOFF_DATABASE_URL"  # selects PostgreSQL, overriding [store]
SQLITE = "sqlite"
POSTGRESQL = "postgresql"


def is_url(target: object) -> bool:
    """Whether a store target names PostgreSQL (a ``postgresql://`` or ``postgres://`` URL), not a SQLite path."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in ("postgresql", "postgres")


_NAME = re.compile(r"[A-Za-z_]\w*")
_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)


@lru_cache(maxsize=2048)
def to_postgres(sql: str) -> str:
    """``sql`` (SQLite's text) for psycopg: ``?`` → ``%s`` and ``:name`` → ``%(name)s`` outside
    quotes, ``%`` → ``%%``."""
    sql = _INDEXED_BY.sub("", sql)
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(sql):
        ch = sql[i]
        i += 1
        if quote is None and ch == ":" and (m := _NAME.match(sql, i)) and (i < 2 or sql[i - 2] != ":"):
            out.append(f"%({m.group()})s")
            i = m.end()
        elif quote is not None:
            if ch == quote:
                quote = None
            out.append("%%" if ch == "%" else ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def json_true(dialect: str, column: str, key: str) -> str:
    """A condition: the JSON object text in ``column`` has ``key`` set to true."""
    if dialect == POSTGRESQL:
        return f"coalesce(({column})::jsonb -> '{key}' = 'true'::jsonb, false)"
    return f"coalesce(json_extract({column}, '$.{key}'), 0)"
