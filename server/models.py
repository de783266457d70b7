"""What a request and an audit event are, as stored. Light on imports: the console commands use it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # the only status that means "go ahead"
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided in time and the default was to reject
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self is not Status.PENDING


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, and through which channel (``mcp``, ``console``, ``telegram``, …)."""

    kind: str  # "agent", "human" or "system"
    name: str
    channel: str


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """One row of the ``requests`` table."""

    id: str
    action: str
    summary: str
    details: Any
    metadata: dict[str, Any]
    route: str
    route_snapshot: dict[str, Any]
    approvers: list[str]
    requested_by: str
    requested_via: str
    claimed_requester: str | None
    idempotency_key: str | None
    content_hash: str
    status: Status
    on_timeout: str
    created_at: float
    expires_at: float
    decided_at: float | None
    decided_by: str | None
    decided_kind: str | None
    decided_via: str | None
    reason: str | None

    @classmethod
    def from_row(cls, row: Any) -> ApprovalRequest:
        return cls(
            id=row["id"],
            action=row["action"],
            summary=row["summary"],
            details=None if row["details"] is None else json.loads(row["details"]),
            metadata=json.loads(row["metadata"]),
            route=row["route"],
            route_snapshot=json.loads(row["route_snapshot"]),
            approvers=json.loads(row["approvers"]),
            requested_by=row["requested_by"],
            requested_via=row["requested_via"],
            claimed_requester=row["claimed_requester"],
            idempotency_key=row["idempotency_key"],
            content_hash=row["content_hash"],
            status=Status(row["status"]),
            on_timeout=row["on_timeout"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            decided_at=row["decided_at"],
            decided_by=row["decided_by"],
            decided_kind=row["decided_kind"],
            decided_via=row["decided_via"],
            reason=row["reason"],
        )


def iso(ts: float | None) -> str | None:
    """Unix seconds → ISO 8601 in UTC, to the millisecond."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def view(req: ApprovalRequest) -> dict[str, Any]:
    """The public shape every MCP tool returns (see ``views.RequestView``), as plain JSON."""
    return {
        "request_id": req.id,
        "status": req.status.value,
        "route": req.route,
        "approvers": list(req.approvers),
        "created_at": iso(req.created_at),
        "expires_at": iso(req.expires_at),
        "decided_at": iso(req.decided_at),
        "decided_by": req.decided_by,
        "reason": req.reason,
    }


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One row of the append-only ``audit`` table."""

    seq: int
    at: float
    event: str
    request_id: str
    actor_kind: str
    actor: str
    channel: str
    route_snapshot: dict[str, Any]
    content_hash: str
    data: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Any) -> AuditEvent:
        return cls(
            seq=row["seq"],
            at=row["at"],
            event=row["event"],
            request_id=row["request_id"],
            actor_kind=row["actor_kind"],
            actor=row["actor"],
            channel=row["channel"],
            route_snapshot=json.loads(row["route_snapshot"]),
            content_hash=row["content_hash"],
            data=None if row["data"] is None else json.loads(row["data"]),
        )
