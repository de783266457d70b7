"""Quiet hours: an approver's "22:00-07:00" in their own time zone.

Prompts and reminders of non-urgent routes wait until an approver's quiet hours end (the
outbox holds them); edits of messages already sent are silent and go out at once. Routes
with ``urgent = true`` ignore quiet hours; an escalation level with someone awake in it
reaches them on time.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from .config import ApproverConfig, Config
from .models import ApprovalRequest


def _span(text: str) -> tuple[time, time]:
    start, end = text.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def quiet_until(approver: ApproverConfig | None, now: float) -> float | None:
    """When ``approver``'s quiet hours end, if ``now`` is inside them; else None."""
    if approver is None or not approver.quiet_hours:
        return None
    zone = zoneinfo.ZoneInfo(approver.timezone)
    start, end = _span(approver.quiet_hours)
    local = datetime.fromtimestamp(now, zone)
    t = local.time()
    if start == end:
        return None
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, zone).timestamp()


def held_until(config: Config, req: ApprovalRequest, approver: str, now: float) -> float | None:
    """How long a prompt of ``req`` to ``approver`` waits for their quiet hours (None: send now)."""
    if req.route_snapshot.get("urgent"):
        return None
    return quiet_until(config.approvers.get(approver), now)


def expected_after(config: Config, req: ApprovalRequest, now: float) -> float | None:
    """When every approver who may decide ``req`` now is in quiet hours: the earliest end of them."""
    if req.status.final or req.route_snapshot.get("urgent") or not req.eligible():
        return None
    ends = [held_until(config, req, name, now) for name in req.eligible()]
    if any(end is None for end in ends):
        return None
    return min(end for end in ends if end is not None)
