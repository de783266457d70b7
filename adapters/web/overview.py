"""The overview: pending by age, decisions per day by outcome, median time to decision per
route — drawn on the server as SVG (no chart library, nothing fetched from elsewhere). The
template draws what ``_charts`` computes; labels are escaped like all text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signoff.server.durations import humanize_delta
from signoff.server.web_stats import OUTCOMES, Overview, overview

from .pages import signed_in
from .render import Web, page, session_of

WIDTH, HEIGHT = 640, 180  # the SVG's coordinate box; it scales to the page


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    css: str  # a class from overview.css (its colour follows light or dark)
    title: str  # the tooltip: what the bar counts


def _scale(top: int) -> int:
    """A round top for the axis, at least ``top``."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        if top <= step * 4:
            return step * 4
    return top


def _pending(o: Overview) -> dict[str, Any]:
    top = _scale(max((n for _, n in o.pending_by_age), default=0))
    slot = WIDTH / len(o.pending_by_age)
    bars = [Bar(i * slot + slot * 0.15, HEIGHT - 24 - (HEIGHT - 40) * n / top, slot * 0.7, (HEIGHT - 40) * n / top,
                "bar-pending", f"{label}: {n} pending") for i, (label, n) in enumerate(o.pending_by_age)]  # fmt: skip
    labels = [(i * slot + slot / 2, label, n) for i, (label, n) in enumerate(o.pending_by_age)]
    return {"bars": bars, "labels": labels, "top": top}


def _per_day(o: Overview) -> dict[str, Any]:
    totals = [sum(o.per_day[k][d] for k in OUTCOMES) for d in range(len(o.days))]
    top = _scale(max(totals, default=0))
    slot = WIDTH / len(o.days)
    bars: list[Bar] = []
    for d, day in enumerate(o.days):
        base = float(HEIGHT - 24)
        for outcome in OUTCOMES:
            n = o.per_day[outcome][d]
            if n:
                h = (HEIGHT - 40) * n / top
                base -= h
                bars.append(Bar(d * slot + 1, base, slot - 2, h, f"bar-{outcome}", f"{day}: {n} {outcome}"))
    # Label every fifth day back from today (today is the one people look for), none cut at the edge.
    ticks = [(min(d * slot + slot / 2, WIDTH - 18), o.days[d][5:]) for d in range(len(o.days) - 1, -1, -5)
             if d * slot > 20]  # fmt: skip
    return {"bars": bars, "ticks": ticks, "top": top}


def _medians(o: Overview) -> dict[str, Any]:
    rows = o.median_by_route[:12]
    top = max((m for _, m, _ in rows), default=1.0) or 1.0
    height = 26 * len(rows) + 4
    bars = [Bar(170, 4 + i * 26, (WIDTH - 260) * m / top, 18, "bar-median",
                f"{route}: median {humanize_delta(m).removeprefix('in ')} over {n} decisions")
            for i, (route, m, n) in enumerate(rows)]  # fmt: skip
    labels = [
        (route, humanize_delta(m).removeprefix("in "), n, 4 + i * 26 + 14) for i, (route, m, n) in enumerate(rows)
    ]
    return {"bars": bars, "labels": labels, "height": height}


async def overview_page(request: Request, web: Web) -> Response:
    session = session_of(request)
    assert session is not None
    o = await overview(web.channels.service.store, session.approver, web.clock())
    return page(request, web, "overview.html", o=o, pending=_pending(o), per_day=_per_day(o), medians=_medians(o),
                width=WIDTH, height=HEIGHT, outcomes=OUTCOMES)  # fmt: skip


def routes(web: Web) -> list[Route]:
    return [Route("/overview", signed_in(web, overview_page), methods=["GET"])]
