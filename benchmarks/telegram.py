"""Telegram benchmarks, against the fake Bot API in tests/ (python -m benchmarks runs them too).

(e) latency from a button press at the fake Bot API to a waiting check_decision returning,
    with the bot in the same process and in another process     target: p50 <= 150 ms across
(f) delivering 30 prompts to 3 approvers: wall time, and the fastest rate seen per chat and
    overall (limits: 1/s per chat, 30/s overall)
"""

from __future__ import annotations

import asyncio
import itertools
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
from signoff.server.models import Actor
from signoff.server.service import NewRequest
from tests.fake_telegram import FakeTelegram, Message, fake_telegram

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
USERS = (111, 222, 333)


def write_config(folder: Path, fake: FakeTelegram) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    approvers = "".join(f"[approvers.u{u}]\ntelegram_user_id = {u}\n" for u in USERS)
    text = (
        textwrap.dedent(f"""
        [store]
        path = "bench.db"
        [server]
        port = 0
        [telegram]
        api_base_url = "{fake.api_base_url}"
        lease_ttl = "3s"
        [defaults]
        digest_threshold = 100  # (f) measures the pacing of prompts, not digests: see (g)
    """)
        + approvers
        + '[[routes]]\nname = "default"\napprovers = ["u111", "u222", "u333"]\n'
    )
    path = folder / "signoff.toml"
    path.write_text(text)
    return path


async def prompt(fake: FakeTelegram, chat: int, rid: str) -> Message:
    return await fake.wait_for(lambda: next((m for m in fake.chat(chat) if rid in m.text and m.buttons()), None), 60)  # type: ignore[no-any-return]


async def press_to_return(fake: FakeTelegram, client: Client, n: int) -> list[float]:
    latencies: list[float] = []
    for i in range(n):
        r = await client.call_tool("request_approval", {"action": "deploy", "summary": f"bench {i}"})
        assert r.structured_content is not None
        rid = r.structured_content["request_id"]
        msg = await prompt(fake, USERS[0], rid)
        waiting = asyncio.create_task(client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 30}))
        await asyncio.sleep(0.05)  # the waiter is parked, as an agent's would be
        t0 = time.perf_counter()
        await fake.press(USERS[0], msg, msg.button("approve"))
        result = await waiting
        latencies.append(time.perf_counter() - t0)
        assert result.structured_content is not None and result.structured_content["status"] == "approved"
    return latencies


@asynccontextmanager
async def bot_on_fake(make_config: Callable[[FakeTelegram], Path]) -> AsyncIterator[tuple[FakeTelegram, App]]:
    """The fake Bot API, and an app of this process running the bot on it (the token is in the
    environment meanwhile); yields once the bot polls."""
    async with fake_telegram() as fake:
        config = load_config(make_config(fake))
        os.environ["SIGNOFF_TELEGRAM_TOKEN"] = fake.token
        try:
            async with open_app(config) as app:
                await fake.wait_for(lambda: fake.sent("getUpdates"), 60)
                yield fake, app
        finally:
            del os.environ["SIGNOFF_TELEGRAM_TOKEN"]


async def bench_press_same_process(folder: Path, n: int) -> list[float]:
    async with bot_on_fake(lambda fake: write_config(folder / "same", fake)) as (fake, app):  # noqa: SIM117 - app is needed for the client
        async with Client(build_mcp(app.service, transport="memory")) as client:
            return await press_to_return(fake, client, n)


async def bench_press_cross_process(folder: Path, n: int) -> list[float]:
    async with fake_telegram() as fake:
        path = write_config(folder / "cross", fake)
        env = {**os.environ, "SIGNOFF_TELEGRAM_TOKEN": fake.token, "SIGNOFF_LOG_LEVEL": "WARNING"}
        bot = subprocess.Popen([SIGNOFF, "serve", "--config", str(path)], env=env, stdin=subprocess.DEVNULL)
        try:
            await fake.wait_for(lambda: fake.sent("getUpdates"), 60)
            async with open_app(load_config(path)) as app, Client(build_mcp(app.service, transport="memory")) as client:
                return await press_to_return(fake, client, n)  # this process has no token: the other one runs the bot
        finally:
            bot.terminate()
            bot.wait(timeout=30)


async def bench_delivery(folder: Path, count: int) -> dict[str, Any]:
    async with bot_on_fake(lambda fake: write_config(folder / "delivery", fake)) as (fake, app):
        t0 = time.monotonic()
        for i in range(count):
            await app.service.request_approval(NewRequest("deploy", f"burst {i}"), Actor("agent", "bench", "mcp"))
        await fake.wait_for(lambda: sum(len(fake.chat(u)) for u in USERS) >= count * len(USERS), 600)
        elapsed = time.monotonic() - t0
    gaps = []
    for u in USERS:
        times = [m.sent_at for m in fake.chat(u)]
        gaps += [b - a for a, b in itertools.pairwise(times)]
    all_times = sorted(m.sent_at for m in fake.messages.values())
    busiest = max(sum(1 for t in all_times if s <= t < s + 1) for s in all_times)
    return {"seconds": elapsed, "min_gap_per_chat": min(gaps), "max_per_second": busiest,
            "per_chat": [len(fake.chat(u)) for u in USERS]}  # fmt: skip


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(folder: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    n = 8 if quick else 30
    same = asyncio.run(bench_press_same_process(folder, n))
    cross = asyncio.run(bench_press_cross_process(folder, n))
    f = asyncio.run(bench_delivery(folder, 10 if quick else 30))
    count = 10 if quick else 30
    return [
        ("(e) press -> check_decision, same process", f"p50 {pct(same, .5) * 1e3:.1f} ms, p95 {pct(same, .95) * 1e3:.1f} ms", "-", True),
        ("(e) press -> check_decision, across", f"p50 {pct(cross, .5) * 1e3:.1f} ms, p95 {pct(cross, .95) * 1e3:.1f} ms", "p50 <= 150 ms", statistics.median(cross) <= 0.150),
        (f"(f) {count} prompts to 3 approvers", f"{f['seconds']:.1f} s; per chat >= {f['min_gap_per_chat']:.2f} s apart; peak {f['max_per_second']}/s",
         "<= 1/s per chat, <= 30/s", f["min_gap_per_chat"] >= 0.95 and f["max_per_second"] <= 30 and f["per_chat"] == [count] * 3),
    ]  # fmt: skip
