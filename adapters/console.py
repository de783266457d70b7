"""The console channel: a human at a terminal deciding with ``signoff approve`` / ``reject``.

It is the embedded default and every operator's fallback. Whoever can run these commands
against the database file (created owner-only) is trusted as a human approver; the decision
is recorded with the operating-system user as the decider and ``console`` as the channel.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from server.durations import humanize_delta
from server.errors import NotAllowedError
from server.models import Actor, ApprovalRequest, AuditEvent, Status, iso, view

if TYPE_CHECKING:  # the read-only commands never load the service and its dependencies
    from server.grants import Grant
    from server.service import ApprovalService

CHANNEL = "console"


def console_actor() -> Actor:
    """The human at this terminal."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown-user"
    return Actor("human", user, CHANNEL)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def format_pending(requests: Sequence[ApprovalRequest], now: float) -> str:
    if not requests:
        return "No pending requests."
    rows = [
        (
            r.id,
            _clip(r.action, 24),
            _clip(r.requested_by, 20),
            r.route,
            humanize_delta(r.created_at - now),
            humanize_delta(r.expires_at - now) if r.expires_at > now else "overdue",
            _clip(r.summary, 50),
        )
        for r in requests
    ]
    return table(rows, ("ID", "ACTION", "REQUESTED BY", "ROUTE", "CREATED", "EXPIRES", "SUMMARY"))


def format_request(
    req: ApprovalRequest,
    events: Sequence[AuditEvent],
    now: float,
    votes: Sequence[dict[str, Any]] = (),
    callback: dict[str, Any] | None = None,
) -> str:
    """Everything about one request, in full: nothing agent-supplied is trimmed here."""
    lines = [
        f"Request   {req.id}",
        f"Status    {req.status.value}",
        f"Action    {req.action}",
        f"Asked by  {req.requested_by}" + (f" (says it is {req.claimed_requester!r})" if req.claimed_requester else ""),
        f"Route     {req.route} — approvers: {', '.join(req.approvers) or 'console operators'}; on timeout: {req.on_timeout}",
        f"Created   {iso(req.created_at)} ({humanize_delta(req.created_at - now)})",
        f"Expires   {iso(req.expires_at)} ({humanize_delta(req.expires_at - now)})",
    ]
    if req.status is Status.PENDING and req.expires_at <= now:
        lines.append(f"Deadline  passed: on_timeout = {req.on_timeout} applies at the next sweep")
    if req.status.final:
        lines.append(f"Decided   {iso(req.decided_at)} by {req.decided_by} via {req.decided_via}")
    if req.reason:
        lines.append(f"Reason    {req.reason}")
    if req.quorum > 1 or votes:
        cast = ", ".join(f"{v['approver']} {'✓' if v['vote'] == 'approve' else '✗'}" for v in votes) or "none yet"
        lines.append(f"Votes     {cast} (quorum {req.quorum}, reject_quorum {req.reject_quorum})")
    if req.level:
        lines.append(f"Escalated {req.level} level(s): approvers now {', '.join(req.approvers)}")
    if req.callback_url:
        lines.append(f"Callback  {req.callback_url} — {_callback_state(callback)}")
    lines += ["", "Summary", f"  {req.summary}"]
    if req.metadata:
        lines += ["", "Metadata"] + [f"  {k} = {json.dumps(v)}" for k, v in req.metadata.items()]
    if req.details is not None:
        lines += [
            "",
            "Details",
            *("  " + ln for ln in json.dumps(req.details, indent=2, ensure_ascii=False).splitlines()),
        ]
    if events:
        lines += ["", "Audit"]
        lines += [f"  {iso(e.at)}  {e.event:<9}  {e.actor} ({e.actor_kind}, {e.channel})" for e in events]
    return "\n".join(lines)


def _callback_state(state: dict[str, Any] | None) -> str:
    if state is None:
        return "sent once the request is final"
    if state["delivered_at"]:
        return f"delivered {state['delivered_at']} after {state['attempts']} attempt(s)"
    error = f"; last error: {state['last_error']}" if state["last_error"] else ""
    return f"not delivered yet ({state['attempts']} attempt(s){error}); next attempt {state['next_attempt_at']}"


def format_grants(grants: Sequence[Grant], now: float) -> str:
    if not grants:
        return "No grants."
    rows = [
        (
            g.id,
            _clip(g.scope(), 50),
            g.route,
            g.created_by,
            ("revoked" if g.revoked_at else "ended") if not g.live(now) else humanize_delta(g.expires_at - now),
            f"{g.uses}" + (f"/{g.max_uses}" if g.max_uses else ""),
        )
        for g in grants
    ]
    return table(rows, ("ID", "COVERS", "ROUTE", "BY", "ENDS", "USES"))


def grant_json(g: Grant, now: float) -> dict[str, Any]:
    return {
        "id": g.id, "route": g.route, "action": g.action, "requested_by": g.requested_by, "session": g.session,
        "argument": g.argument, "pattern": g.pattern, "from_request": g.from_request, "created_by": g.created_by,
        "created_at": iso(g.created_at), "expires_at": iso(g.expires_at), "max_uses": g.max_uses, "uses": g.uses,
        "revoked_at": iso(g.revoked_at), "revoked_by": g.revoked_by, "live": g.live(now),
    }  # fmt: skip


def request_json(req: ApprovalRequest) -> dict[str, Any]:
    """The MCP view plus everything else an operator's script may want."""
    out = view(req)
    out.update(
        action=req.action,
        summary=req.summary,
        details=req.details,
        metadata=req.metadata,
        requested_by=req.requested_by,
        claimed_requester=req.claimed_requester,
        decided_via=req.decided_via,
        on_timeout=req.on_timeout,
        session=req.session,
        level=req.level,
        callback_url=req.callback_url,
    )
    return out


AUDIT_FIELDS = ("seq", "at", "event", "request_id", "actor_kind", "actor", "channel", "content_hash", "route", "data",
                "action_digest", "prev_hash", "hash")  # fmt: skip


def audit_rows(events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    """The events for export. Besides the readable fields, each carries what its hash covers, as
    stored (``at_unix``, ``route_snapshot_json``, ``data_json``), so a copy verifies anywhere."""
    return [
        {
            "seq": e.seq,
            "at": iso(e.at),
            "event": e.event,
            "request_id": e.request_id,
            "actor_kind": e.actor_kind,
            "actor": e.actor,
            "channel": e.channel,
            "content_hash": e.content_hash,
            "route": e.route_snapshot.get("name"),
            "data": e.data,
            "action_digest": e.action_digest,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
            "at_unix": e.at,
            "route_snapshot_json": (e.raw or {}).get("route_snapshot"),
            "data_json": (e.raw or {}).get("data"),
        }
        for e in events
    ]


def format_audit(events: Sequence[AuditEvent], fmt: str) -> str:
    rows = audit_rows(events)
    if fmt == "jsonl":
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=AUDIT_FIELDS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "data": "" if r["data"] is None else json.dumps(r["data"])})
        return buf.getvalue().rstrip("\n")
    if not rows:
        return "No audit events."
    return table(
        [(str(r["seq"]), str(r["at"]), r["event"], r["request_id"], f"{r['actor']} ({r['channel']})") for r in rows],
        ("SEQ", "AT", "EVENT", "REQUEST", "WHO"),
    )


async def decide(
    service: ApprovalService, request_id: str, approve: bool, reason: str | None, as_approver: str | None = None
) -> tuple[bool, str]:
    """Decide (or, with ``as_approver``, vote as that approver) at this terminal; return
    (whether it counted, what to print)."""
    if as_approver is not None and as_approver not in service.config.approvers:
        known = ", ".join(sorted(service.config.approvers)) or "none"
        raise NotAllowedError(f"--as {as_approver!r}: no such approver in the configuration (known: {known})")
    actor = console_actor() if as_approver is None else Actor("human", as_approver, CHANNEL)
    decision = await service.decide(request_id, approve, actor, reason)
    req = decision.request
    if decision.changed:
        return True, f"{req.id} {req.status.value} by {req.decided_by}."
    if decision.voted:
        return True, f"Vote recorded on {req.id}; it needs more votes ({await service.note(req) or 'pending'})."
    if decision.already_voted:
        return False, f"{actor.name} already voted to {decision.already_voted} {req.id}; nothing changed."
    if req.status is Status.PENDING:  # pragma: no cover - decide() always leaves it final
        return False, f"{req.id} is still pending."
    return (
        False,
        f"{req.id} was already {req.status.value} by {req.decided_by} at {iso(req.decided_at)}; nothing changed.",
    )
