"""The web inbox's overview figures: pending by age, decisions per day by outcome, median
time to decision per route — over the requests one approver may see, the last ``DAYS`` days.

Each is one indexed query: pending requests through the partial index on ``status =
'pending'``; decisions through ``request_approvers`` (approver, created_at), bounded by the
longest a request can wait, so the work grows with one approver's recent requests only.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from . import queries
from .intake import MAX_TIMEOUT
from .models import ApprovalRequest
from .store import Store

DAYS = 30
AGE_BUCKETS: list[tuple[str, float]] = [
    ("< 5 min", 300.0), ("5–30 min", 1800.0), ("30 min–2 h", 7200.0), ("2 h–1 d", 86400.0), ("> 1 d", float("inf")),
]  # fmt: skip
OUTCOMES = ("approved", "rejected", "expired", "cancelled", "answered")

_MINE = "EXISTS (SELECT 1 FROM request_approvers a WHERE a.approver = ? AND a.created_at = r.created_at AND a.request_id = r.id)"
_PENDING = f"SELECT r.created_at FROM requests r INDEXED BY requests_pending_by_deadline WHERE r.status = 'pending' AND {_MINE}"
_DECIDED = (
    "SELECT r.status, r.route, r.created_at, r.decided_at, r.decided_kind FROM request_approvers a "
    "JOIN requests r ON r.id = a.request_id WHERE a.approver = ? AND a.created_at >= ? AND r.decided_at >= ?"
)


# A listing: every column but ``details`` (it can be 64 KiB of JSON, and a list never shows it).
_LISTED = ", ".join("NULL AS details" if c.strip() == "details" else "r." + c.strip()
                    for c in queries.REQUEST_COLUMNS.split(","))  # fmt: skip
_PENDING_ROWS = (
    # The partial index of pending requests: a few hundred rows at most, not every request by date.
    f"SELECT {_LISTED} FROM requests r INDEXED BY requests_pending_by_deadline WHERE r.status = 'pending' AND {_MINE} "
    "ORDER BY r.created_at DESC, r.id DESC LIMIT ?"
)


async def pending_for(store: Store, approver: str, limit: int = 500) -> list[ApprovalRequest]:
    """The pending requests ``approver`` is an approver of (at any escalation level), newest
    first, without their ``details`` (None): for lists."""
    return [ApprovalRequest.from_row(r) for r in await store.read(_PENDING_ROWS, (approver, limit))]


@dataclass
class Overview:
    """What the overview page draws."""

    pending_by_age: list[tuple[str, int]]
    days: list[str]  # YYYY-MM-DD, oldest first, ``DAYS`` of them
    per_day: dict[str, list[int]]  # outcome → count per day (aligned with ``days``)
    median_by_route: list[tuple[str, float, int]] = field(default_factory=list)  # (route, seconds, decisions)

    @property
    def decided(self) -> int:
        return sum(sum(v) for v in self.per_day.values())


async def overview(store: Store, approver: str, now: float) -> Overview:
    """The figures for ``approver`` at ``now``."""
    ages = [now - float(r[0]) for r in await store.read(_PENDING, (approver,))]
    buckets, low = [], 0.0
    for label, high in AGE_BUCKETS:
        buckets.append((label, sum(low <= a < high for a in ages)))
        low = high
    start = datetime.fromtimestamp(now, UTC).date() - timedelta(days=DAYS - 1)
    since = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    days = [(start + timedelta(days=n)).isoformat() for n in range(DAYS)]
    index = {d: n for n, d in enumerate(days)}
    per_day = {o: [0] * DAYS for o in OUTCOMES}
    waits: dict[str, list[float]] = {}
    for status, route, created, decided, kind in await store.read(_DECIDED, (approver, since - MAX_TIMEOUT, since)):
        day = datetime.fromtimestamp(float(decided), UTC).date().isoformat()
        if status in per_day and day in index:
            per_day[status][index[day]] += 1
        if kind == "human":  # time to a person's decision: timeouts and automatic routes say nothing of it
            waits.setdefault(str(route), []).append(float(decided) - float(created))
    medians = sorted(((r, statistics.median(w), len(w)) for r, w in waits.items()), key=lambda x: -x[2])
    return Overview(buckets, days, per_day, medians)
