"""The HTTP path as agents use it: a real `signoff`-style server in another process.

    python -m benchmarks.http [--quick]      (python -m benchmarks runs it too)

(n) request_approval + check_decision over streamable HTTP, against a no-op tool over HTTP
    on the same server (two calls each) and against the same pair over stdio
                                  target: <= 1.5x the no-op, p50 <= 5 ms
(o) N agents each holding a waiting check_decision (wait_seconds 50) over HTTP at once; all
    but a tenth are then decided in a burst by another process, the tenth expire at their
    deadline: every waiter answered within 1 s of its decision or deadline, none refused,
    the server's memory while they wait    target: <= 1 s, 0 refused, <= 300 MB
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
CONFIG = """
[store]
path = "bench.db"
[server]
port = 0
max_wait = "50s"
[[routes]]
name = "default"
"""

# `signoff serve` with one more tool, `noop`, which returns the same output contract without
# touching the database: the HTTP baseline on the same server, same process, same socket.
SERVER = r"""
import asyncio, logging, sys
import uvicorn
from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.http import bind, build_http_app
from signoff.server.mcp_tools import build_mcp
from signoff.server.views import RequestView

CANNED = RequestView(request_id="req_0", status="pending", route="default", approvers=[],
                     created_at="2026-01-01T00:00:00.000Z", expires_at="2026-01-01T01:00:00.000Z",
                     decided_at=None, decided_by=None, reason=None)

async def main():
    logging.basicConfig(level=logging.WARNING)  # as `signoff serve` logs: nothing per request
    config = load_config(sys.argv[1])
    async with open_app(config) as app:
        mcp = build_mcp(app.service, transport="http")

        async def noop(request_id: str) -> RequestView:
            return CANNED

        mcp.add_tool(noop, name="noop")
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        asgi = build_http_app(app, None, port=port, mcp=mcp)
        print(f"http://127.0.0.1:{port}/mcp", flush=True)
        server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="on"))
        await server.serve(sockets=[sock])

asyncio.run(main())
"""

DECIDER = r"""
import asyncio, json, sys, time
from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.models import Actor

async def main():
    config = load_config(sys.argv[1])
    ids = json.loads(sys.stdin.readline())
    async with open_app(config, background=False) as app:
        done = {}
        for rid in ids:
            await app.service.decide(rid, True, Actor("human", "bench", "console"))
            done[rid] = time.time()
    print(json.dumps(done), flush=True)

asyncio.run(main())
"""


class Agent:
    """One agent on the wire: its own MCP session over one HTTP client, and plain JSON-RPC.
    A thousand SDK clients in one process would measure the clients' own result validation
    (a few ms each, serialised on this process), not the server."""

    HEADERS: ClassVar[dict[str, str]] = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http, self.url, self.headers = http, url, dict(self.HEADERS)

    async def rpc(self, method: str, params: dict[str, Any], id_: int | None = 1) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if id_ is not None:
            body["id"] = id_
        response = await self.http.post(self.url, json=body, headers=self.headers)
        response.raise_for_status()
        if "mcp-session-id" in response.headers:
            self.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        if id_ is None:
            return {}
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for line in response.text.splitlines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("id") == id_:
                        return dict(message)
            raise RuntimeError("no answer in the event stream")
        return dict(response.json())

    async def connect(self) -> None:
        await self.rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                      "clientInfo": {"name": "bench", "version": "1"}})  # fmt: skip
        self.headers["MCP-Protocol-Version"] = "2025-06-18"
        await self.rpc("notifications/initialized", {}, None)

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = await self.rpc("tools/call", {"name": tool, "arguments": arguments}, 2)
        return dict(answer["result"]["structuredContent"])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@asynccontextmanager
async def server(config: Path) -> AsyncIterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(config)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        yield proc, url.strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@asynccontextmanager
async def http_client(url: str, connections: int = 10) -> AsyncIterator[Client]:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with (
        httpx2.AsyncClient(timeout=120, limits=limits) as http,
        Client(
            streamable_http_client(url, http_client=http), client_info=Implementation(name="bench", version="1")
        ) as client,  # fmt: skip
    ):
        yield client


async def _pairs(client: Client, n: int, *, noop: bool) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        if noop:
            await client.call_tool("noop", {"request_id": "x"})
            await client.call_tool("noop", {"request_id": "x"})
        else:
            r = await client.call_tool("request_approval", {"action": "deploy", "summary": f"bench {i}"})
            assert r.structured_content is not None
            await client.call_tool("check_decision", {"request_id": r.structured_content["request_id"]})
        times.append(time.perf_counter() - t0)
    return times


async def bench_round_trip(folder: Path, n: int) -> dict[str, float]:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "signoff.toml"
    config.write_text(CONFIG)
    stdio = StdioServerParameters(command=SIGNOFF, args=["mcp", "--config", str(config)])
    async with server(config) as (_, url), http_client(url) as http, Client(stdio) as local:
        for client in (http, local):  # warm up every path
            await _pairs(client, 10, noop=False)
        await _pairs(http, 10, noop=True)
        ours, base, over_stdio = [], [], []
        for _ in range(n // 10):  # interleaved, so drift hits all three alike
            ours += await _pairs(http, 10, noop=False)
            base += await _pairs(http, 10, noop=True)
            over_stdio += await _pairs(local, 10, noop=False)
    mo, mb, ms = statistics.median(ours), statistics.median(base), statistics.median(over_stdio)
    return {"http_ms": mo * 1e3, "noop_ms": mb * 1e3, "stdio_ms": ms * 1e3, "ratio": mo / mb,
            "p95_ms": pct(ours, 0.95) * 1e3}  # fmt: skip


async def bench_waiters(folder: Path, agents: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "signoff.toml"
    config.write_text(CONFIG)
    expiring = agents // 10
    async with server(config) as (proc, url), http_client(url, agents + 10) as client:
        ids: list[str] = []
        deadlines: dict[str, float] = {}
        for i in range(agents):
            args: dict[str, Any] = {"action": "deploy", "summary": f"agent {i}"}
            if i < expiring:
                args["timeout_seconds"] = 15
            r = await client.call_tool("request_approval", args)
            assert r.structured_content is not None
            rid = r.structured_content["request_id"]
            ids.append(rid)
            if i < expiring:
                deadlines[rid] = time.time() + 15  # within a few ms of the server's own deadline
        returned: dict[str, float] = {}
        refused = 0

        limits = httpx2.Limits(max_connections=agents + 10, max_keepalive_connections=agents + 10)
        wire = httpx2.AsyncClient(timeout=120, limits=limits)

        async def wait(rid: str) -> None:
            nonlocal refused
            agent = Agent(wire, url)
            try:
                await agent.connect()
                out = await agent.call("check_decision", {"request_id": rid, "wait_seconds": 50})
            except (httpx2.HTTPError, KeyError, RuntimeError):
                refused += 1
                return
            returned[rid] = time.time()
            assert out["status"] in ("approved", "expired"), out

        started = time.time()
        waiters = [asyncio.create_task(wait(rid)) for rid in ids]
        health = url.removesuffix("/mcp") + "/healthz"
        async with httpx2.AsyncClient() as probe:  # until the server holds every waiter (bounded)
            while (await probe.get(health)).json()["waiting"] < agents - refused:
                if time.time() - started > 60:
                    raise RuntimeError("the waiters did not all reach the server within 60 s")
                await asyncio.sleep(0.1)
        ramp = time.time() - started
        memory = rss_mb(proc.pid)
        decider = subprocess.Popen([sys.executable, "-c", DECIDER, str(config)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
        out, _ = await asyncio.get_running_loop().run_in_executor(
            None, lambda: decider.communicate(json.dumps(ids[expiring:]) + "\n", timeout=120)
        )
        decided: dict[str, float] = json.loads(out)
        await asyncio.gather(*waiters)
        await wire.aclose()
    lags = [returned[r] - decided[r] for r in decided if r in returned]
    expiry_lags = [returned[r] - deadlines[r] for r in deadlines if r in returned]
    return {
        "agents": agents,
        "memory_mb": memory,
        "refused": refused,
        "max_lag_s": max(lags + expiry_lags),
        "p50_lag_ms": statistics.median(lags) * 1e3,
        "burst_s": max(returned[r] for r in decided) - min(decided.values()),
        "answered": len(returned),
        "ramp_s": ramp,
    }


def run(folder: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    n = asyncio.run(bench_round_trip(folder / "n", 50 if quick else 300))
    o = asyncio.run(bench_waiters(folder / "o", 100 if quick else 1000))
    return [
        ("(n) HTTP round trip vs no-op / stdio", f"{n['http_ms']:.2f} ms vs {n['noop_ms']:.2f} ms / {n['stdio_ms']:.2f} ms",
         f"{n['ratio']:.2f}x (<= 1.5x), p50 <= 5 ms", n["ratio"] <= 1.5 and n["http_ms"] <= 5),
        (f"(o) {o['agents']} waiting over HTTP", f"max lag {o['max_lag_s'] * 1e3:.0f} ms (p50 {o['p50_lag_ms']:.0f}), "
         f"{o['memory_mb']:.0f} MB, {o['refused']} refused, all waiting after {o['ramp_s']:.1f} s, burst {o['burst_s']:.1f} s",
         "<= 1 s, <= 300 MB, 0 refused", o["max_lag_s"] <= 1 and o["memory_mb"] <= 300 and o["refused"] == 0
         and o["answered"] == o["agents"]),
    ]  # fmt: skip


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.http")
    parser.add_argument("--quick", action="store_true", help="fewer iterations and agents (a smoke run)")
    parser.add_argument("--only", choices=("n", "o"), help="run one figure")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if options.only == "n":
            print(asyncio.run(bench_round_trip(Path(tmp), 50 if options.quick else 300)))
            sys.exit(0)
        if options.only == "o":
            print(asyncio.run(bench_waiters(Path(tmp), 100 if options.quick else 1000)))
            sys.exit(0)
        for row in run(Path(tmp), options.quick):
            print(f"{row[0]:<40}  {row[1]:<60}  {row[2]:<28}  {'OK' if row[3] else 'MISSED'}")
