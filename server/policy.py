"""The route policies that act after a request is filed: votes and quorum, escalation, reminders.

Each state change is one ``BEGIN IMMEDIATE`` transaction that writes the change, its audit
event and what Telegram must show (outbox rows), so any process may do it and a crash never
leaves half of it behind. Timers live in the ``requests`` table (``next_escalation_at``,
``next_reminder_at``) and are applied by whichever process sweeps first; a compare-and-set
on the old value makes concurrent sweepers harmless.

Quorum: a vote is recorded once per approver (``votes`` primary key). The request becomes
``approved`` when ``quorum`` distinct approvers approved, ``rejected`` when ``reject_quorum``
rejected, and ``rejected`` at once when approval can no longer be reached (too few approvers
left who have not voted and may approve).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from . import queries
from .config import Config
from .models import Actor, ApprovalRequest, Decision, RouteSnapshot, Status, Vote
from .outbox import QUEUE, QUEUE_ONCE, Kind
from .store import AUDIT_EVENT, DECIDE, Store, dumps

_PROMPTED = "SELECT DISTINCT channel, address FROM prompts WHERE request_id = ?"

_VOTES = "SELECT approver, vote, at, reason FROM votes WHERE request_id = ? ORDER BY at, approver"


def is_self(config: Config, approver: str, requested_by: str) -> bool:
    """Whether ``approver`` is the person who made the request (their ``identities`` match it)."""
    conf = config.approvers.get(approver)
    return conf is not None and any(fnmatch.fnmatchcase(requested_by, p) for p in conf.identities)


def may_approve(config: Config, req: ApprovalRequest, approver: str) -> bool:
    return bool(req.route_snapshot.get("allow_self_approval")) or not is_self(config, approver, req.requested_by)


def unreachable(config: Config, req: ApprovalRequest, votes: Iterable[Vote]) -> str | None:
    """Why ``quorum`` approvals can no longer be had, or None while they can. A route without
    approvers is decided at the console, by whoever runs it: never unreachable."""
    if not req.everyone():
        return None
    votes = list(votes)
    voted = {v.approver for v in votes}
    approvals = sum(v.vote == "approve" for v in votes)
    left = [a for a in req.everyone() if a not in voted and may_approve(config, req, a)]
    if approvals + len(left) >= req.quorum:
        return None
    return (
        f"{req.quorum} approvals are needed and at most {approvals + len(left)} are possible "
        "(approvers who rejected or asked for it themselves cannot approve)"
    )


def notes(tally: Iterable[Vote]) -> str | None:
    """The notes the approvers of a quorum route gave with their approvals, each under its
    approver's name ("alice: after 18:00"), so none is lost to the vote that settled it."""
    found = [f"{v.approver}: {v.reason}" for v in tally if v.vote == "approve" and v.reason]
    return "; ".join(found) or None


async def votes(store: Store, request_id: str) -> list[Vote]:
    rows = await store.read(_VOTES, (request_id,))
    return [Vote(r["approver"], r["vote"], r["at"], r["reason"]) for r in rows]


async def cast(
    store: Store,
    config: Config,
    request_id: str,
    approve: bool,
    actor: Actor,
    at: float,
    reason: str | None,
    edit: tuple[str, str] | None = None,
) -> Decision | None:
    """Record ``actor``'s vote and settle the request if the votes decide it; None if unknown.
    ``edit`` (the approved details' JSON and action digest) goes with an approval that settles it."""
    vote = "approve" if approve else "reject"
    async with store.transaction() as conn:
        rows = list(await conn.execute_fetchall(queries.GET_REQUEST, (request_id,)))
        if not rows:
            return None
        req = ApprovalRequest.from_row(rows[0])
        if req.status.final:
            return Decision(False, req)
        cur = await conn.execute(
            "INSERT INTO votes (request_id, approver, vote, at, via, reason) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id, approver) DO NOTHING",
            (request_id, actor.name, vote, at, actor.channel, reason),
        )
        if cur.rowcount == 0:
            earlier = await conn.execute_fetchall(
                "SELECT vote FROM votes WHERE request_id = ? AND approver = ?", (request_id, actor.name)
            )
            return Decision(False, req, already_voted=str(next(iter(earlier))[0]))
        tally = [Vote(r[0], r[1], r[2], r[3]) for r in await conn.execute_fetchall(_VOTES, (request_id,))]
        approvers = [v.approver for v in tally if v.vote == "approve"]
        rejecters = [v.approver for v in tally if v.vote == "reject"]
        final: tuple[Status, str, str, str | None] | None = None  # status, by, kind, reason
        if len(approvers) >= req.quorum:
            final = (Status.APPROVED, ", ".join(approvers), actor.kind, reason if req.quorum <= 1 else notes(tally))
        elif len(rejecters) >= req.reject_quorum:
            final = (Status.REJECTED, ", ".join(rejecters), actor.kind, reason)
        elif (why := unreachable(config, req, tally)) is not None:
            final = (Status.REJECTED, ", ".join(rejecters) or actor.name, actor.kind, reason or why)
        if final is None:
            data = {"vote": vote, "approvals": len(approvers), "quorum": req.quorum, "reason": reason}
            await conn.execute(
                AUDIT_EVENT, (at, "voted", actor.kind, actor.name, actor.channel, dumps(data), request_id)
            )
            for channel, address in await conn.execute_fetchall(_PROMPTED, (request_id,)):
                await conn.execute(QUEUE, (request_id, Kind.PROGRESS, channel, address, "", at, at))
            return Decision(False, req, voted=True)
        status, by, kind, why_final = final
        edited, digest = edit if edit is not None and status is Status.APPROVED else (None, None)
        row = list(await conn.execute_fetchall(
            DECIDE, (status.value, at, by, kind, actor.channel, why_final, edited, digest, request_id)))  # fmt: skip
        return Decision(True, ApprovalRequest.from_row(row[0]))


# --- timers ------------------------------------------------------------------------------


def first_timers(snapshot: RouteSnapshot, created_at: float) -> tuple[float | None, float | None]:
    """(next_escalation_at, next_reminder_at) of a request filed at ``created_at``."""
    levels = snapshot.get("escalation") or []
    reminder = snapshot.get("reminder")
    return (
        created_at + float(levels[0]["after"]) if levels else None,
        created_at + float(reminder) if reminder else None,
    )


async def next_timer(store: Store) -> float | None:
    rows = await store.read(
        "SELECT min(t) FROM (SELECT min(next_escalation_at) AS t FROM requests WHERE status = 'pending' "
        "AND next_escalation_at IS NOT NULL UNION ALL SELECT min(next_reminder_at) FROM requests "
        "WHERE status = 'pending' AND next_reminder_at IS NOT NULL) AS timers"
    )
    return None if not rows or rows[0][0] is None else float(rows[0][0])


async def escalate_due(store: Store, now: float) -> list[ApprovalRequest]:
    """Fire every escalation level that is due; return the requests that escalated."""
    due = [ApprovalRequest.from_row(r) for r in await store.read(
        f"SELECT {queries.REQUEST_COLUMNS} FROM requests WHERE status = 'pending' AND next_escalation_at <= ?", (now,))]  # fmt: skip
    fired: list[ApprovalRequest] = []
    for req in due:
        levels = req.route_snapshot.get("escalation") or []
        # Every level that is due fires now (a server that was down may owe several).
        level = req.level
        while level < len(levels) and req.created_at + float(levels[level]["after"]) <= now:
            level += 1
        if level == req.level:
            continue
        following = req.created_at + float(levels[level]["after"]) if level < len(levels) else None
        eligible = req.eligible(level)
        async with store.transaction() as conn:
            rows = list(await conn.execute_fetchall(
                "UPDATE requests SET level = ?, next_escalation_at = ?, approvers = ? "
                f"WHERE id = ? AND status = 'pending' AND level = ? RETURNING {queries.REQUEST_COLUMNS}",
                (level, following, dumps(eligible), req.id, req.level)))  # fmt: skip
            if not rows:
                continue  # decided meanwhile, or another process escalated it
            added = [a for a in eligible if a not in req.eligible()]
            data = {"level": level, "added": added}
            await conn.execute(
                AUDIT_EVENT, (now, "escalated", "system", "escalation", "scheduler", dumps(data), req.id)
            )
            for channel, address in await conn.execute_fetchall(_PROMPTED, (req.id,)):
                await conn.execute(QUEUE, (req.id, Kind.ESCALATED, channel, address, "", now, now))
            for place in req.reach(level):
                if place not in req.reach():  # the levels just fired: their approvers' first prompts
                    await conn.execute(QUEUE_ONCE, (req.id, Kind.PROMPT, place.channel, place.address,
                                                    place.approver, now, now))  # fmt: skip
            fired.append(ApprovalRequest.from_row(rows[0]))
    return fired


async def remind_due(store: Store, now: float) -> list[ApprovalRequest]:
    """Queue a reminder to every approver who has a prompt and has not voted, for each request due."""
    due = [ApprovalRequest.from_row(r) for r in await store.read(
        f"SELECT {queries.REQUEST_COLUMNS} FROM requests WHERE status = 'pending' AND next_reminder_at <= ?", (now,))]  # fmt: skip
    reminded: list[ApprovalRequest] = []
    for req in due:
        interval = float(req.route_snapshot.get("reminder") or 0)
        if interval <= 0 or req.next_reminder_at is None:
            continue
        following = req.next_reminder_at + interval
        while following <= now:  # several missed while nothing ran: remind once, not a burst
            following += interval
        async with store.transaction() as conn:
            cur = await conn.execute(
                "UPDATE requests SET next_reminder_at = ? WHERE id = ? AND status = 'pending' AND next_reminder_at = ?",
                (following, req.id, req.next_reminder_at),
            )
            if cur.rowcount == 0:
                continue
            voted = {
                r[0] for r in await conn.execute_fetchall("SELECT approver FROM votes WHERE request_id = ?", (req.id,))
            }
            waiting = [e for e in req.reach() if e.approver not in voted]
            for entry in waiting:
                await conn.execute(QUEUE, (req.id, Kind.REMINDER, entry.channel, entry.address, entry.approver,
                                           now, now))  # fmt: skip
            names = list(dict.fromkeys(e.approver for e in waiting))
            await conn.execute(AUDIT_EVENT, (now, "reminded", "system", "reminder", "scheduler",
                                        dumps({"approvers": names}), req.id))  # fmt: skip
            reminded.append(req)
    return reminded
