"""Slack benchmarks, against the fake Slack in tests/ (python -m benchmarks runs them too).

(p) latency from a button press at the fake Slack (a Socket Mode envelope) to a waiting
    check_decision returning, with Slack held in the same process and in another process
                                                      target: p50 <= 150 ms across, as Telegram's (e)
(q) the burst figure (g) for Slack: 1,000 requests in 10 s to one approver → messages sent,
    rate-limit violations (more than ~1 post a second per channel), Approve all decides all
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, Status
from signoff.server.service import NewRequest
from tests.fake_slack import APP_TOKEN, BOT_TOKEN, U_ALICE, FakeSlack, Message, dm_id, fake_slack
from tests.slack_support import PREFIX

from .telegram import pct

SIGNOFF = str(Path(sys.executable).with_name("signoff"))

TOKENS = {"SIGNOFF_SLACK_BOT_TOKEN": BOT_TOKEN, "SIGNOFF_SLACK_APP_TOKEN": APP_TOKEN}


def write_config(folder: Path, fake: FakeSlack, *, threshold: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "signoff.toml"
    path.write_text(
        textwrap.dedent(f"""
        [store]
        path = "bench.db"
        [server]
        port = 0
        [slack]
        api_base_url = "{fake.api_url}"
        lease_ttl = "3s"
        [defaults]
        digest_threshold = {threshold}
        [approvers.alice]
        slack_user_id = "{U_ALICE}"
        [[routes]]
        name = "default"
        approvers = ["alice"]
        allow_bulk = true
    """)
    )
    return path


def shows(message: Message, text: str) -> bool:
    return text in message.text or any(text in str(b) for b in message.blocks)


async def prompt(fake: FakeSlack, rid: str) -> Message:
    return await fake.wait_for(  # type: ignore[no-any-return]
        lambda: next((m for m in fake.dm(U_ALICE) if shows(m, rid) and m.buttons()), None), 60
    )


async def press_to_return(fake: FakeSlack, client: Client, n: int) -> list[float]:
    latencies: list[float] = []
    for i in range(n):
        r = await client.call_tool("request_approval", {"action": "deploy", "summary": f"bench {i}"})
        assert r.structured_content is not None
        rid = r.structured_content["request_id"]
        msg = await prompt(fake, rid)
        waiting = asyncio.create_task(client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 30}))
        await asyncio.sleep(0.05)  # the waiter is parked, as an agent's would be
        t0 = time.perf_counter()
        await fake.press(U_ALICE, msg, PREFIX + "approve")
        result = await waiting
        latencies.append(time.perf_counter() - t0)
        assert result.structured_content is not None and result.structured_content["status"] == "approved"
    return latencies


@asynccontextmanager
async def slack_on_fake(make_config: Callable[[FakeSlack], Path]) -> AsyncIterator[tuple[FakeSlack, App]]:
    """The fake Slack and an app of this process holding the Slack connection; yields once it is connected."""
    async with fake_slack() as fake:
        config = load_config(make_config(fake))
        os.environ.update(TOKENS)
        try:
            async with open_app(config) as app:
                await fake.wait_for(lambda: fake.live_connections >= 1, 60)
                yield fake, app
        finally:
            for name in TOKENS:
                del os.environ[name]


async def bench_press_same_process(folder: Path, n: int) -> list[float]:
    async with slack_on_fake(lambda fake: write_config(folder / "same", fake)) as (fake, app):  # noqa: SIM117
        async with Client(build_mcp(app.service, transport="memory")) as client:
            return await press_to_return(fake, client, n)


async def bench_press_cross_process(folder: Path, n: int) -> list[float]:
    async with fake_slack() as fake:
        path = write_config(folder / "cross", fake)
        env = {**os.environ, **TOKENS, "SIGNOFF_LOG_LEVEL": "WARNING"}
        holder = subprocess.Popen([SIGNOFF, "serve", "--config", str(path)], env=env, stdin=subprocess.DEVNULL)
        try:
            await fake.wait_for(lambda: fake.live_connections >= 1, 60)
            async with open_app(load_config(path)) as app, Client(build_mcp(app.service, transport="memory")) as client:
                return await press_to_return(fake, client, n)  # no tokens here: the other process holds Slack
        finally:
            holder.terminate()
            holder.wait(timeout=30)


def _posts(fake: FakeSlack) -> int:
    return len(fake.sent("chat.postMessage"))


async def bench_burst(folder: Path, count: int, seconds: float) -> dict[str, Any]:
    async with slack_on_fake(lambda fake: write_config(folder / "burst", fake, threshold=5)) as (fake, app):
        agent = Actor("agent", "bench", "mcp")
        ids: list[str] = []
        t0 = time.monotonic()
        for i in range(count):  # evenly over `seconds`, as a runaway agent would
            ids.append((await app.service.request_approval(NewRequest("refund", f"Refund {i}"), agent)).id)
            lag = t0 + seconds * (i + 1) / count - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
        filed = time.monotonic() - t0
        digest = await fake.wait_for(
            lambda: next((m for m in fake.dm(U_ALICE) if shows(m, f"{count} pending") and m.buttons()), None), 120
        )
        during = _posts(fake) + len(fake.sent("chat.update"))
        presses, t1 = 0, time.monotonic()
        pressed: str | None = None
        while True:
            # The newest render: the message edited with new buttons since the last press (or done).
            def moved_on(before: str | None = pressed) -> bool:
                return not digest.buttons() or digest.find(PREFIX + "approve_all")["value"] != before

            await fake.wait_for(moved_on, 120)
            if not digest.buttons():
                break
            pressed = digest.find(PREFIX + "approve_all")["value"]
            await fake.press(U_ALICE, digest, PREFIX + "approve_all")
            presses += 1
        pressing = time.monotonic() - t1
        final = [await app.service.get(rid) for rid in ids]
    stale = sum("out of date" in m.text for m in fake.ephemerals_for(U_ALICE))
    return {"filed_in": filed, "calls_during": during, "posts": _posts(fake), "updates": len(fake.sent("chat.update")),
            "violations": fake.rate_violations(), "approved": sum(r.status is Status.APPROVED for r in final),
            "by_alice": sum(r.decided_by == "alice" for r in final), "presses": presses, "stale": stale,
            "pressing": pressing, "errors": len(fake.errors), "in_dm": len(fake.channel(dm_id(U_ALICE)))}  # fmt: skip


def run(folder: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    n = 8 if quick else 30
    same = asyncio.run(bench_press_same_process(folder, n))
    cross = asyncio.run(bench_press_cross_process(folder, n))
    count = 200 if quick else 1000
    q = asyncio.run(bench_burst(folder, count, 2.0 if quick else 10.0))
    return [
        ("(p) Slack press -> check_decision, same process", f"p50 {pct(same, .5) * 1e3:.1f} ms, p95 {pct(same, .95) * 1e3:.1f} ms", "-", True),
        ("(p) Slack press -> check_decision, across", f"p50 {pct(cross, .5) * 1e3:.1f} ms, p95 {pct(cross, .95) * 1e3:.1f} ms",
         "p50 <= 150 ms", statistics.median(cross) <= 0.150),
        (f"(q) Slack: {count} requests in {q['filed_in']:.1f} s to one approver",
         f"{q['calls_during']} posts+edits while they landed ({q['posts']} posts, {q['updates']} edits in all), "
         f"{q['violations']} rate violations, {q['errors']} refused calls; Approve all: {q['approved']}/{count} approved "
         f"in {q['presses']} presses ({q['pressing']:.0f} s, {q['stale']} out of date)",
         "<= 40, 0, all", q["calls_during"] <= 40 and q["violations"] == 0 and q["errors"] == 0
         and q["approved"] == q["by_alice"] == count and q["stale"] == 0),
    ]  # fmt: skip


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, measured, target, ok in run(Path(tmp), "--quick" in sys.argv):
            print(f"{name}  {measured}  {target}  {'OK' if ok else 'MISSED'}")
