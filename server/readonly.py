"""Fast, read-only access for the console commands (`pending`, `show`, `audit`).

Plain ``sqlite3`` and the TOML file's ``[store] path``: no pydantic, no event loop, so a
command answers in a few tens of milliseconds. It reads the same tables with the same SQL
as ``Store`` and never writes; a missing database reads as empty and is not created.
Validating the whole configuration is ``signoff check-config``'s job.
"""

from __future__ import annotations

import os
import sqlite3
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from . import queries
from .dialect import DATABASE_URL_ENV, is_url
from .errors import ConfigError, NotFoundError, StoreError
from .models import ApprovalRequest, AuditEvent, iso
from .paths import find_config, missing_config, store_path


def db_path(config_arg: str | None) -> Path | str:
    """The database the configuration names, reading only ``[store]``: a SQLite path, or the
    PostgreSQL URL of ``$SIGNOFF_DATABASE_URL`` or ``[store] url``."""
    if url := os.environ.get(DATABASE_URL_ENV):
        return url
    file, origin = find_config(config_arg)
    if file is None:
        return store_path(None, None)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(file), [missing_config(file, origin)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), [f"cannot read the file: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), [f"TOML syntax error: {exc}"]) from None
    store = raw.get("store", {})
    url = store.get("url") if isinstance(store, dict) else None
    if isinstance(url, str) and is_url(url):
        return url
    configured = store.get("path") if isinstance(store, dict) else None
    if configured is not None and not isinstance(configured, str):
        raise ConfigError(str(file), ['store.path: expected a string path, e.g. path = "signoff.db"'])
    return store_path(configured, file.resolve().parent)


class Reader(Protocol):
    """A blocking connection: ``sqlite3.Connection``, or ``pg.SyncConn`` (same SQL text and rows)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...


@contextmanager
def connect(where: Path | str) -> Iterator[Reader | None]:
    """A reading connection, or ``None`` when there is no database (nothing was ever filed)."""
    if isinstance(where, str):
        yield from _connect_pg(where)
        return
    path = where
    if not path.exists():
        yield None
        return
    try:
        conn = sqlite3.connect(path, timeout=10)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the database {path}: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests'").fetchone()
        if has and not conn.execute("SELECT 1 FROM migrations WHERE name = ?", (queries.SCHEMA,)).fetchone():
            raise StoreError(f"the database {path} was written by an older signoff; run `signoff doctor` (or start "
                             "`signoff serve`) once to upgrade it")  # fmt: skip
        yield conn if has else None
    finally:
        conn.close()


def _connect_pg(url: str) -> Iterator[Reader | None]:
    from .pg import SyncConn, describe

    conn = SyncConn(url)
    try:
        if not conn.has_table("requests"):
            yield None
            return
        if not conn.execute("SELECT 1 FROM migrations WHERE name = ?", (queries.SCHEMA,)).fetchone():
            raise StoreError(f"PostgreSQL at {describe(url)} was written by an older signoff; run `signoff "
                             "migrate` (or start `signoff serve`) once to upgrade it")  # fmt: skip
        yield conn
    finally:
        conn.close()


def pending(conn: Reader | None, limit: int = 500) -> list[ApprovalRequest]:
    if conn is None:
        return []
    sql, args = queries.list_requests("pending", limit)
    return [ApprovalRequest.from_row(r) for r in conn.execute(sql, args)]


def get(conn: Reader | None, request_id: str) -> ApprovalRequest:
    row = None if conn is None else conn.execute(queries.GET_REQUEST, (request_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"unknown request id {request_id!r}; `signoff pending` lists the open ones")
    return ApprovalRequest.from_row(row)


def audit(conn: Reader | None, since: float | None = None, request_id: str | None = None) -> list[AuditEvent]:
    if conn is None:
        return []
    sql, args = queries.audit(since, request_id)
    return [AuditEvent.from_row(r) for r in conn.execute(sql, args)]


def callback_state(conn: Reader | None, request_id: str) -> dict[str, Any] | None:
    """How delivering a request's decision callback went (None: it has none, or it is pending)."""
    row = None if conn is None else conn.execute(
        "SELECT done_at, attempts, next_attempt_at, last_error FROM outbox WHERE request_id = ? AND kind = 'callback'",
        (request_id,),
    ).fetchone()  # fmt: skip
    if row is None:
        return None
    return {
        "delivered_at": iso(row["done_at"]),
        "attempts": row["attempts"],
        "next_attempt_at": None if row["done_at"] is not None else iso(row["next_attempt_at"]),
        "last_error": row["last_error"],
    }


def votes(conn: Reader | None, request_id: str) -> list[dict[str, Any]]:
    """The votes cast on a request, oldest first."""
    if conn is None:
        return []
    rows = conn.execute(
        "SELECT approver, vote, at, via, reason FROM votes WHERE request_id = ? ORDER BY at", (request_id,)
    )
    return [{"approver": r["approver"], "vote": r["vote"], "at": iso(r["at"]), "via": r["via"], "reason": r["reason"]}
            for r in rows]  # fmt: skip
