"""Several `signoff serve` instances on one PostgreSQL, against one instance on SQLite.

    python -m benchmarks.instances [--quick]      (python -m benchmarks runs it too)

(k) request_approval throughput: C agents, each with its own MCP session over streamable HTTP,
    file N requests each, one after another, on 1 instance on PostgreSQL, on 3 instances on one
    PostgreSQL (agents spread round-robin), and on 1 instance on SQLite; the same load, in rounds
    that take turns so drift hits all three alike. The route is a pending one with an approver who
    has a Telegram chat (no bot runs): each call writes what a real request writes, the request, its
    audit event (the hash chain extended under its lock) and its outbox prompt, and on PostgreSQL
    the notifications that wake the other instances. An auto route would skip the outbox.
                                  printed: requests/s, 3-PG/1-PG and 1-PG/1-SQLite (no target)
(l) a decision committed by another instance -> a check_decision waiting on instance B returning.
    The decider is an app opened in this process on the same store (``open_app(config,
    background=False)``, as the console's commands do): "commit" is when its ``decide`` returns.
    PostgreSQL (B wakes on NOTIFY) side by side with SQLite (B polls the file's data_version every
    50 ms; each decision comes at a random point of that): rounds take turns.
                                   target: PostgreSQL p50 <= 20 ms

PostgreSQL: ``$SIGNOFF_BENCH_POSTGRES_URL`` if set, else a throwaway cluster (tests/pg_cluster.py,
which needs PostgreSQL's server binaries installed); each store is a fresh schema, dropped at the end.
Without either, (k) and (l) are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2

from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.models import Actor
from signoff.server.waiting import WATCH_INTERVAL

from .http import Agent, pct

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
CONFIG = """
[store]
{store}
[server]
port = 0
max_wait = "50s"
[approvers.ops]
telegram_user_id = 5000
[[routes]]
name = "default"
approvers = ["ops"]
"""
DECIDER = Actor("human", "bench", "console")
Row = tuple[str, str, str, bool]


def postgres() -> tuple[str | None, str]:
    """(a PostgreSQL server URL, where it comes from) or (None, why there is none)."""
    given = os.environ.get("SIGNOFF_BENCH_POSTGRES_URL")
    if given:
        return given, "$SIGNOFF_BENCH_POSTGRES_URL"
    try:
        from tests import pg_cluster
    except ImportError as exc:  # an installed copy without the tests
        return None, f"set $SIGNOFF_BENCH_POSTGRES_URL (tests/pg_cluster.py is not importable: {exc})"
    try:
        url = pg_cluster.server_url()
    except RuntimeError as exc:
        return None, str(exc)
    if url is None:
        return None, f"set $SIGNOFF_BENCH_POSTGRES_URL, or install PostgreSQL's server ({pg_cluster.why_not()})"
    return url, "a throwaway cluster (tests/pg_cluster.py)"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")


def _env(folder: Path) -> dict[str, str]:
    """This environment, but for what would change what is measured (a bot, a token, another store)."""
    env = dict(os.environ, SIGNOFF_STATE_DIR=str(folder / "state"), XDG_CONFIG_HOME=str(folder))
    for name in ("SIGNOFF_TELEGRAM_TOKEN", "SIGNOFF_SLACK_BOT_TOKEN", "SIGNOFF_CALLBACK_SECRET", "SIGNOFF_HTTP_TOKEN",
                 "SIGNOFF_DATABASE_URL", "SIGNOFF_CONFIG"):  # fmt: skip
        env.pop(name, None)
    return env


@contextlib.contextmanager
def servers(config: Path, count: int) -> Iterator[list[Server]]:
    """``count`` `signoff serve` processes on ``config``, started side by side."""
    folder = config.parent
    env = _env(folder)
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for _ in range(count):
            log = folder / f"serve-{len(list(folder.glob('serve-*.log')))}.log"
            with open(log, "wb") as err:
                started.append((subprocess.Popen([SIGNOFF, "serve", "--config", str(config)], env=env,
                                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err), log))  # fmt: skip
        ready: list[Server] = []
        for proc, log in started:
            deadline = time.monotonic() + 60
            while not (found := re.search(r"listening on (http://\S+/mcp)", log.read_text(errors="replace"))):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"signoff serve did not start:\n{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)
            server = Server(proc, found.group(1))
            # Serving (uvicorn handles SIGTERM from here on) once /healthz answers.
            httpx2.get(server.base + "/healthz", timeout=30).raise_for_status()
            ready.append(server)
        yield ready
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def write_config(folder: Path, database_url: str | None) -> Path:
    """A config on ``database_url`` (PostgreSQL, as ``[store] url``), or on a SQLite file in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "signoff.toml"
    store = 'path = "bench.db"' if database_url is None else f'url = "{database_url}"'
    config.write_text(CONFIG.format(store=store), encoding="utf-8")
    return config


@contextlib.contextmanager
def _no_database_url() -> Iterator[None]:
    """Configs loaded here mean the store they name: $SIGNOFF_DATABASE_URL would override it."""
    saved = os.environ.pop("SIGNOFF_DATABASE_URL", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["SIGNOFF_DATABASE_URL"] = saved


# --- (k) -------------------------------------------------------------------------------------------------


async def _agents(http: httpx2.AsyncClient, urls: list[str], clients: int) -> list[Agent]:
    agents = [Agent(http, urls[i % len(urls)]) for i in range(clients)]
    await asyncio.gather(*(a.connect() for a in agents))
    return agents


async def _file(agents: list[Agent], each: int, label: str) -> float:
    """Seconds for every agent to file ``each`` requests, one after another (agents at once)."""

    async def one(agent: Agent, k: int) -> None:
        for i in range(each):
            out = await agent.call("request_approval", {"action": "deploy", "summary": f"{label} {k}.{i}"})
            assert out["status"] == "pending", out

    t0 = time.perf_counter()
    await asyncio.gather(*(one(a, k) for k, a in enumerate(agents)))
    return time.perf_counter() - t0


async def bench_throughput(fleets: dict[str, list[Server]], clients: int, each: int, rounds: int) -> dict[str, float]:
    limits = httpx2.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx2.AsyncClient(timeout=120, limits=limits) as http:
        agents = {name: await _agents(http, [s.url for s in fleet], clients) for name, fleet in fleets.items()}
        for name, group in agents.items():  # warm up every path
            await _file(group, 5, f"warm {name}")
        spent = dict.fromkeys(fleets, 0.0)
        for r in range(rounds):
            for name, group in agents.items():
                spent[name] += await _file(group, each // rounds, f"{name} round {r}")
    done = clients * (each // rounds) * rounds
    return {name: done / seconds for name, seconds in spent.items()}


# --- (l) -------------------------------------------------------------------------------------------------


async def _waiting(http: httpx2.AsyncClient, server: Server) -> None:
    """Until B holds the waiting call (its /healthz counts it; each answer is a round trip)."""
    for _ in range(10_000):
        if (await http.get(server.base + "/healthz")).json()["waiting"] >= 1:
            return
    raise RuntimeError("the waiter never reached instance B")


async def bench_wake(b_servers: dict[str, Server], configs: dict[str, Path], rounds: int) -> dict[str, list[float]]:
    """Seconds from a decision's commit in this process to the waiter on B returning, per store."""
    latencies: dict[str, list[float]] = {name: [] for name in b_servers}
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(timeout=120))
        with _no_database_url():
            loaded = {name: load_config(config) for name, config in configs.items()}
        apps = {name: await stack.enter_async_context(open_app(c, background=False)) for name, c in loaded.items()}
        filers = {name: Agent(http, s.url) for name, s in b_servers.items()}
        waiters = {name: Agent(http, s.url) for name, s in b_servers.items()}
        for agent in [*filers.values(), *waiters.values()]:
            await agent.connect()
        for i in range(rounds + 5):  # the first five warm up
            for name, server in b_servers.items():
                rid = (await filers[name].call("request_approval", {"action": "deploy", "summary": f"wake {i}"}))[
                    "request_id"
                ]

                async def wait(rid: str = rid, name: str = name) -> float:
                    out = await waiters[name].call("check_decision", {"request_id": rid, "wait_seconds": 30})
                    assert out["status"] == "approved", out
                    return time.perf_counter()

                waiter = asyncio.create_task(wait())
                await _waiting(http, server)
                # At a random point of B's 50 ms look at the SQLite file (WATCH_INTERVAL), which starts
                # when the waiter comes: a fixed delay would always hit the same point of it.
                await asyncio.sleep(random.uniform(0, WATCH_INTERVAL))
                decision = await apps[name].service.decide(rid, True, DECIDER)
                committed = time.perf_counter()
                assert decision.changed
                returned = await waiter
                if i >= 5:
                    latencies[name].append(returned - committed)
    return latencies


def run(folder: Path, quick: bool) -> list[Row]:
    server_url, source = postgres()
    if server_url is None:
        print(f"(k), (l) skipped: no PostgreSQL: {source}")
        return []
    from tests import pg_cluster

    schemas = [pg_cluster.fresh_schema_url(server_url) for _ in range(2)]
    clients, each, rounds = (4, 24, 2) if quick else (8, 120, 4)
    try:
        where = folder / "instances"
        configs = {"pg1": write_config(where / "pg1", schemas[0]), "pg3": write_config(where / "pg3", schemas[1]),
                   "sqlite": write_config(where / "sqlite", None)}  # fmt: skip
        with (
            servers(configs["pg1"], 1) as pg1,
            servers(configs["pg3"], 3) as pg3,
            servers(configs["sqlite"], 1) as sqlite,
        ):
            k = asyncio.run(bench_throughput({"pg1": pg1, "pg3": pg3, "sqlite": sqlite}, clients, each, rounds))
            lat = asyncio.run(bench_wake({"postgresql": pg1[0], "sqlite": sqlite[0]},
                                         {"postgresql": configs["pg1"], "sqlite": configs["sqlite"]},
                                         30 if quick else 200))  # fmt: skip
    finally:
        for url in schemas:
            pg_cluster.drop_schema_of(url)
    pg, lite = lat["postgresql"], lat["sqlite"]
    ms = {name: (statistics.median(v) * 1e3, pct(v, 0.95) * 1e3) for name, v in lat.items()}
    cpus = os.cpu_count()
    return [
        (f"(k) request_approval/s, {clients} agents x {each}", f"1 PG {k['pg1']:.0f}/s, 3 PG {k['pg3']:.0f}/s, "
         f"1 SQLite {k['sqlite']:.0f}/s ({cpus} CPUs, PostgreSQL: {source})",
         f"3PG/1PG {k['pg3'] / k['pg1']:.2f}x, 1PG/SQLite {k['pg1'] / k['sqlite']:.2f}x", True),
        (f"(l) decision in another instance -> waiter on B, {len(pg)} rounds",
         f"PostgreSQL p50 {ms['postgresql'][0]:.1f} ms, p95 {ms['postgresql'][1]:.1f} ms; SQLite p50 "
         f"{ms['sqlite'][0]:.1f} ms, p95 {ms['sqlite'][1]:.1f} ms ({len(lite)} rounds)",
         "PostgreSQL p50 <= 20 ms", ms["postgresql"][0] <= 20),
    ]  # fmt: skip


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.instances")
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds (a smoke run)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp), options.quick):
            print(f"{row[0]:<48}  {row[1]:<90}  {row[2]:<34}  {'OK' if row[3] else 'MISSED'}")
