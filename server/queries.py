"""The SQL that reads requests and audit events, shared by ``Store`` (async, aiosqlite) and
``readonly`` (sync sqlite3, for the fast console commands)."""

from __future__ import annotations

from typing import Any

# The newest migration (``db.MIGRATIONS``): the read-only console commands need the file to be at it.
SCHEMA = "0012_request_search"

REQUEST_COLUMNS = (
    "id, action, summary, details, metadata, route, route_snapshot, approvers, requested_by, requested_via, "
    "claimed_requester, idempotency_key, content_hash, status, on_timeout, created_at, expires_at, "
    "decided_at, decided_by, decided_kind, decided_via, reason, level, next_escalation_at, next_reminder_at, session, "
    "callback_url, cwd, action_digest, client_name, edited_details, edited_digest, kind, options, answer"
)
N_REQUEST_COLUMNS = REQUEST_COLUMNS.count(",") + 1
GET_REQUEST = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?"
GET_BY_KEY = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE requested_by = ? AND idempotency_key = ?"


def list_requests(status: str | None, limit: int) -> tuple[str, list[Any]]:
    where, args = ("WHERE status = ?", [status]) if status else ("", [])
    return f"SELECT {REQUEST_COLUMNS} FROM requests {where} ORDER BY created_at, id LIMIT ?", [*args, limit]


def audit(since: float | None, request_id: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if since is not None:
        clauses.append("at >= ?")
        args.append(since)
    if request_id is not None:
        clauses.append("request_id = ?")
        args.append(request_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"SELECT * FROM audit {where} ORDER BY seq", args
