"""The console channel: a human at a terminal deciding with ``signoff approve`` / ``reject``.

It is the embedded default and every operator's fallback. Whoever can run these commands
against the database file (created owner-only) is trusted as a human approver; the decision
is recorded with the operating-system user as the decider and ``console`` as the channel.

Everything an agent wrote (and every name a transport reported) is shown through
``server.sanitize.visible``: an escape sequence in a metadata key, a reason or a client name
prints as ``\\x1b[2J``, it does not clear the screen. Multi-line text is indented on every
line, so it cannot fake a line of the layout ("Status    approved"); JSON output escapes what
``json.dumps`` leaves raw (DEL, C1, bidi) as ``\\uXXXX``.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signoff.server import audit_export
from signoff.server.details_text import edit_diff
from signoff.server.durations import humanize_delta
from signoff.server.errors import NotAllowedError
from signoff.server.models import Actor, ApprovalRequest, AuditEvent, Status, iso, view
from signoff.server.sanitize import json_visible, visible

if TYPE_CHECKING:  # the read-only commands never load the service and its dependencies
    from signoff.server.grant_models import Grant
    from signoff.server.service import ApprovalService

CHANNEL = "console"


def console_actor() -> Actor:
    """The human at this terminal."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown-user"
    return Actor("human", user, CHANNEL)


def _one(text: object) -> str:
    """Agent text on one line, every control and bidi character escaped."""
    return visible(str(text), one_line=True)


def _clip(text: object, width: int) -> str:
    """For a table cell: runs of spaces and line breaks become one space; the rest is escaped,
    then trimmed (after escaping, so nothing raw survives the cut)."""
    text = _one(re.sub(r"[ \t\r\n]+", " ", str(text)).strip())
    return text if len(text) <= width else text[: width - 1] + "…"


def _block(text: str, indent: str) -> str:
    """Multi-line agent text, escaped, with ``indent`` before every line after the first."""
    return ("\n" + indent).join(visible(text).split("\n"))


safe_json = json_visible  # JSON for a terminal: readable non-ASCII text, no raw control or bidi character


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
            _clip(r.route, 24),
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
    pad = " " * 10  # continuation lines sit under the values, never at the start of a line
    asked = _one(req.requested_by)
    if req.client_name and req.client_name != req.requested_by:
        asked += f" via the MCP client '{_one(req.client_name)}'"
    if req.claimed_requester:
        asked += f" (says it is '{_one(req.claimed_requester)}')"
    approvers = ", ".join(_one(a) for a in req.approvers) or "console operators"
    lines = [
        f"Request   {_one(req.id)}",
        f"Status    {req.status.value}",
        f"Action    {_one(req.action)}",
        f"Asked by  {asked}",
        *([f"Folder    {_one(req.cwd)}"] if req.cwd else []),
        f"Route     {_one(req.route)} — approvers: {approvers}; on timeout: "
        + ("expire (a question)" if req.is_question else req.on_timeout),
        f"Created   {iso(req.created_at)} ({humanize_delta(req.created_at - now)})",
        f"Expires   {iso(req.expires_at)} ({humanize_delta(req.expires_at - now)})",
    ]
    if req.status is Status.PENDING and req.expires_at <= now:
        lines.append(f"Deadline  passed: on_timeout = {req.on_timeout} applies at the next sweep")
    if req.status.final:
        lines.append(f"Decided   {iso(req.decided_at)} by {_one(req.decided_by)} via {_one(req.decided_via)}")
    if req.reason:
        label = "Note     " if _noted(req) else "Reason   "
        lines.append(f"{label} {_block(req.reason, pad)}")
    if req.quorum > 1 or votes:
        cast = ", ".join(f"{_one(v['approver'])} {'✓' if v['vote'] == 'approve' else '✗'}" for v in votes)
        lines.append(f"Votes     {cast or 'none yet'} (quorum {req.quorum}, reject_quorum {req.reject_quorum})")
    if req.level:
        lines.append(f"Escalated {req.level} level(s): approvers now {approvers}")
    if req.callback_url:
        lines.append(f"Callback  {_one(req.callback_url)} — {_callback_state(callback)}")
    if req.answer is not None:
        lines.append(f"Answer    {_block(req.answer, pad)}")
    if req.is_question:
        lines += ["", "Question", f"  {_block(req.summary, '  ')}"]
        if req.options:
            lines += ["", "Options"] + [f"  {n}. {_one(o)}" for n, o in enumerate(req.options, 1)]
    else:
        lines += ["", "Summary", f"  {_block(req.summary, '  ')}"]
    if req.metadata:
        lines += ["", "Metadata"] + [f"  {_one(k)} = {safe_json(v)}" for k, v in req.metadata.items()]
    if req.details is not None:
        lines += ["", "Details", *("  " + ln for ln in safe_json(req.details, indent=2).splitlines())]
    if req.edited_details is not None:
        lines += ["", "Edited details (approved with changes; the agent acts on these)",
                  *("  " + ln for ln in safe_json(req.edited_details, indent=2).splitlines())]  # fmt: skip
    if events:
        lines += ["", "Audit"]
        lines += [f"  {iso(e.at)}  {_one(e.event):<9}  {_one(e.actor)} ({_one(e.actor_kind)}, {_one(e.channel)})"
                  for e in events]  # fmt: skip
    return "\n".join(lines)


def _noted(req: ApprovalRequest) -> bool:
    """Whether ``req`` was approved by a person with a note ("Approve with note")."""
    return req.status is Status.APPROVED and req.decided_kind == "human" and bool(req.reason)


def _callback_state(state: dict[str, Any] | None) -> str:
    if state is None:
        return "sent once the request is final"
    if state["delivered_at"]:
        return f"delivered {state['delivered_at']} after {state['attempts']} attempt(s)"
    error = f"; last error: {_clip(state['last_error'], 200)}" if state["last_error"] else ""  # the receiver's words
    return f"not delivered yet ({state['attempts']} attempt(s){error}); next attempt {state['next_attempt_at']}"


def format_grants(grants: Sequence[Grant], now: float) -> str:
    if not grants:
        return "No grants."
    rows = [
        (
            _one(g.id),
            _clip(g.scope(), 50),
            _clip(g.route, 24),
            _clip(g.created_by, 20),
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
        kind=req.kind,
        options=req.options,
    )
    return out


audit_rows = audit_export.audit_rows  # `signoff show --json` lists a request's events this way


def format_audit(events: Sequence[AuditEvent], fmt: str) -> str:
    if fmt == "jsonl":  # exact: JSON escapes decode to the stored text, so the hashes still verify
        return audit_export.to_jsonl(events)
    if fmt == "csv":  # text cells escaped like the table (lossy); 'data' is JSON (exact)
        return audit_export.to_csv(events)
    rows = audit_rows(events)
    if not rows:
        return "No audit events."
    return table(
        [(str(r["seq"]), str(r["at"]), _one(r["event"]), _one(r["request_id"]), f"{_one(r['actor'])} ({_one(r['channel'])})")
         for r in rows],
        ("SEQ", "AT", "EVENT", "REQUEST", "WHO"),
    )  # fmt: skip


def _console_as(service: ApprovalService, as_approver: str | None) -> Actor:
    """The human at this terminal, or the configured approver they say they are (``--as``)."""
    if as_approver is not None and as_approver not in service.config.approvers:
        known = ", ".join(sorted(service.config.approvers)) or "none"
        raise NotAllowedError(f"--as {as_approver!r}: no such approver in the configuration (known: {known})")
    return console_actor() if as_approver is None else Actor("human", as_approver, CHANNEL)


async def decide(
    service: ApprovalService,
    request_id: str,
    approve: bool,
    reason: str | None,
    as_approver: str | None = None,
    edited: tuple[Any] | None = None,
) -> tuple[bool, str]:
    """Decide (or, with ``as_approver``, vote as that approver) at this terminal; return
    (whether it counted, what to print). ``edited``: approve these details instead of the
    agent's; the change is printed as a unified diff first (the flag is the confirmation)."""
    actor = _console_as(service, as_approver)
    diff = ""
    if edited is not None and approve:
        decision = await service.approve_edited(request_id, edited[0], actor, reason)
        if decision.changed:
            diff = edit_diff(decision.request.details, decision.request.edited_details) + "\n"
    else:
        decision = await service.decide(request_id, approve, actor, reason)
    req = decision.request
    rid, by = _one(req.id), _one(req.decided_by)
    if decision.changed:
        note = f" Note: {_one(req.reason)}" if _noted(req) else ""
        changes = " with changes" if req.edited_details is not None else ""
        return True, f"{diff}{rid} {req.status.value}{changes} by {by}.{note}"
    if decision.voted:
        return True, f"Vote recorded on {rid}; it needs more votes ({_one(await service.note(req) or 'pending')})."
    if decision.already_voted:
        return False, f"{_one(actor.name)} already voted to {decision.already_voted} {rid}; nothing changed."
    if req.status is Status.PENDING:  # pragma: no cover - decide() always leaves it final
        return False, f"{rid} is still pending."
    return False, f"{rid} was already {req.status.value} by {by} at {iso(req.decided_at)}; nothing changed."


async def answer(
    service: ApprovalService, request_id: str, text: str, as_approver: str | None = None
) -> tuple[bool, str]:
    """Answer a question (``ask_human``) at this terminal, as yourself or ``as_approver``; return
    (whether this answered it, what to print)."""
    actor = _console_as(service, as_approver)
    decision = await service.answer(request_id, text, actor)
    req = decision.request
    rid, by = _one(req.id), _one(req.decided_by)
    if decision.changed:
        return True, f"{rid} answered by {by}: {_one(req.answer)}"
    return False, f"{rid} was already {req.status.value} by {by} at {iso(req.decided_at)}; nothing changed."
