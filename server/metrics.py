"""``/metrics`` on ``signoff serve``: Prometheus text format, computed from the database.

Several processes decide requests (hooks, ``signoff mcp``, the console, whichever process
holds the bot), so counting in this process's memory would miss most of them. The database
is the one source of truth, and its audit log is append-only with an increasing ``seq``: the
counters and the latency histogram are folded from the audit events this exporter has not
read yet (a bounded range scan on the primary key at each scrape; the first scrape reads the
history once, in chunks). The gauges are read at scrape time through partial indexes that
cover only live rows (pending requests, undelivered outbox rows, leases). Only what the
database does not record is counted in memory: the Telegram Bot API's error answers, as seen
by this process when it runs the bot.

This module is imported by every process that may run the bot (to count Telegram errors), so
it must stay light: ``prometheus_client`` is imported only when ``/metrics`` is first scraped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

FINAL = ("approved", "rejected", "expired", "cancelled", "answered")  # the audit events that end a request
# Decision latency buckets, in seconds: from a policy's instant answer to a day-long wait.
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)
CHUNK = 10_000  # audit events read per query

_lock = threading.Lock()
_telegram_errors: Counter[str] = Counter()


def count_telegram_error(code: str) -> None:
    """Count one failed Bot API call: its HTTP status (``"429"``), ``"timeout"`` or ``"network"``."""
    with _lock:
        _telegram_errors[code] += 1


def telegram_errors() -> dict[str, int]:
    with _lock:
        return dict(_telegram_errors)


_slack_errors: Counter[str] = Counter()


def count_slack_error(error: str) -> None:
    """Count one failed Slack Web API call: Slack's error (``"ratelimited"``, ``"channel_not_found"``…),
    an HTTP status (``"503"``), ``"timeout"`` or ``"network"``."""
    with _lock:
        _slack_errors[error[:40]] += 1


def slack_errors() -> dict[str, int]:
    with _lock:
        return dict(_slack_errors)


@dataclass
class _Latency:
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


@dataclass
class _Folded:
    """What the audit events read so far add up to."""

    seq: int = 0
    created: Counter[str] = field(default_factory=Counter)  # route
    decided: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, status)
    latency: dict[str, _Latency] = field(default_factory=dict)  # channel
    callbacks_delivered: int = 0
    callback_failures_before_delivery: int = 0


_EVENTS = (
    "SELECT a.seq, a.event, a.at, a.channel, a.data, r.route, r.created_at FROM audit AS a "
    "JOIN requests AS r ON r.id = a.request_id WHERE a.seq > ? ORDER BY a.seq LIMIT ?"
)
_PENDING = "SELECT route, count(*) FROM requests WHERE status = 'pending' GROUP BY route"
# The oldest row that should have gone out by now: due, or already tried (rows held for quiet
# hours are neither, and do not count).
_BACKLOG = (
    "SELECT kind, count(*), min(CASE WHEN next_attempt_at <= ? OR attempts > 0 THEN created_at END) "
    "FROM outbox WHERE done_at IS NULL GROUP BY kind"
)
# Callback rows whose last attempt failed: still retrying (done_at NULL) or given up. A delivered
# row's failed attempts are counted from its callback_delivered event instead.
_FAILED = (
    "SELECT count(*) FILTER (WHERE done_at IS NULL), coalesce(sum(attempts), 0) FROM outbox "
    "WHERE kind = 'callback' AND last_error IS NOT NULL"
)
_LEASES = "SELECT name, expires_at FROM leases"


class DbCollector:
    """A ``prometheus_client`` collector that reads the signoff database at every scrape."""

    def __init__(self, db_path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.db_path = db_path  # or PostgreSQL's URL
        self.clock = clock
        self._folded = _Folded()
        self._lock = threading.Lock()  # scrapes may overlap; each runs in a worker thread

    def _connect(self) -> Any:
        if isinstance(self.db_path, str):
            from .pg import SyncConn

            return SyncConn(self.db_path)
        if not self.db_path.exists():
            return None
        conn = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _fold(self, conn: Any) -> None:
        """Read the audit events after the last one read, in chunks."""
        f = self._folded
        (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()
        if last < f.seq:  # another database file now sits at this path: start over
            f = self._folded = _Folded()
        while f.seq < last:
            rows = conn.execute(_EVENTS, (f.seq, CHUNK)).fetchall()
            if not rows:
                break
            for seq, event, at, channel, data, route, created_at in rows:
                f.seq = seq
                if event == "created":
                    f.created[route] += 1
                elif event in FINAL:
                    f.decided[(route, event)] += 1
                    f.latency.setdefault(channel, _Latency()).observe(max(0.0, float(at) - float(created_at)))
                elif event == "callback_delivered":
                    f.callbacks_delivered += 1
                    attempt = _attempt(data)
                    f.callback_failures_before_delivery += max(0, attempt - 1)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        with self._lock:
            conn = self._connect()
            try:
                now = self.clock()
                if conn is not None and _has_schema(conn):
                    self._fold(conn)
                    pending = conn.execute(_PENDING).fetchall()
                    backlog = conn.execute(_BACKLOG, (now,)).fetchall()
                    failing, failed_attempts = conn.execute(_FAILED).fetchone()
                    leases = conn.execute(_LEASES).fetchall()
                else:  # nothing was ever filed: every count is zero
                    pending, backlog, failing, failed_attempts, leases = [], [], 0, 0, []
            finally:
                if conn is not None:
                    conn.close()
            f = self._folded

            created = CounterMetricFamily("signoff_requests_created", "Requests filed, by route.", labels=["route"])
            for route, n in sorted(f.created.items()):
                created.add_metric([route], n)
            decided = CounterMetricFamily(
                "signoff_requests_decided",
                "Requests that reached a final status (approved, rejected, expired, cancelled, answered), by route and status.",
                labels=["route", "status"],
            )
            for (route, status), n in sorted(f.decided.items()):
                decided.add_metric([route, status], n)
            latency = HistogramMetricFamily(
                "signoff_decision_latency_seconds",
                "From filing to the final status, by the channel that decided: telegram, console, policy and "
                "grant (at once), scheduler (on timeout), mcp (cancelled by the agent).",
                labels=["channel"],
            )
            for channel, h in sorted(f.latency.items()):
                cumulative = [(repr(b), n) for b, n in zip(LATENCY_BUCKETS, h.buckets, strict=True)]
                latency.add_metric([channel], [*cumulative, ("+Inf", h.count)], sum_value=h.total)
            delivered = CounterMetricFamily(
                "signoff_callback_deliveries", "Decision callbacks the receiver accepted (2xx)."
            )
            delivered.add_metric([], f.callbacks_delivered)
            failures = CounterMetricFamily(
                "signoff_callback_failures",
                "Failed decision callback attempts (each is retried with backoff until the receiver accepts).",
            )
            failures.add_metric([], f.callback_failures_before_delivery + int(failed_attempts))
        yield created
        yield decided
        yield latency
        yield delivered
        yield failures

        failing_now = GaugeMetricFamily(
            "signoff_callbacks_failing", "Decision callbacks not delivered yet whose last attempt failed."
        )
        failing_now.add_metric([], int(failing))
        yield failing_now
        pending_g = GaugeMetricFamily("signoff_requests_pending", "Requests waiting for a decision, by route.",
                                      labels=["route"])  # fmt: skip
        for route, n in pending:
            pending_g.add_metric([route], n)
        yield pending_g
        backlog_g = GaugeMetricFamily(
            "signoff_outbox_backlog",
            "Outbox rows not delivered yet, by kind (prompt, outcome, reminder, digest, callback, …).",
            labels=["kind"],
        )
        oldest = GaugeMetricFamily("signoff_outbox_oldest_age_seconds",
                                   "Age of the oldest outbox row that is due or was tried and not delivered, by kind (0: none).", labels=["kind"])  # fmt: skip
        for kind, n, first in backlog:
            backlog_g.add_metric([kind], n)
            oldest.add_metric([kind], 0.0 if first is None else max(0.0, now - float(first)))
        yield backlog_g
        yield oldest
        held = GaugeMetricFamily(
            "signoff_lease_held",
            "1 while some process holds the lease (telegram-bot: runs the bot and drains the outbox; "
            "slack-connection: holds Slack and drains its outbox; callbacks: delivers decision callbacks), else 0.",
            labels=["lease"],
        )
        for name, expires_at in leases:
            held.add_metric([name], 1.0 if float(expires_at) > now else 0.0)
        yield held
        tg = CounterMetricFamily(
            "signoff_telegram_api_errors",
            "Failed Telegram Bot API calls made by this process, by HTTP status (or timeout, network).",
            labels=["code"],
        )
        for code, n in sorted(telegram_errors().items()):
            tg.add_metric([code], n)
        yield tg
        sl = CounterMetricFamily(
            "signoff_slack_api_errors",
            "Failed Slack Web API calls made by this process, by Slack's error (or HTTP status, timeout, network).",
            labels=["error"],
        )
        for error, n in sorted(slack_errors().items()):
            sl.add_metric([error], n)
        yield sl


def _has_schema(conn: Any) -> bool:
    if not isinstance(conn, sqlite3.Connection):
        return all(conn.has_table(name) for name in ("audit", "requests", "outbox", "leases"))
    found = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                         "('audit', 'requests', 'outbox', 'leases')").fetchone()  # fmt: skip
    return int(found[0]) == 4


def _attempt(data: str | None) -> int:
    try:
        value = json.loads(data or "{}").get("attempt", 1)
    except (ValueError, AttributeError):
        return 1
    return value if isinstance(value, int) else 1


class Exporter:
    """What ``/metrics`` serves: this database's metrics plus the build info, rendered on demand.
    ``prometheus_client`` is imported on the first ``render``, never before."""

    def __init__(self, db_path: Path | str, version: str, *, clock: Callable[[], float] = time.time) -> None:
        self.collector = DbCollector(db_path, clock=clock)
        self.version = version
        self._registry: CollectorRegistry | None = None

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry, Info

            registry = CollectorRegistry(auto_describe=False)
            Info("signoff_build", "The signoff version serving these metrics.", registry=registry).info(
                {"version": self.version}
            )
            registry.register(self.collector)
            self._registry = registry
        return self._registry

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (Prometheus text, or OpenMetrics); blocking."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry()), content_type
