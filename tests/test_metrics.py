"""``/metrics``: Prometheus text from the database (a real SQLite file), scraped from a real
``signoff serve`` process or the Starlette app, and read back with prometheus_client's parser."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signoff.server import audit_chain, metrics
from signoff.server.app import App, open_app
from signoff.server.config import load_config, parse_config
from signoff.server.http import build_http_app
from signoff.server.metrics import CHUNK
from signoff.server.models import Actor
from signoff.server.service import NewRequest

from .conftest import ROOT
from .fake_telegram import FakeTelegram
from .policies import Clock
from .procs import cli, serve
from .test_telegram import ALICE, telegram_config

pytestmark = pytest.mark.anyio
AGENT = Actor("agent", "claude-code", "mcp")
TOKEN = "metrics-bearer-token-for-tests"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(base: str, token: str | None = TOKEN) -> Samples:
    async with httpx.AsyncClient() as h:
        got = await h.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(got.text)


async def file_some(config_path: Path, *, ago: float) -> list[str]:
    """File requests as another process would, ``ago`` seconds in the past; return the pending ones."""
    config = load_config(config_path)
    async with open_app(config, background=False, clock=lambda: time.time() - ago) as app:
        for action in ("read_file", "list_dir", "drop_table"):  # decided at once by the routes' policies
            await app.service.request_approval(NewRequest(action, "x"), AGENT)
        return [(await app.service.request_approval(NewRequest("deploy", f"ship {n}"), AGENT)).id for n in (1, 2)]


async def test_a_serve_process_reports_what_every_process_decided(config_path: Path) -> None:
    pending = await file_some(config_path, ago=100)
    async with serve(config_path, SIGNOFF_HTTP_TOKEN=TOKEN) as served:
        base = served.url.removesuffix("/mcp")
        async with httpx.AsyncClient() as h:  # the same bearer rule as /mcp
            assert (await h.get(f"{base}/metrics")).status_code == 401
            assert (await h.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
            om = await h.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}",
                                                         "Accept": "application/openmetrics-text"})  # fmt: skip
            assert om.status_code == 200 and om.headers["content-type"].startswith("application/openmetrics-text")
        assert cli("approve", pending[0], config=config_path).returncode == 0  # another process: the console
        m = await scrape(base)
        assert value(m, "signoff_requests_created_total", route="reads") == 2
        assert value(m, "signoff_requests_created_total", route="blocked") == 1
        assert value(m, "signoff_requests_created_total", route="default") == 2
        assert value(m, "signoff_requests_decided_total", route="reads", status="approved") == 2
        assert value(m, "signoff_requests_decided_total", route="blocked", status="rejected") == 1
        assert value(m, "signoff_requests_decided_total", route="default", status="approved") == 1
        assert value(m, "signoff_requests_pending", route="default") == 1
        # Latency by the deciding channel: policies at once; the console ~100 s after filing.
        assert value(m, "signoff_decision_latency_seconds_count", channel="policy") == 3
        assert value(m, "signoff_decision_latency_seconds_bucket", channel="policy", le="1.0") == 3
        assert value(m, "signoff_decision_latency_seconds_bucket", channel="console", le="60.0") == 0
        assert value(m, "signoff_decision_latency_seconds_bucket", channel="console", le="120.0") == 1
        assert 100 <= (value(m, "signoff_decision_latency_seconds_sum", channel="console") or 0) < 120
        # No bot runs (no token): both approvers' prompts wait, the approved request's outcomes too.
        assert value(m, "signoff_outbox_backlog", kind="prompt") == 4
        assert value(m, "signoff_outbox_backlog", kind="outcome") == 2
        assert 100 <= (value(m, "signoff_outbox_oldest_age_seconds", kind="prompt") or 0) < 200
        assert value(m, "signoff_callback_deliveries_total") == 0
        assert value(m, "signoff_build_info", version=cli("--version").stdout.split()[-1]) == 1

        # Counters only grow, from events read since the last scrape; gauges follow the database.
        assert cli("reject", pending[1], "--reason", "not today", config=config_path).returncode == 0
        m = await scrape(base)
        assert value(m, "signoff_requests_decided_total", route="default", status="approved") == 1
        assert value(m, "signoff_requests_decided_total", route="default", status="rejected") == 1
        assert value(m, "signoff_decision_latency_seconds_count", channel="console") == 2
        assert value(m, "signoff_requests_pending", route="default") is None
        assert value(m, "signoff_outbox_backlog", kind="outcome") == 4
    assert TOKEN not in "".join(served.stderr)


async def test_telegram_api_errors_are_counted_by_code(fake: FakeTelegram, tmp_path: Path) -> None:
    config_path = tmp_path / "signoff.toml"
    config_path.write_text(telegram_config(fake.api_base_url))
    fake.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    async with serve(config_path, SIGNOFF_TELEGRAM_TOKEN=fake.token, SIGNOFF_HTTP_TOKEN=TOKEN) as served:
        await served.wait_for_log("this process runs the bot now")
        base = served.url.removesuffix("/mcp")
        m = await scrape(base)
        assert value(m, "signoff_lease_held", lease="telegram-bot") == 1
        assert value(m, "signoff_telegram_api_errors_total", code="403") is None
        config = load_config(config_path)
        async with open_app(config, background=False) as app:
            rid = (await app.service.request_approval(NewRequest("deploy", "ship"), AGENT)).id
        # Both answers are counted by the serving process before it tries again; the prompt gets through.
        await fake.wait_for(lambda: any(rid in m.text for m in fake.chat(ALICE)))
        with anyio.fail_after(15):
            while value(m, "signoff_telegram_api_errors_total", code="429") != 1:
                calls = len(fake.calls)
                m = await scrape(base)
                if value(m, "signoff_telegram_api_errors_total", code="429") != 1:
                    await fake.wait_for(
                        lambda calls=calls: len(fake.calls) > calls
                    )  # the bot's next call (a poll, say)
        assert value(m, "signoff_telegram_api_errors_total", code="403") == 1
    assert fake.token not in "".join(served.stderr)


# --- the Starlette app, in this process ------------------------------------------------------


@dataclass
class Receiver:
    """A real HTTP receiver for decision callbacks: answers 503 until ``up``."""

    url: str = ""
    up: bool = False
    seen: list[int] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def handle(self, request: Request) -> Response:
        await request.body()
        self.seen.append(200 if self.up else 503)
        self.changed.set()
        return Response(status_code=self.seen[-1])


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/cb", r.handle, methods=["POST"])]),
                                           log_level="warning", lifespan="off"))  # fmt: skip
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    r.url = f"http://127.0.0.1:{sock.getsockname()[1]}/cb"
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield r
        finally:
            server.should_exit = True
    sock.close()


async def metrics_of(app: App) -> Samples:
    transport = httpx.ASGITransport(app=build_http_app(app, TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as h:
        assert (await h.get("/metrics")).status_code == 401
        got = await h.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert got.status_code == 200
    return parse(got.text)


async def eventually(app: App, check: Callable[[Samples], bool], within: float = 15) -> Samples:
    """Scrape until ``check(samples)`` holds (bounded: the deliverer writes right after each attempt)."""
    with anyio.fail_after(within):
        while not check(m := await metrics_of(app)):  # noqa: ASYNC110 - nothing to wait on: the scrape is the check
            await anyio.sleep(0.02)  # a poll interval, not a guess: the deadline above bounds the wait
        return m


async def test_callback_deliveries_and_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", "callback-secret-for-tests")
    monkeypatch.setenv("SIGNOFF_HTTP_TOKEN", TOKEN)
    clock = Clock()
    async with receiver() as hook:
        config = parse_config(
            f'[store]\npath = "signoff.db"\n[callbacks]\nallowed_urls = ["{hook.url}"]\n'
            '[[routes]]\nname = "reads"\nauto = "approve"\n',
            source="test",
            base_dir=tmp_path,
        )
        async with open_app(config, clock=clock) as app:
            await app.service.request_approval(NewRequest("read_x", "x", callback_url=hook.url), AGENT)
            m = await eventually(app, lambda m: value(m, "signoff_callback_failures_total") == 1)
            assert value(m, "signoff_callbacks_failing") == 1
            assert value(m, "signoff_callback_deliveries_total") == 0
            assert value(m, "signoff_outbox_backlog", kind="callback") == 1
            clock.advance(5)  # past the backoff
            m = await eventually(app, lambda m: value(m, "signoff_callback_failures_total") == 2)
            hook.up = True
            clock.advance(10)
            m = await eventually(app, lambda m: value(m, "signoff_callback_deliveries_total") == 1)
            assert value(m, "signoff_callback_failures_total") == 2  # still counted once delivered
            assert value(m, "signoff_callbacks_failing") == 0
            assert value(m, "signoff_outbox_backlog", kind="callback") is None
            assert value(m, "signoff_lease_held", lease="callbacks") == 1
    assert hook.seen == [503, 503, 200]


async def test_a_big_database_is_read_once_then_in_small_steps(config_path: Path) -> None:
    """The first scrape folds the whole audit log in chunks; later ones read only what is new,
    and the gauges' queries use the partial indexes on live rows."""
    await file_some(config_path, ago=10)
    db = load_config(config_path).db_path
    conn = sqlite3.connect(db)
    conn.create_function("signoff_audit_hash", 1 + len(audit_chain.FIELDS), audit_chain.event_hash, deterministic=True)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
    copied = ", ".join({"id": "?", "idempotency_key": "NULL"}.get(c, c) for c in columns)
    with conn:  # many decided requests, as after months of use: copies of a real one, audited by the triggers
        conn.executemany(f"INSERT INTO requests SELECT {copied} FROM requests WHERE route = 'reads' LIMIT 1",
                         [(f"req_bulk{n}",) for n in range(3 * CHUNK // 2)])  # fmt: skip
    for sql, index in ((metrics._PENDING, "requests_pending_by_deadline"), (metrics._BACKLOG, "outbox_undelivered"),
                       (metrics._FAILED, "outbox_failed")):  # fmt: skip
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", (0,) * sql.count("?")))
        assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, (sql, plan)
    conn.close()
    now = time.time()
    collector = metrics.DbCollector(db, clock=lambda: now)
    started = time.perf_counter()
    first = parse(generate_latest(collector).decode())  # type: ignore[arg-type]
    assert value(first, "signoff_requests_decided_total", route="reads", status="approved") == 2 + 3 * CHUNK // 2
    again = time.perf_counter()
    assert parse(generate_latest(collector).decode()) == first  # type: ignore[arg-type]
    assert time.perf_counter() - again < (again - started) / 3  # nothing new to fold: far cheaper than the first


def test_prometheus_client_is_imported_only_by_serve() -> None:
    """Hooks and `signoff mcp` load the metrics module (to count Telegram errors), never prometheus_client."""
    code = (
        "import sys; import signoff.server.cli, signoff.server.metrics, signoff.server.hook, "
        "signoff.adapters.telegram.channel; print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
