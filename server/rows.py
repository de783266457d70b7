"""The canonical JSON and the ``INSERT`` of a request row, free of aiosqlite and asyncio.

``store`` (async) and the hook's fast path (plain ``sqlite3``, see ``quick``) write requests
with exactly these, so a request filed either way is the same row.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import queries

if TYPE_CHECKING:
    from .models import ApprovalRequest

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no NaN, compact."""
    return _ENCODER.encode(value)


INSERT = (
    f"INSERT INTO requests ({queries.REQUEST_COLUMNS}) VALUES ({','.join('?' * queries.N_REQUEST_COLUMNS)}) "
    "ON CONFLICT (requested_by, idempotency_key) DO NOTHING"
)


def request_row(
    req: ApprovalRequest, details_json: str | None, metadata_json: str, route_snapshot_json: str
) -> tuple[Any, ...]:
    """The values of ``INSERT`` for ``req``, whose JSON columns come serialized."""
    return (
        req.id, req.action, req.summary, details_json, metadata_json,
        req.route, route_snapshot_json, dumps(req.approvers), req.requested_by, req.requested_via,
        req.claimed_requester, req.idempotency_key, req.content_hash, req.status.value, req.on_timeout,
        req.created_at, req.expires_at, req.decided_at, req.decided_by, req.decided_kind, req.decided_via, req.reason,
        req.level, req.next_escalation_at, req.next_reminder_at, req.session, req.callback_url,
        req.cwd, req.action_digest, req.client_name,
        None if req.edited_details is None else dumps(req.edited_details), req.edited_digest,
        req.kind, None if req.options is None else dumps(req.options), req.answer,
    )  # fmt: skip
