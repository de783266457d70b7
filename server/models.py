"""What a request and an audit event are, as stored. Light on imports: the console commands use it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, cast


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # the only status that means "go ahead"
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided in time and the default was to reject
    CANCELLED = "cancelled"
    ANSWERED = "answered"  # a question (ask_human) a human answered; never "go ahead"

    @property
    def final(self) -> bool:
        return self is not Status.PENDING


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, and through which channel (``mcp``, ``console``, ``telegram``, …)."""

    kind: str  # "agent", "human" or "system"
    name: str
    channel: str


class TelegramEntry(TypedDict):
    """Where one approver's Telegram prompts go, and who may press their buttons."""

    approver: str
    user_id: int
    chat_id: int


class SlackEntry(TypedDict):
    """Where one approver's Slack prompts go (``address``: their user id for a DM, or a channel
    id), and whose presses count (``user_id``)."""

    approver: str
    user_id: str
    address: str


class EscalationStep(TypedDict):
    after: float  # seconds after filing
    approvers: list[str]  # the approvers it adds
    telegram: list[TelegramEntry]
    slack: NotRequired[list[SlackEntry]]


class RouteSnapshot(TypedDict, total=False):
    """The route as it was when a request was filed (``requests.route_snapshot``, JSON). Rows
    written by older versions may lack later keys: read them with ``.get``."""

    name: str
    approvers: list[str]
    timeout: float
    on_timeout: str
    auto: str | None
    telegram: list[TelegramEntry]
    slack: list[SlackEntry]
    match: dict[str, Any] | None
    escalation: list[EscalationStep]
    reminder: float | None
    quorum: int
    reject_quorum: int
    allow_self_approval: bool
    grant_options: list[str]
    grant_scope: dict[str, Any] | None
    grant_max_uses: int | None
    allow_bulk: bool
    urgent: bool
    allow_edit: bool


@dataclass(frozen=True, slots=True)
class Reach:
    """One place an approver is asked in: ``channel`` (telegram, slack), the channel's id of the
    person whose presses count (``user``), and where the messages go (``address``)."""

    channel: str
    approver: str
    user: str
    address: str


def _reach(snapshot: RouteSnapshot | EscalationStep) -> list[Reach]:
    found = [
        Reach("telegram", e["approver"], str(e["user_id"]), str(e["chat_id"])) for e in snapshot.get("telegram", [])
    ]
    found += [Reach("slack", e["approver"], e["user_id"], e["address"]) for e in snapshot.get("slack", [])]
    return found


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """One row of the ``requests`` table."""

    id: str
    action: str
    summary: str
    details: Any
    metadata: dict[str, Any]
    route: str
    route_snapshot: RouteSnapshot
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
    level: int = 0  # escalation levels fired so far
    next_escalation_at: float | None = None
    next_reminder_at: float | None = None
    session: str | None = None
    callback_url: str | None = None
    cwd: str | None = None  # the working directory / project the agent acts in (grants are scoped to it)
    action_digest: str | None = None  # SHA-256 of the canonical JSON of action, details and metadata
    client_name: str | None = None  # the MCP client's own name: a label, never used to decide
    # "Edit before approving": the arguments the approver approved instead of ``details`` (None
    # when unchanged), and their action digest (action, edited details, metadata).
    edited_details: Any = None
    edited_digest: str | None = None
    # ask_human: "question" rows are answered (status "answered", ``answer``), never approved.
    kind: str = "approval"
    options: list[str] | None = None  # the answers a question offers as buttons
    answer: str | None = None

    @property
    def is_question(self) -> bool:
        return self.kind == "question"

    @classmethod
    def from_row(cls, row: Any) -> ApprovalRequest:
        return cls(
            id=row["id"],
            action=row["action"],
            summary=row["summary"],
            details=None if row["details"] is None else json.loads(row["details"]),
            metadata=json.loads(row["metadata"]),
            route=row["route"],
            route_snapshot=cast(RouteSnapshot, json.loads(row["route_snapshot"])),
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
            level=row["level"],
            next_escalation_at=row["next_escalation_at"],
            next_reminder_at=row["next_reminder_at"],
            session=row["session"],
            callback_url=row["callback_url"],
            cwd=row["cwd"],
            action_digest=row["action_digest"],
            client_name=row["client_name"],
            edited_details=None if row["edited_details"] is None else json.loads(row["edited_details"]),
            edited_digest=row["edited_digest"],
            kind=row["kind"],
            options=None if row["options"] is None else json.loads(row["options"]),
            answer=row["answer"],
        )

    @property
    def quorum(self) -> int:
        return int(self.route_snapshot.get("quorum") or 1)

    @property
    def reject_quorum(self) -> int:
        return int(self.route_snapshot.get("reject_quorum") or 1)

    def reach(self, level: int | None = None, channel: str | None = None) -> list[Reach]:
        """Where the prompts of every approver who may decide now (at escalation ``level``) go, on
        every channel (or on ``channel``)."""
        level = self.level if level is None else level
        entries = _reach(self.route_snapshot)
        for step in self.route_snapshot.get("escalation", [])[:level]:
            entries += _reach(step)
        return [e for e in entries if channel is None or e.channel == channel]

    def eligible(self, level: int | None = None) -> list[str]:
        """The approvers who may decide now: the route's and those of the levels fired so far."""
        level = self.level if level is None else level
        names = list(self.route_snapshot.get("approvers", self.approvers))
        for step in self.route_snapshot.get("escalation", [])[:level]:
            names += [a for a in step.get("approvers", []) if a not in names]
        return names

    def everyone(self) -> list[str]:
        """Every approver who may ever decide, escalation levels still to come included."""
        return self.eligible(len(self.route_snapshot.get("escalation", [])))


@dataclass(frozen=True, slots=True)
class Vote:
    """One approver's vote on a request."""

    approver: str
    vote: str  # "approve" or "reject"
    at: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    """What a decision attempt did: ``changed`` is True when it made the request final."""

    changed: bool
    request: ApprovalRequest
    voted: bool = False  # the vote counted, but the route needs more votes: still pending
    already_voted: str | None = None  # this approver voted before ("approve" or "reject")


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
        "action_digest": req.action_digest,
        "edited_details": req.edited_details,
        "answer": req.answer,
        "answered_by": req.decided_by if req.status is Status.ANSWERED else None,
    }


# The stored columns an audit event's hash covers, in order (server/audit_chain.py).
AUDIT_HASHED = ("seq", "at", "event", "request_id", "actor_kind", "actor", "channel", "route_snapshot",
                "content_hash", "action_digest", "data")  # fmt: skip


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
    action_digest: str | None = None
    prev_hash: str | None = None
    hash: str | None = None
    raw: dict[str, Any] | None = None  # the stored values the hash covers (see audit_chain.FIELDS)

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
            action_digest=row["action_digest"],
            prev_hash=row["prev_hash"],
            hash=row["hash"],
            raw={k: row[k] for k in AUDIT_HASHED},
        )
